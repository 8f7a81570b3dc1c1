/**
 * WebSocket frame-level cases (docs/protocol.md "Frames", "Errors"):
 *   - connection-killing frames, each sent on a connection of its own, with the close code it
 *     must get (1003 text, 1007 not MessagePack, 1008 not a protocol frame, 1009 too large);
 *   - batch frames broken as a whole (every op refused with one code) and `ops` frames past
 *     max_ops_per_frame or exactly max_frame_bytes, on the shared batch/ops connections;
 *   - get_session reads, answered with a `session` or an `error` frame.
 */
import type { Rng } from './prng.js';
import { CLOSE, LIMITS, type ErrorCode } from './limits.js';
import { ENDED, CRASHED, LIVE_SESSIONS, afterEnd, live, validOp, opCase } from './op-cases.js';
import { encode, reference, type Encoding } from './msgpack.js';
import { nameStr, str } from './values.js';

// ---- connection-killing frames ----

export interface KillCase {
  mutation: string;
  /** The frame, built by the driver once ids are known (`<live:N>` placeholders in it). */
  frame: { bytes: Buffer } | { text: string } | { value: unknown; encoding: Encoding } | { truncate: unknown; encoding: Encoding; keep: number } | { append: unknown; encoding: Encoding; extra: Buffer };
  /** The close code; null: no frame is sent, the client drops the connection before its welcome. */
  close: number | null;
  note: string;
}

/** A frame that is fine as it is (what the kill cases break). */
function goodFrame(rng: Rng): unknown {
  switch (rng.int(3)) {
    case 0:
      return { t: 'ops', ops: [{ q: 1, ...validOp(rng, 'event', 'ws', live(0)) }] };
    case 1:
      return { t: 'get_session', id: 1, session_id: live(0) };
    default:
      return { t: 'batch', session_id: live(0), q: 1, n: 1, ops: encode([validOp(rng, 'heartbeat', 'batch', '')], 'plain') };
  }
}

const encodingOf = (rng: Rng): Encoding => rng.pick(['records', 'plain', 'wide']);

/** What the daemon's decoder makes of bytes: the close code random bytes must get. */
export function closeFor(bytes: Buffer): number | 'frame' {
  let v: unknown;
  try {
    v = reference.unpack(bytes);
  } catch {
    return CLOSE.notMessagePack;
  }
  const isFrame = v !== null && typeof v === 'object' && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype && typeof (v as { t?: unknown }).t === 'string';
  return isFrame ? 'frame' : CLOSE.notAFrame;
}

interface KillMutation {
  name: string;
  weight: number;
  make(rng: Rng): Omit<KillCase, 'mutation'>;
}

