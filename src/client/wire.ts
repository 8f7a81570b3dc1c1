/**
 * The WebSocket frames of docs/protocol.md, as the client sees them. The frame types are the
 * daemon's own (src/protocol/frames.ts), so that both sides are checked against one definition;
 * only what the client needs beyond them is defined here. Field names are the protocol's
 * (DataCat's snake_case), never the client API's camelCase.
 */
import { CLOSE, type OpError, type WelcomeFrame } from '../protocol/frames.js';
import type { OpKind } from '../protocol/ops.js';

export {
  CLIENT_ID_PATTERN,
  type AckFrame,
  type BatchFrame,
  type ClientFrame,
  type DaemonFrame,
  type ErrorFrame,
  type GetSessionFrame,
  type OpError,
  type OpsFrame,
  type RemapFrame,
  type SessionFrame,
  type WelcomeFrame,
  type WireOp,
} from '../protocol/frames.js';
export type { MetricType, OpKind } from '../protocol/ops.js';

/**
 * An op as the client keeps it: `k`, then the fields of the matching HTTP body, without `q` and
 * `session_id` (the client holds those beside it). This is exactly an op of a `batch` frame; an
 * `ops` frame carries `{ q, k, session_id?, ...fields }` built from it. `k` is always the first
 * key so that ops of one kind share a msgpackr record shape.
 */
export type OpBody = { k: OpKind } & Record<string, unknown>;

/** `[seq, code, message]` of an ack's `errors` (the daemon's OpError); seq is null when the daemon could not read the op's `q`. */
export type OpErrorTuple = OpError;

/** `[seq, session id]` of the register ops a welcome or an ack answers. */
export type Registered = WelcomeFrame['registered'];

/** WebSocket close codes (docs/protocol.md, "Errors"): the daemon's, and the standard ones the client uses or sees. */
export const CLOSE_CODES = {
  ...CLOSE,
  normal: 1000,
  abnormal: 1006,
} as const;
