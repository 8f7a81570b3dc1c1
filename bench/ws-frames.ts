/**
 * Pre-built `batch` (or `ops`) frames for the WebSocket generator.
 *
 * Encoding 100 ops with msgpackr costs ~30 µs; at 1-2 M ops/s that alone would take a large
 * share of the generator's core and make the generator, not the daemon, the bottleneck. So each
 * frame shape is encoded once (msgpackr `Packr({useRecords: true})`, like the reference client)
 * with sentinel values where the per-op numbers go, the byte offsets of those numbers are
 * found, and every frame sent is a copy of the template with the numbers written in place:
 * one memcpy plus a 4-byte write per op. Every op still gets its own `q`, and state ops their
 * own value (a state update that changes nothing would not be queued by the daemon).
 *
 * The patched numbers are MessagePack uint32 (0xce + 4 bytes, big-endian): the protocol
 * accepts any integer encoding, and a fixed width makes patching possible.
 */
import { Packr, Unpackr } from 'msgpackr';
import type { MixKind } from './args.js';
import { EVENT_FIELDS, METRIC_FIELDS, stateValue } from './load-common.js';

const Q_SENTINEL = 0xf1000000;
const STATE_SENTINEL = 0xf2000000;

export interface FrameTemplate {
  bytes: Buffer;
  /** Offset of the 4-byte big-endian value of each op's q. */
  qOffsets: Uint32Array;
  /** For state ops: [index of the op in the frame, offset of its state value]. */
  stateSlots: Array<[number, number]>;
  ops: number;
}

function findUint32(buf: Buffer, value: number): number {
  const needle = Buffer.alloc(5);
  needle[0] = 0xce;
  needle.writeUInt32BE(value, 1);
  const at = buf.indexOf(needle);
  if (at < 0 || buf.indexOf(needle, at + 1) >= 0) throw new Error(`frame template: sentinel ${value.toString(16)} not found exactly once`);
  return at + 1;
}

/**
 * One template per distinct frame shape; `kinds` lists the kind of each op of the frame. A `batch`
 * frame has a single q (the envelope's, op i is q + i) and the ops as an embedded bin; an `ops`
 * frame has a q per op. Either way the patched numbers are found by their sentinels.
 */
export function buildTemplate(sessionId: string, kinds: readonly MixKind[], frame: 'batch' | 'ops'): FrameTemplate {
  const body = (k: MixKind, i: number): Record<string, unknown> => {
    switch (k) {
      case 'event':
        return { k: 'event', ...EVENT_FIELDS };
      case 'metric':
        return { k: 'metric', ...METRIC_FIELDS };
      case 'state':
        return { k: 'state', state: stateValue(STATE_SENTINEL + i) };
    }
  };
  // A fresh Packr per template: each frame must carry its own record definitions, since the
  // daemon decodes every frame on its own.
  const bytes =
    frame === 'batch'
      ? Buffer.from(new Packr({ useRecords: true }).pack({ t: 'batch', session_id: sessionId, q: Q_SENTINEL, n: kinds.length, ops: new Packr({ useRecords: true }).pack(kinds.map(body)) }))
      : Buffer.from(new Packr({ useRecords: true }).pack({ t: 'ops', ops: kinds.map((k, i) => ({ q: Q_SENTINEL + i, session_id: sessionId, ...body(k, i) })) }));
  const qOffsets = frame === 'batch' ? Uint32Array.of(findUint32(bytes, Q_SENTINEL)) : Uint32Array.from(kinds, (_, i) => findUint32(bytes, Q_SENTINEL + i));
  const stateSlots: Array<[number, number]> = [];
  kinds.forEach((k, i) => {
    if (k === 'state') stateSlots.push([i, findUint32(bytes, STATE_SENTINEL + i)]);
  });
  // Check the template decodes to what was meant, with a decoder that has seen nothing before.
  const back = new Unpackr({ useRecords: true, mapsAsObjects: true }).unpack(bytes) as { t: string; q?: number; ops: unknown };
  const ok = frame === 'batch' ? back.t === 'batch' && back.q === Q_SENTINEL : back.t === 'ops' && (back.ops as unknown[]).length === kinds.length;
  if (!ok) throw new Error('frame template does not round-trip');
  return { bytes, qOffsets, stateSlots, ops: kinds.length };
}

/**
 * A frame ready to send: the template with q = firstQ + i. Always a fresh buffer, because ws
 * keeps a reference to it until the socket has written it (no copy with the zero mask we use).
 */
export function fillFrame(t: FrameTemplate, firstQ: number): Buffer {
  const buf = Buffer.allocUnsafe(t.bytes.length);
  t.bytes.copy(buf);
  const offsets = t.qOffsets;
  // One offset (a batch's envelope q) or one per op (an ops frame).
  for (let i = 0; i < offsets.length; i++) buf.writeUInt32BE(firstQ + i, offsets[i]!);
  // The state value is the op's own q: it grows, so every state update changes something.
  for (const [i, off] of t.stateSlots) buf.writeUInt32BE(firstQ + i, off);
  return buf;
}