const KILLS: KillMutation[] = [
  {
    name: 'random_bytes',
    weight: 4,
    make(rng) {
      let bytes = rng.bytes(rng.logRange(1, 2000));
      // Random bytes are rarely MessagePack; when they are, they are rarely a frame. The
      // expectation is what the daemon's own decoder makes of them (1007 or 1008).
      let close = closeFor(bytes);
      while (close === 'frame') close = closeFor((bytes = Buffer.concat([Buffer.from([0xc1]), bytes])));
      return { frame: { bytes }, close, note: `${bytes.length} random bytes (${close === CLOSE.notMessagePack ? 'not MessagePack' : 'MessagePack, not a frame'})` };
    },
  },
  {
    name: 'truncated_frame',
    weight: 4,
    make(rng) {
      const value = goodFrame(rng);
      const keep = rng.float();
      return { frame: { truncate: value, encoding: encodingOf(rng), keep }, close: CLOSE.notMessagePack, note: `a valid frame cut at ${(keep * 100).toFixed(0)} %` };
    },
  },
  {
    name: 'trailing_bytes',
    weight: 2,
    make(rng) {
      const extra = rng.bytes(rng.range(1, 8));
      return { frame: { append: goodFrame(rng), encoding: encodingOf(rng), extra }, close: CLOSE.notMessagePack, note: `a valid frame followed by ${extra.length} bytes` };
    },
  },
  {
    name: 'text_frame',
    weight: 2,
    make(rng) {
      const text = rng.pick(['{"t":"ops","ops":[]}', '', 'hello', str(rng, rng.logRange(1, 500)), JSON.stringify({ t: 'get_session', id: 1, session_id: 'x' })]);
      return { frame: { text }, close: CLOSE.textFrame, note: `a text frame of ${text.length} characters` };
    },
  },
  {
    name: 'oversized_frame',
    weight: 2,
    make(rng) {
      const size = rng.chance(0.3) ? LIMITS.max_frame_bytes + 1 : rng.range(LIMITS.max_frame_bytes + 1, 4 * LIMITS.max_frame_bytes);
      const bytes = rng.chance(0.5) ? Buffer.alloc(size, 0x90) : rng.bytes(size);
      return { frame: { bytes }, close: CLOSE.tooLarge, note: `a ${size}-byte frame` };
    },
  },
  {
    name: 'not_a_map',
    weight: 2,
    make(rng) {
      const value = rng.pick<unknown>([[1, 2, 3], 'ops', 42, null, true, rng.bytes(5), new Date(0), [{ t: 'ops', ops: [] }], -1.5]);
      return { frame: { value, encoding: encodingOf(rng) }, close: CLOSE.notAFrame, note: `the frame is ${JSON.stringify(value)}` };
    },
  },
  {
    name: 'bad_t',
    weight: 3,
    make(rng) {
      const t = rng.pick<unknown>(['launch', 'OPS', 'ops ', '', 'welcome', 'ack', 'remap', '__proto__', 'constructor', 'toString', 1, null, ['ops'], { t: 'ops' }, true, undefined, str(rng, 10)]);
      const value: Record<string, unknown> = { ops: [], session_id: live(0), q: 1, n: 1 };
      if (t !== undefined) value['t'] = t;
      return { frame: { value, encoding: encodingOf(rng) }, close: CLOSE.notAFrame, note: `t = ${JSON.stringify(t)}` };
    },
  },
  {
    name: 'ops_not_array',
    weight: 2,
    make(rng) {
      const ops = rng.pick<unknown>(['many', {}, { 0: { q: 1, k: 'heartbeat' } }, 1, null, rng.bytes(3), undefined, true]);
      const value: Record<string, unknown> = { t: 'ops' };
      if (ops !== undefined) value['ops'] = ops;
      return { frame: { value, encoding: encodingOf(rng) }, close: CLOSE.notAFrame, note: `ops = ${JSON.stringify(ops)}` };
    },
  },
  {
    name: 'batch_bad_envelope',
    weight: 3,
    make(rng) {
      const value: Record<string, unknown> = { t: 'batch', session_id: live(rng.int(LIVE_SESSIONS)), q: 1, n: 1, ops: encode([{ k: 'heartbeat' }], 'plain') };
      const field = rng.pick(['session_id', 'q', 'n', 'ops']);
      const bad: Record<string, unknown[]> = {
        session_id: [undefined, 1, null, ['x'], { id: 'x' }, true],
        q: [undefined, 0, -1, 1.5, '1', 2 ** 53, null, NaN],
        n: [undefined, 0, -3, 2.5, '1', 2 ** 53, null],
        ops: [undefined, [{ k: 'heartbeat' }], 'ops', null, 5, {}],
      };
      const v = rng.pick(bad[field]!);
      if (v === undefined) delete value[field];
      else value[field] = v;
      return { frame: { value, encoding: encodingOf(rng) }, close: CLOSE.notAFrame, note: `batch with ${field} = ${JSON.stringify(v)}` };
    },
  },
  {
    name: 'batch_too_many',
    weight: 2,
    make(rng) {
      // n is the envelope's claim: past max_ops_per_frame the frame is refused whole, however big.
      const n = rng.pick([LIMITS.max_ops_per_frame + 1, rng.range(LIMITS.max_ops_per_frame + 1, 3000), rng.range(300_000, 2 ** 31)]);
      const value = { t: 'batch', session_id: live(rng.int(LIVE_SESSIONS)), q: 1, n, ops: encode(heartbeats(Math.min(n, 50)), 'plain') };
      return { frame: { value, encoding: encodingOf(rng) }, close: CLOSE.notAFrame, note: `a batch with n = ${n}, past max_ops_per_frame` };
    },
  },
  {
    name: 'nested_past_stack',
    weight: 1,
    make(rng) {
      // Valid MessagePack nested deeper than the decoder's recursion can go (its stack).
      const depth = rng.range(30_000, 60_000); // far past the stack however JIT-compiled the decoder is (~10 000 at best)
      const deep = Buffer.concat([Buffer.alloc(depth, 0x91), Buffer.from([0xc0])]);
      const prefix = encode({ t: 'ops', ops: [{ q: 1, k: 'state', session_id: 'any', state: { deep: 0 } }] }, 'plain');
      // Splice the deep array in place of the 0 (the last byte of the plain encoding, then the map ends there).
      const bytes = Buffer.concat([prefix.subarray(0, prefix.length - 1), deep]);
      return { frame: { bytes }, close: CLOSE.notMessagePack, note: `an ops frame whose state nests ${depth} levels deep` };
    },
  },
  {
    name: 'drop_before_welcome',
    weight: 1,
    make() {
      return { frame: { bytes: Buffer.alloc(0) }, close: null, note: 'the client drops the connection as soon as it is upgraded' };
    },
  },
];

