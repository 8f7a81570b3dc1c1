import type { DataCatError } from './errors.js';
import type { MetricType } from './wire.js';
import type { SessionView } from '../protocol/session-view.js';

export interface ClientOptions {
  /** The daemon: `ws://127.0.0.1:8079` (`/ws?client_id=...` is appended); `http://` works too. */
  url: string;
  /**
   * Identifies this producer across reconnects (1–128 of `A-Z a-z 0-9 . _ : -`). Default: a
   * random UUID, kept for the Client's life. Reuse an id only for the same logical producer: the
   * daemon drops ops numbered at or below that id's high-water mark as duplicates.
   */
  clientId?: string;
  /** The daemon's `auth_token`, sent as `Authorization: Bearer <token>` on the upgrade. */
  authToken?: string;
  /**
   * High-rate methods return false once buffered + unacked ops exceed this; then
   * `await client.waitForCapacity()`. Default: 2 × maxInflightOps, so a full window can be
   * refilled from the buffer the moment acks arrive.
   */
  highWaterMark?: number;
  /** waitForCapacity() resolves once buffered + unacked ops are at or below this. Default: highWaterMark / 2. */
  lowWaterMark?: number;
  /** Most ops sent and not yet acked; frames stop when the window is full. Default 20 000. */
  maxInflightOps?: number;
  /** Most ops per frame. Default 1000; never more than the welcome's max_ops_per_frame. */
  maxOpsPerFrame?: number;
  /** First reconnect delay (ms, before jitter). Default 100. */
  reconnectBaseMs?: number;
  /** Longest reconnect delay (ms). Default 5000. */
  reconnectMaxMs?: number;
  /** Upgrade + welcome must arrive within this (ms). Default 10 000. */
  connectTimeoutMs?: number;
  /** Liveness pings (ms); a peer silent for two periods is dropped and reconnected. 0 disables. Default 15 000. */
  pingIntervalMs?: number;
  /** Extra headers for the upgrade request. */
  headers?: Record<string, string>;
}

export interface RegisterOptions {
  product: string;
  version: string;
  /**
   * The process whose exit means the session crashed (the daemon then sends
   * parent_process_crashed and a crash). Defaults to this process, as DataCat's Python client
   * sends `os.getpid()`; `null` sends none (a session not tied to a process).
   */
  parentPid?: number | null;
  hostname?: string;
  machineId?: string;
}

export interface ConnectedEvent {
  /** The id the daemon knows this client by. */
  clientId: string;
  /** The daemon's high-water mark for it: every op numbered ≤ acked is persisted or refused. */
  acked: number;
  /** Unacked ops of earlier connections that this connection resends. */
  resent: number;
  /** The daemon's version. */
  version: string;
}

export interface DisconnectedEvent {
  code: number;
  reason: string;
}

export interface RemapEvent {
  localId: string;
  serverId: string;
}

/**
 * The events a Client emits. 'error' carries per-op refusals (with `seq`, `code`, `op`) and
 * connection problems. Without an 'error' listener, errors are counted in `stats.errors` and
 * otherwise ignored (a telemetry client must never crash its host process).
 */
export type ClientEvents = {
  connected: [event: ConnectedEvent];
  disconnected: [event: DisconnectedEvent];
  remap: [event: RemapEvent];
  error: [error: DataCatError];
};

export interface ClientStats {
  /** Errors reported (emitted or not). */
  errors: number;
  /** Connections welcomed. */
  connects: number;
  /** Frames of ops sent: `batch` frames (session ops) and `ops` frames (registers). */
  framesSent: number;
  /** Ops put in frames (resends included). */
  opsSent: number;
  /** Ops resent after a reconnect. */
  opsResent: number;
  /** Ops settled as persisted. */
  opsAcked: number;
  /** Ops refused (by the daemon, or locally for being larger than a frame may be). */
  opsRefused: number;
  /** Frame bytes sent. */
  bytesSent: number;
}

export interface CloseOptions {
  /**
   * Give up flushing after this many ms (0 to 2^31 − 1, the most a Node timer waits): the socket is
   * closed anyway and close() rejects with code 'timeout'. Default (or Infinity): wait as long as it
   * takes. Other values make close() reject with a RangeError, the client left open.
   */
  timeoutMs?: number;
}

export interface EventOptions {
  category?: string;
  /** Severity (debug, info, warning, error, critical), as DataCat's Python logging handler sends it beside `category`. */
  level?: string;
  group?: string;
  labels?: string[];
  message?: string;
  data?: Record<string, unknown>;
  stacktrace?: string | string[];
  exceptionType?: string;
  exceptionMsg?: string;
  sourceFile?: string;
  sourceLine?: number;
  sourceFunction?: string;
}

export interface MetricOptions {
  /** Default (decided by the daemon): gauge. */
  type?: MetricType;
  tags?: string[];
  count?: number;
  unit?: string;
  metadata?: Record<string, unknown>;
  delta?: number;
}

export interface GaugeOptions {
  tags?: string[];
  unit?: string;
}

export interface CounterOptions {
  tags?: string[];
}

export interface HistogramOptions {
  unit?: string;
  tags?: string[];
  /** Bucket upper bounds, ascending; `Infinity` (sent as "inf") or "inf" allowed last. Sent as `metadata.buckets`. */
  buckets?: Array<number | string>;
  metadata?: Record<string, unknown>;
}

export interface TimerLogOptions {
  count?: number;
  tags?: string[];
  /** Default "seconds". */
  unit?: string;
}

export interface TimerOptions {
  tags?: string[];
  count?: number;
  /** The unit the duration is reported in. Default "seconds". */
  unit?: 'seconds' | 'milliseconds';
}

export interface Timer {
  /** Stops the timer, logs the duration (once) and returns it in the timer's unit. */
  stop(): number;
}

export interface ExceptionOptions {
  /** Default: the error's message. */
  message?: string;
  data?: Record<string, unknown>;
  labels?: string[];
  group?: string;
  /** Default "error". */
  category?: string;
}

/**
 * A session as the daemon's store has it (README, "A session"): the answer to getDetails().
 * Fields a newer daemon adds come through as they are.
 */
export type SessionDetails = SessionView & { [field: string]: unknown };
