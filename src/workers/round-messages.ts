import type { ErrorCode } from '../protocol/errors.js';
import type { ActorSettings, ActivityFlush } from '../actors/session-actor.js';
import type { Limits } from '../protocol/limits.js';

/**
 * What crosses between the main thread and an actor worker. A round request carries every op
 * the gateway routed to that worker since the last round; the reply carries what the round's
 * write batch needs. Both travel MessagePack-encoded in a transferred ArrayBuffer: measured
 * 2.4-2.6 M ops/s through a worker round trip, against 1.25 M ops/s with structured clone.
 */

/**
 * [session number, op kind, receive time ms, body]: a validated body, a RegisterInput for
 * `register`, for kind `batch` a BatchBody (ops the worker decodes and validates itself), for
 * kind `persist` nothing (persist the session's activity now: a read is waiting), for kind
 * `activate` nothing (only load the session, so its duties run from the next tick), and for
 * kind `parent_exited` [daemon pid, parent pid] (the application that started the daemon exited).
 * Ops and batches share one list so a session's items keep their submission order.
 */
export type WorkerOp = [sn: number, kind: string, rt: number, body: unknown];

/**
 * A WebSocket batch as it reaches the worker: [MessagePack array of ops, ops to skip, op count,
 * session id, drop events and metrics (overflow drop_newest: the outbox is full)].
 */
export type BatchBody = [bytes: Uint8Array, skip: number, n: number, sessionId: string, dropPassThrough: boolean];

export interface RoundRequest {
  /** Round id, echoed in the reply. */
  r: number;
  /** The main thread's clock for this round (workers take no time of their own: one clock). */
  now: number;
  /**
   * Sessions to load into this worker before the ops run: [sn, core, state?, aggregates?,
   * activity?] (snapshot parts), and, the first time a session is loaded in this process or
   * after a worker was lost, its newest outbox chunks, oldest first (SessionActor.recoverActivity).
   */
  activate: Array<[sn: number, core: Uint8Array, state: Uint8Array | undefined, aggregates: Uint8Array | undefined, activity: Uint8Array | undefined, newest?: Uint8Array[]]>;
  /**
   * Periodic duties over every actor of the worker: `due` persists activity that is due;
   * `all` persists everything not yet persisted (shutdown).
   */
  tick?: ActivityFlush;
  /**
   * With a tick: since when the daemon has been reading its sockets (WsGateway.listeningSince);
   * the hang watch does not count silence before it.
   */
  listeningSince?: number;
  ops: WorkerOp[];
  /** Remap broadcast: the session's server id is now known. */
  remaps: Array<[sn: number, serverId: string]>;
  /** Sessions to drop from memory after the round (their snapshots are durable). */
  passivate: number[];
}

export interface RoundReply {
  r: number;
  /** Outbox chunk per session that queued upstream ops: [sn, op count, chunk bytes]. */
  chunks: Array<[sn: number, count: number, bytes: Uint8Array]>;
  /** Snapshot parts to write, by key (see SnapshotPart). */
  puts: Array<[key: string, bytes: Uint8Array]>;
  /** Status of each session loaded or whose core was written: active (not ended or crashed), hung. */
  active: Array<[sn: number, active: boolean, hung: boolean]>;
  /**
   * Ops that failed, by index in the request's ops: [index, code, message], plus for a batch the
   * index of the op inside it. Everything not listed succeeded.
   */
  errors: Array<[index: number, code: ErrorCode, message: string, inBatch?: number]>;
  /** Events and metrics of batches discarded under drop_newest (also listed in errors as 'dropped'). */
  dropped: number;
  /** Ops applied, by kind (for the accepted-ops metrics: only the worker sees a batch's kinds). */
  applied: Record<string, number>;
}

/** Control messages are plain objects; rounds are ArrayBuffers. */
export type ControlMessage =
  | { t: 'reset' } // drop every actor: the next round reloads them from their snapshots
  | { t: 'stop' }
  | { t: 'die' } // test hook: the worker throws, as a bug would
  | { t: 'stall'; ms: number }; // test hook: the worker is busy this long, as under a long round

/** What a worker needs to know: the actors' settings and the limits it validates batches with. */
export type WorkerSettings = ActorSettings & { limits: Limits };

export interface HostTask {
  slot: number;
  port: import('node:worker_threads').MessagePort;
  settings: WorkerSettings;
}