const KILL_TABLE: Array<[number, KillMutation]> = KILLS.map((m) => [m.weight, m]);

export function killCase(rng: Rng): KillCase {
  const m = rng.weighted(KILL_TABLE);
  return { mutation: m.name, ...m.make(rng) };
}

// ---- frames that refuse or accept ops as a whole (on the shared connections) ----

/** Outcome of every op of a frame case: one code for all, or per op. */
export interface FrameCase {
  mutation: string;
  note: string;
  /** Which shared connection it goes on. */
  conn: 'ops' | 'batch';
  /**
   * 'batch': a batch frame; the driver numbers it (q) unless `overlap` asks for ops at or
   * below the connection's mark. 'ops': an ops frame of these ops (the driver adds q).
   */
  shape:
    | { t: 'batch'; session: string; n: number; content: { ops: unknown[] } | { bytes: Buffer }; overlap?: number; expect: Array<ErrorCode | 'ok' | 'skipped'> }
    | { t: 'ops'; ops: unknown[]; padTo?: number; expect: Array<ErrorCode | 'ok'> };
}

interface FrameMutation {
  name: string;
  weight: number;
  make(rng: Rng): Omit<FrameCase, 'mutation'>;
}

const liveId = (rng: Rng): string => live(rng.int(LIVE_SESSIONS));

/** Bytes of ops one whole-frame case may carry (as plain MessagePack): the frame stays under max_frame_bytes. */
const FRAME_CASE_BUDGET = 40_000;

/** The longest prefix of `items` whose ops fit in FRAME_CASE_BUDGET. */
function fit<T>(items: T[], op: (item: T) => unknown): T[] {
  let bytes = 0;
  const out: T[] = [];
  for (const item of items) {
    bytes += encode(op(item), 'plain').length;
    if (bytes > FRAME_CASE_BUDGET) break;
    out.push(item);
  }
  return out;
}

const heartbeats = (n: number): unknown[] => Array.from({ length: n }, () => ({ k: 'heartbeat' }));

