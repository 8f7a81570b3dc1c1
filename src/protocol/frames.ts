/**
 * The WebSocket frames (docs/protocol.md), shared by the daemon's gateway and the TypeScript
 * client so both sides are checked against one definition.
 */
import type { ErrorCode } from './errors.js';
import type { OpKind } from './ops.js';
import type { SessionView } from './session-view.js';

/** A numbered op as it travels: `q` the sequence number, `k` the kind, then the body fields. */
export type WireOp = { q: number; k: OpKind } & Record<string, unknown>;

export interface OpsFrame {
  t: 'ops';
  ops: WireOp[];
}

/**
 * The fast path: `n` ops of one session, numbered q, q+1, …, q+n-1, as one MessagePack `bin`
 * holding the array of ops (each `{k, ...fields}`; no `q`, no `session_id` needed). The gateway
 * reads only this envelope; the worker that owns the session decodes and validates the ops.
 */
export interface BatchFrame {
  t: 'batch';
  session_id: string;
  q: number;
  n: number;
  ops: Uint8Array;
}

export interface GetSessionFrame {
  t: 'get_session';
  id: number | string;
  session_id: string;
}

export type ClientFrame = OpsFrame | BatchFrame | GetSessionFrame;

export interface WelcomeFrame {
  t: 'welcome';
  client_id: string;
  acked: number;
  registered: Array<[seq: number, sessionId: string]>;
  limits: { max_frame_bytes: number; max_ops_per_frame: number };
  version: string;
}

/** [seq (null when the op had no valid q), code, message] */
export type OpError = [seq: number | null, code: ErrorCode, message: string];

export interface AckFrame {
  t: 'ack';
  acked: number;
  errors?: OpError[];
  registered?: Array<[seq: number, sessionId: string]>;
}

export interface RemapFrame {
  t: 'remap';
  local_id: string;
  server_id: string;
}

export interface SessionFrame {
  t: 'session';
  /** The request's id; null when it was not a number or a string. */
  id: number | string | null;
  session: SessionView;
}

export interface ErrorFrame {
  t: 'error';
  id: number | string | null;
  code: ErrorCode;
  message: string;
}

/** The daemon stopped (or resumed) reading this socket because its outbox is full (overflow block). */
export interface FlowFrame {
  t: 'flow';
  paused: boolean;
  reason: 'queue_full';
}

export type DaemonFrame = WelcomeFrame | AckFrame | RemapFrame | SessionFrame | ErrorFrame | FlowFrame;

/** WebSocket close codes and what they mean (docs/protocol.md, "Errors"). */
export const CLOSE = {
  shuttingDown: 1001,
  textFrame: 1003,
  notMessagePack: 1007,
  notAFrame: 1008,
  tooLarge: 1009,
  internal: 1011,
  tryAgain: 1013,
  replaced: 4000,
} as const;

/** Registrations remembered per client id for the welcome frame. */
export const REMEMBERED_REGISTRATIONS = 64;

export const CLIENT_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
