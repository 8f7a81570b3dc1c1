import type { ErrorCode } from '../protocol/errors.js';
import type { WireOp } from './wire.js';

/** Codes the daemon reports: per op in acks, and in error frames (docs/protocol.md, "Errors"). */
export type DaemonErrorCode = ErrorCode;

/** Codes the client raises itself. */
export type ClientErrorCode =
  /** The client was closed (or is closing) before the operation could complete. */
  | 'closed'
  /** A connection attempt failed: refused, timed out, or the upgrade answered an HTTP error. */
  | 'connect_failed'
  /** The upgrade was refused with 401: the daemon wants (another) auth token. */
  | 'unauthorized'
  /** The daemon closed the socket because of a frame (1003/1007/1008/1009) or an internal error (1011). */
  | 'frame_rejected'
  /** Another connection with this client id replaced ours (4000). The client stops: see Client. */
  | 'replaced'
  /** A frame from the daemon that this client cannot understand. */
  | 'protocol_error'
  /** The op was persisted or refused on a connection whose ack was lost, and the welcome does not say which (a register whose id is not in `registered`). */
  | 'outcome_unknown'
  /** close() could not flush everything within its timeout. */
  | 'timeout'
  /** The op holds a value MessagePack cannot encode (a circular object, a BigInt past 64 bits): refused by the client, the ops around it still go. */
  | 'invalid_value';

/** Open-ended: a newer daemon may report codes this client does not know yet. */
export type DataCatErrorCode = DaemonErrorCode | ClientErrorCode | (string & {});

export interface DataCatErrorDetails {
  /** The op's sequence number, for per-op errors. */
  seq?: number;
  /** The op, for per-op errors, as an `ops` frame carries it: `{ q, k, session_id?, ...fields }` (snake_case wire fields), whichever kind of frame it went out in. */
  op?: WireOp;
  /** The WebSocket close code, for connection errors. */
  closeCode?: number;
  cause?: unknown;
}

/**
 * Every error the client reports: per-op refusals from acks (with `seq` and `op`), connection
 * problems (with `closeCode` when there is one), and local misuse (calls after close).
 */
export class DataCatError extends Error {
  readonly code: DataCatErrorCode;
  readonly seq?: number;
  readonly op?: WireOp;
  readonly closeCode?: number;

  constructor(code: DataCatErrorCode, message: string, details: DataCatErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'DataCatError';
    this.code = code;
    if (details.seq !== undefined) this.seq = details.seq;
    if (details.op !== undefined) this.op = details.op;
    if (details.closeCode !== undefined) this.closeCode = details.closeCode;
  }
}