const FRAMES: FrameMutation[] = [
  {
    name: 'ops_over_limit',
    weight: 2,
    make(rng) {
      const extra = rng.chance(0.3) ? 1 : rng.range(1, 100);
      const session = liveId(rng);
      const ops = Array.from({ length: LIMITS.max_ops_per_frame + extra }, () => ({ k: 'heartbeat', session_id: session }));
      const expect = ops.map((_, i) => (i < LIMITS.max_ops_per_frame ? 'ok' : 'too_many_ops') as ErrorCode | 'ok');
      return { conn: 'ops', note: `an ops frame of ${ops.length} ops: the ${extra} past max_ops_per_frame are refused`, shape: { t: 'ops', ops, expect } };
    },
  },
  {
    name: 'ops_frame_at_limit',
    weight: 1,
    make(rng) {
      const op = validOp(rng, 'event', 'ws', liveId(rng));
      return { conn: 'ops', note: 'an ops frame of exactly max_frame_bytes (padded with an unknown field)', shape: { t: 'ops', ops: [op], padTo: LIMITS.max_frame_bytes, expect: ['ok'] } };
    },
  },
  {
    name: 'batch_count_mismatch',
    weight: 2,
    make(rng) {
      const ops = fit(
        Array.from({ length: rng.range(0, 30) }, () => opCase(rng, 'batch').op),
        (op) => op,
      );
      const actual = ops.length;
      let n = rng.range(1, 30);
      if (n === actual) n++;
      return { conn: 'batch', note: `n = ${n}, the bin holds ${actual} ops`, shape: { t: 'batch', session: liveId(rng), n, content: { ops }, expect: Array(n).fill('bad_request') } };
    },
  },
  {
    name: 'batch_not_msgpack',
    weight: 2,
    make(rng) {
      const n = rng.range(1, 20);
      const valid = encode(heartbeats(n), 'plain');
      // 0xc1 is never used by MessagePack; a proper prefix of an array is incomplete.
      const bytes = rng.chance(0.5) ? Buffer.concat([Buffer.from([0xc1]), rng.bytes(rng.range(0, 50))]) : valid.subarray(0, rng.int(valid.length));
      return { conn: 'batch', note: `the bin is ${bytes.length} bytes of not-MessagePack`, shape: { t: 'batch', session: liveId(rng), n, content: { bytes }, expect: Array(n).fill('bad_request') } };
    },
  },
  {
    name: 'batch_not_array',
    weight: 1,
    make(rng) {
      const n = rng.range(1, 5);
      const v = rng.pick<unknown>([{ k: 'heartbeat' }, 'ops', 3, null, true, rng.bytes(3)]);
      return { conn: 'batch', note: `the bin holds ${JSON.stringify(v)}`, shape: { t: 'batch', session: liveId(rng), n, content: { bytes: encode(v, 'plain') }, expect: Array(n).fill('bad_request') } };
    },
  },
  {
    name: 'batch_unknown_session',
    weight: 2,
    make(rng) {
      const session = rng.pick([`local-session-${rng.u32()}-1`, nameStr(rng), '', '<live:42>']);
      const ops = fit(
        Array.from({ length: rng.range(1, 50) }, () => opCase(rng, 'batch').op),
        (op) => op,
      );
      const n = ops.length;
      return { conn: 'batch', note: `a batch of ${n} for session "${session}" that does not exist`, shape: { t: 'batch', session, n, content: { ops }, expect: Array(n).fill('unknown_session') } };
    },
  },
  {
    name: 'batch_ended_session',
    weight: 2,
    make(rng) {
      const kinds = ['state', 'event', 'metric', 'heartbeat', 'pause_heartbeat', 'resume_heartbeat', 'end', 'crash'];
      const ops = fit(
        Array.from({ length: rng.range(1, 30) }, () => validOp(rng, rng.pick(kinds), 'batch', '')),
        (op) => op,
      );
      const n = ops.length;
      const expect = ops.map((op) => {
        const e = afterEnd(String((op as { k: unknown }).k));
        return 'code' in e ? e.code : ('ok' as const);
      });
      return { conn: 'batch', note: `a batch of ${n} valid ops for an ended session`, shape: { t: 'batch', session: rng.pick([ENDED, CRASHED]), n, content: { ops }, expect } };
    },
  },
  {
    name: 'batch_overlap',
    weight: 2,
    make(rng) {
      // A resend overlapping the mark: the first `old` ops are at or below it and skipped
      // (their content would be refused if looked at), the rest are new op cases.
      const old = rng.range(1, 20);
      const fresh = rng.range(0, 20);
      const news = fit(
        Array.from({ length: fresh }, () => opCase(rng, 'batch')),
        (c) => c.op,
      );
      const ops: unknown[] = [...Array.from({ length: old }, () => ({ k: 'no-such-op' })), ...news.map((c) => c.op)];
      const expect = [...Array<'skipped'>(old).fill('skipped'), ...news.map((c) => ('ok' in c.expect ? ('ok' as const) : c.expect.code))];
      return { conn: 'batch', note: `a batch whose first ${old} ops are resends, then ${news.length} new ones (${news.map((c) => c.mutation).join(', ')})`, shape: { t: 'batch', session: liveId(rng), n: old + fresh, content: { ops }, overlap: old, expect } };
    },
  },
];

const FRAME_TABLE: Array<[number, FrameMutation]> = FRAMES.map((m) => [m.weight, m]);

export function frameCase(rng: Rng): FrameCase {
  const m = rng.weighted(FRAME_TABLE);
  const c = { mutation: m.name, ...m.make(rng) };
  return c;
}

// ---- reads ----

export interface ReadCase {
  mutation: string;
  /** The request id: 'auto' (the driver gives a unique one), or a bad one to send as it is. */
  id: 'auto' | { bad: unknown };
  sessionId: unknown;
  /** `session` frame, or `error` frame with a code. With a bad id the answer carries id null. */
  expect: { t: 'session' } | { t: 'error'; code: ErrorCode };
  note: string;
}

export function readCase(rng: Rng): ReadCase {
  const badId = rng.chance(0.1) ? { bad: rng.pick<unknown>([null, [1], { id: 1 }, true, undefined]) } : null;
  const id = badId ?? ('auto' as const);
  switch (rng.int(5)) {
    case 0:
    case 1:
      return { mutation: 'read_live', id, sessionId: rng.pick([liveId(rng), ENDED, CRASHED]), expect: { t: 'session' }, note: 'get_session of a known session' };
    case 2:
    case 3: {
      const sid = rng.pick([`local-session-${rng.u32()}-7`, nameStr(rng), str(rng, rng.range(100, 3000)), '<live:77>']);
      return { mutation: 'read_unknown_session', id, sessionId: sid, expect: { t: 'error', code: 'unknown_session' }, note: 'get_session of a session that does not exist' };
    }
    default: {
      const sid = rng.pick<unknown>([undefined, '', 1, null, ['x'], { s: 1 }, rng.bytes(4)]);
      return { mutation: 'read_bad_session_id', id, sessionId: sid, expect: { t: 'error', code: 'invalid_field' }, note: `get_session with session_id ${JSON.stringify(sid)}` };
    }
  }
}
