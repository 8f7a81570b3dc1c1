import { pack, unpack } from '../protocol/codec.js';
import type { ClientFrame, OpBody } from './wire.js';

/**
 * Frames are MessagePack, through the daemon's own codec (src/protocol/codec.ts): msgpackr with
 * records, whose definitions travel inside each message, so every frame (and the ops inside a
 * batch) decodes on its own, on any connection; plain MessagePack maps decode as objects.
 *
 * The returned bytes are views into msgpackr's working buffer; they stay valid (msgpackr never
 * writes over a returned region), and `ws` copies them when it masks the frame.
 */
export function encodeFrame(frame: ClientFrame): Uint8Array {
  return pack(frame);
}

/**
 * A `batch` frame: `ops` (n ops of one session, numbered q..q+n-1) packed on their own, as the
 * `bin` the daemon hands to the session's worker without looking inside.
 */
export function encodeBatch(sessionId: string, q: number, ops: readonly OpBody[]): Uint8Array {
  return pack({ t: 'batch', session_id: sessionId, q, n: ops.length, ops: pack(ops) } satisfies ClientFrame);
}

/** Throws on bytes that are not MessagePack. */
export function decodeFrame(bytes: Uint8Array): unknown {
  return unpack(bytes);
}
