/**
 * Per-op cases: one valid op of a random kind, then one mutation, and the outcome that mutation
 * must get. The same catalogue feeds the three transports that carry ops:
 *   - 'ws':    an op inside an `ops` frame (numbered with `q` by the driver),
 *   - 'batch': an op inside a `batch` frame's bin (no `q`, no `session_id`: the batch names both),
 *   - 'http':  the JSON body of POST /<kind>.
 *
 * The expected outcome is derived from the mutation alone, in the daemon's documented order of
 * checks: validation of the op (README "Errors": invalid_field, too_deep, too_long,
 * forbidden_key, unknown_op), then the session it names (unknown_session, session_ended).
 *
 * Session ids are placeholders resolved by the driver: `<live:N>` (one of the fuzz sessions that
 * stay active all run long), `<ended>` (a session that was ended at setup), `<crashed>`.
 */
import type { Rng } from './prng.js';
import { LIMITS, type ErrorCode } from './limits.js';
import { encode } from './msgpack.js';
import { finiteNumber, junk, loneSurrogates, nameStr, nestedTo, object, scalar, str, textStr, withKeyAt, type Transport, type Value } from './values.js';

export const LIVE_SESSIONS = 4;
export const live = (n: number): string => `<live:${n}>`;
export const ENDED = '<ended>';
export const CRASHED = '<crashed>';

/** What an op case must get: accepted, or refused with a code. `noQ`: refused as an op without a usable `q`. */
export type OpExpect = { ok: true } | { code: ErrorCode; noQ?: boolean };
export const OK: OpExpect = { ok: true };

export interface OpCase {
  transport: Transport;
  /** The mutation's name: one generator, one expectation. */
  mutation: string;
  /** The op kind it is for: `k` over WebSocket, the path over HTTP (POST /<kind>). */
  kind: string;
  /** The op as it goes on the wire (a WebSocket op gets its `q` from the driver). */
  op: unknown;
  expect: OpExpect;
  /** What was changed, for a readable failure. */
  note: string;
  /** WebSocket `ops` frames only: how the driver numbers it. */
  q?: 'next' | 'none' | 'resend';
  /** An explicit bad `q` (mutation bad_q). */
  badQ?: unknown;
}

// ---- the op schema (README "HTTP API", docs/protocol.md "ops") ----

type FieldType = 'name' | 'text' | 'number' | 'int' | 'object' | 'names' | 'stacktrace' | 'metric_type';
interface Field {
  type: FieldType;
  required?: boolean;
  /** Largest accepted value of an int field. */
  max?: number;
}

const SID: Field = { type: 'name', required: true };
export const SCHEMA: Record<string, Record<string, Field>> = {
  register: { product: { type: 'name', required: true }, version: { type: 'name', required: true }, parent_pid: { type: 'int', max: 2 ** 31 - 1 }, hostname: { type: 'name' }, machine_id: { type: 'name' } },
  state: { session_id: SID, state: { type: 'object', required: true } },
  event: {
    session_id: SID,
    name: { type: 'name', required: true },
    category: { type: 'name' },
    group: { type: 'name' },
    level: { type: 'name' },
    exception_type: { type: 'name' },
    source_function: { type: 'name' },
    message: { type: 'text' },
    exception_msg: { type: 'text' },
    source_file: { type: 'text' },
    labels: { type: 'names' },
    data: { type: 'object' },
    stacktrace: { type: 'stacktrace' },
    source_line: { type: 'int', max: 2 ** 31 - 1 },
  },
  metric: {
    session_id: SID,
    name: { type: 'name', required: true },
    value: { type: 'number', required: true },
    type: { type: 'metric_type' },
    delta: { type: 'number' },
    count: { type: 'int', max: Number.MAX_SAFE_INTEGER },
    unit: { type: 'name' },
    tags: { type: 'names' },
    metadata: { type: 'object' },
  },
  heartbeat: { session_id: SID },
  pause_heartbeat: { session_id: SID },
  resume_heartbeat: { session_id: SID },
  end: { session_id: SID },
  crash: { session_id: SID, reason: { type: 'name' } },
};
export const OP_KINDS = Object.keys(SCHEMA);
/** Kinds with an HTTP endpoint of their own (crash is WebSocket only). */
export const HTTP_KINDS = OP_KINDS.filter((k) => k !== 'crash');
/** After end or crash, ending again and heartbeats are accepted as no-ops; data is refused. */
const NO_OPS_AFTER_END = ['end', 'crash', 'heartbeat', 'pause_heartbeat', 'resume_heartbeat'];
export function afterEnd(kind: string): OpExpect {
  return NO_OPS_AFTER_END.includes(kind) ? OK : { code: 'session_ended' };
}
/** Kinds that leave a live session live when accepted. */
const HARMLESS_KINDS = ['state', 'event', 'metric', 'heartbeat', 'pause_heartbeat', 'resume_heartbeat'];
/** Metric names and tags of aggregated series come from a small set: aggregates are per series, kept for the session's life. */
const SERIES = ['fps', 'frame_ms', 'hits', 'loads', 'latency'];
const SERIES_TAGS = [[], ['gpu'], ['a', 'b']];

type Op = Record<string, unknown>;

// ---- valid ops ----

function validField(rng: Rng, kind: string, field: string, f: Field, t: Transport, atLimit: boolean): unknown {
  switch (f.type) {
    case 'name':
      return atLimit ? str(rng, LIMITS.max_name_length) : nameStr(rng);
    case 'text':
      return atLimit ? str(rng, LIMITS.max_string_length) : textStr(rng);
    case 'number':
      return finiteNumber(rng);
    case 'int':
      return atLimit ? f.max : field === 'parent_pid' ? process.pid : rng.int(100000);
    case 'names':
      return Array.from({ length: atLimit ? LIMITS.max_name_length : rng.logRange(0, 6) }, () => (atLimit ? str(rng, LIMITS.max_name_length) : nameStr(rng)));
    case 'stacktrace':
      return rng.chance(0.5) ? textStr(rng) : Array.from({ length: rng.logRange(0, 8) }, () => textStr(rng, 200));
    case 'metric_type':
      return rng.pick(['gauge', 'gauge', 'timer', 'counter', 'histogram']);
    case 'object': {
      const keys = kind === 'state' ? 'state' : 'any';
      if (atLimit) return nestedTo(rng, LIMITS.max_depth, str(rng, LIMITS.max_string_length), { keys });
      const v = object(rng, rng.logRange(1, LIMITS.max_depth), t, { keys, big: true });
      if (field === 'metadata') {
        delete v['buckets'];
        if (rng.chance(0.3)) v['buckets'] = validBuckets(rng) as Value[];
      }
      return v;
    }
  }
}

function validBuckets(rng: Rng): unknown[] {
  const n = rng.logRange(1, 40);
  const out: unknown[] = [];
  let b = rng.float();
  for (let i = 0; i < n; i++) out.push((b += rng.float() * 10 + 0.001));
  if (rng.chance(0.5)) out.push(rng.pick(['inf', '+Inf', 'Infinity', 'INF']));
  return out;
}

/**
 * A valid op of `kind` for `session` (a placeholder; omitted in a batch). Optional fields are
 * each present with some probability; `atLimit` sets one field exactly at its limit.
 */
export function validOp(rng: Rng, kind: string, t: Transport, session: string, atLimit = false): Op {
  const schema = SCHEMA[kind]!;
  const op: Op = t === 'http' ? {} : { k: kind };
  const fields = Object.keys(schema).filter((f) => f !== 'session_id');
  const limitField = atLimit ? rng.pick(fields.filter((f) => ['name', 'text', 'names', 'object', 'int'].includes(schema[f]!.type)).concat(['-'])) : null;
  for (const field of fields) {
    const f = schema[field]!;
    if (f.required || field === limitField || rng.chance(0.3)) op[field] = validField(rng, kind, field, f, t, field === limitField);
  }
  if (kind === 'metric') shapeMetric(rng, op);
  if (kind !== 'register' && t !== 'batch') op['session_id'] = session;
  return op;
}

/**
 * `delta` only on a counter (with no type it makes one; on any other type it is refused, see
 * the metric mutations). Counters with a delta and histograms are aggregated per series: keep
 * their series few.
 */
function shapeMetric(rng: Rng, op: Op): void {
  if (op['delta'] !== undefined && op['type'] !== undefined && op['type'] !== 'counter') delete op['delta'];
  const type = op['type'] ?? (op['delta'] !== undefined ? 'counter' : 'gauge');
  const aggregated = (type === 'counter' && op['delta'] !== undefined) || type === 'histogram';
  if (!aggregated) return;
  op['name'] = rng.pick(SERIES);
  op['tags'] = rng.pick(SERIES_TAGS);
  if (type === 'histogram' && op['metadata'] !== undefined) op['metadata'] = rng.chance(0.5) ? { buckets: [0.01, 0.1, 1, 10, 'inf'] } : {};
}

// ---- mutations ----

interface Ctx {
  rng: Rng;
  t: Transport;
}

/** One mutation: builds its case from a valid op (or from scratch), with its expectation. */
interface Mutation {
  name: string;
  /** Relative frequency per transport (0 or absent: not applicable). */
  weight: Partial<Record<Transport, number>>;
  make(c: Ctx): Omit<OpCase, 'transport' | 'mutation'>;
}

/** A session kind that, accepted, leaves the live sessions live. */
/** Levels of arrays and maps in a value, as src/protocol/values.ts checkDepth counts them. */
function nesting(v: unknown): number {
  if (v === null || typeof v !== 'object' || v instanceof Uint8Array) return 0;
  let deepest = 0;
  for (const child of Array.isArray(v) ? v : Object.values(v)) deepest = Math.max(deepest, nesting(child));
  return 1 + deepest;
}

function harmlessKind(c: Ctx): string {
  return c.t === 'batch' || c.rng.chance(0.97) ? c.rng.pick(HARMLESS_KINDS) : 'register';
}

/** Any kind that can carry the mutated field type; a refused op never reaches its session. */
function kindWith(c: Ctx, types: FieldType[], requiredOnly = false): [string, string] {
  const options: Array<[string, string]> = [];
  for (const kind of OP_KINDS) {
    if (c.t === 'http' && kind === 'crash') continue;
    if (c.t === 'batch' && kind === 'register') continue;
    for (const [field, f] of Object.entries(SCHEMA[kind]!)) {
      if (field === 'session_id' && c.t === 'batch') continue;
      if (types.includes(f.type) && (!requiredOnly || f.required)) options.push([kind, field]);
    }
  }
  return c.rng.pick(options);
}

const liveSession = (c: Ctx): string => live(c.rng.int(LIVE_SESSIONS));

/** Wrong-typed values, by the type they are not. */
function wrongValue(c: Ctx, type: FieldType): { v: unknown; what: string } {
  const { rng, t } = c;
  const exotic: Array<[string, unknown]> =
    t === 'http'
      ? []
      : [
          ['bin', rng.bytes(rng.range(0, 8))],
          ['timestamp', new Date(rng.u32() * 1000)],
        ];
  const common: Array<[string, unknown]> = [
    ['number', finiteNumber(rng)],
    ['boolean', rng.chance(0.5)],
    ['array', [str(rng, 3)]],
    ['object', { a: 1 }],
    ['string', str(rng, rng.range(1, 10))],
    ['empty array', []],
    ['empty object', {}],
    ...exotic,
  ];
  const notOf: Record<FieldType, string[]> = {
    name: ['string'],
    text: ['string'],
    metric_type: ['string'],
    number: ['number'],
    int: ['number'],
    object: ['object', 'empty object'],
    names: ['array', 'empty array'],
    stacktrace: ['string', 'array', 'empty array'],
  };
  const [what, v] = rng.pick(common.filter(([w]) => !notOf[type].includes(w)));
  return { v, what };
}

const MUTATIONS: Mutation[] = [
  {
    name: 'valid',
    weight: { ws: 24, batch: 30, http: 20 },
    make(c) {
      const kind = harmlessKind(c);
      return { kind, op: validOp(c.rng, kind, c.t, liveSession(c)), expect: OK, note: `a valid ${kind}` };
    },
  },
  {
    name: 'valid_at_limits',
    weight: { ws: 4, batch: 4, http: 4 },
    make(c) {
      const kind = harmlessKind(c);
      return { kind, op: validOp(c.rng, kind, c.t, liveSession(c), true), expect: OK, note: `a ${kind} with one field exactly at its limit` };
    },
  },
  {
    name: 'unknown_fields',
    weight: { ws: 4, batch: 4, http: 4 },
    make(c) {
      const kind = harmlessKind(c);
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      const names: string[] = [];
      for (let i = c.rng.range(1, 3); i > 0; i--) {
        const name = c.rng.pick(['constructor', 'prototype', '__proto__', 'toString', 'hasOwnProperty', 'extra', 'Name', 'session', nameStr(c.rng)]);
        if (name in SCHEMA[kind]! || name === 'q' || name === 'k' || name === 'session_id') continue;
        Object.defineProperty(op, name, { value: junk(c.rng, c.t), enumerable: true, writable: true, configurable: true });
        names.push(name);
      }
      // A batch op names its session in the envelope: a session_id of its own is ignored too.
      if (c.t === 'batch' && c.rng.chance(0.3)) op['session_id'] = c.rng.pick(['nobody', ENDED, 17]);
      // A batch is kept as the client's bytes, unknown fields included, so those are bounded in
      // depth in every kind of op (README, "Compatibility notes"), though never read.
      const deepest = Math.max(0, ...names.map((n) => nesting(op[n])));
      if (deepest > LIMITS.max_depth)
        return { kind, op, expect: { code: 'too_deep' }, note: `an unknown field of a ${kind} nests ${deepest} deep (${names.join(', ')})` };
      return { kind, op, expect: OK, note: `unknown fields are ignored (${names.join(', ')})` };
    },
  },
  {
    name: 'missing_required',
    weight: { ws: 4, batch: 4, http: 4 },
    make(c) {
      const [kind, field] = kindWith(c, ['name', 'text', 'number', 'int', 'object', 'names', 'stacktrace', 'metric_type'], true);
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      delete op[field];
      if (field === 'value') delete op['delta']; // a counter may come as delta alone
      return { kind, op, expect: { code: 'invalid_field' }, note: `${kind} without ${field}` };
    },
  },
  {
    name: 'null_required',
    weight: { ws: 2, batch: 2, http: 2 },
    make(c) {
      const [kind, field] = kindWith(c, ['name', 'number', 'object'], true);
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      op[field] = null;
      if (field === 'value') delete op['delta'];
      return { kind, op, expect: { code: 'invalid_field' }, note: `${kind}.${field} = null (null counts as absent)` };
    },
  },
  {
    name: 'empty_required_name',
    weight: { ws: 2, batch: 2, http: 2 },
    make(c) {
      const [kind, field] = kindWith(c, ['name'], true);
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      op[field] = '';
      return { kind, op, expect: { code: 'invalid_field' }, note: `${kind}.${field} = ""` };
    },
  },
  {
    name: 'wrong_type',
    weight: { ws: 8, batch: 6, http: 8 },
    make(c) {
      const [kind, field] = kindWith(c, ['name', 'text', 'number', 'int', 'object', 'names', 'stacktrace', 'metric_type']);
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      const { v, what } = wrongValue(c, SCHEMA[kind]![field]!.type);
      op[field] = v;
      return { kind, op, expect: { code: 'invalid_field' }, note: `${kind}.${field} is a ${what}` };
    },
  },
  {
    name: 'bad_item_type',
    weight: { ws: 2, batch: 2, http: 2 },
    make(c) {
      const [kind, field] = kindWith(c, ['names', 'stacktrace']);
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      const items: unknown[] = Array.from({ length: c.rng.range(0, 5) }, () => nameStr(c.rng));
      items.splice(c.rng.int(items.length + 1), 0, c.rng.pick<unknown>([1, true, null, ['x'], { a: 1 }]));
      op[field] = items;
      return { kind, op, expect: { code: 'invalid_field' }, note: `${kind}.${field} holds a non-string` };
    },
  },
  {
    name: 'non_finite_number',
    weight: { ws: 2, batch: 2, http: 2 },
    make(c) {
      const kind = 'metric';
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      const field = c.rng.pick(['value', 'delta']);
      // JSON has no NaN: over HTTP the body says 1e999, which JSON.parse reads as Infinity.
      op[field] = c.rng.pick(c.t === 'http' ? [Infinity, -Infinity] : [NaN, Infinity, -Infinity]);
      return { kind, op, expect: { code: 'invalid_field' }, note: `metric.${field} = ${op[field]}` };
    },
  },
  {
    name: 'bad_int',
    weight: { ws: 2, batch: 2, http: 2 },
    make(c) {
      const [kind, field] = kindWith(c, ['int']);
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      const max = SCHEMA[kind]![field]!.max!;
      op[field] = c.rng.pick([-1, 1.5, max + 1 > Number.MAX_SAFE_INTEGER ? 2 ** 53 : max + 1, -(2 ** 40), 0.1]);
      return { kind, op, expect: { code: 'invalid_field' }, note: `${kind}.${field} = ${op[field]}` };
    },
  },
  {
    name: 'bad_metric_type',
    weight: { ws: 1, batch: 1, http: 1 },
    make(c) {
      const kind = 'metric';
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      op['type'] = c.rng.pick(['meter', 'Gauge', 'gauge ', '', 'constructor', '__proto__', str(c.rng, 5)]);
      return { kind, op, expect: { code: 'invalid_field' }, note: `metric.type = ${JSON.stringify(op['type'])}` };
    },
  },
  {
    name: 'delta_not_counter',
    weight: { ws: 1, batch: 1, http: 1 },
    make(c) {
      const kind = 'metric';
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      op['type'] = c.rng.pick(['gauge', 'histogram', 'timer']);
      op['delta'] = finiteNumber(c.rng);
      return { kind, op, expect: { code: 'invalid_field' }, note: `a ${op['type']} with a delta (its increment would be lost)` };
    },
  },
  {
    name: 'bad_buckets',
    weight: { ws: 1, batch: 1, http: 1 },
    make(c) {
      const kind = 'metric';
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      const bad = c.rng.pick<unknown>([[], [3, 2], [1, 1], ['inf', 1], [1, 'x'], 'inf', { le: 1 }, Array.from({ length: 1001 }, (_, i) => i)]);
      op['metadata'] = { buckets: bad };
      return { kind, op, expect: { code: 'invalid_field' }, note: `metric.metadata.buckets = ${JSON.stringify(bad).slice(0, 40)}` };
    },
  },
  {
    name: 'name_too_long',
    weight: { ws: 3, batch: 3, http: 3 },
    make(c) {
      const [kind, field] = kindWith(c, ['name']);
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      const len = c.rng.chance(0.3) ? LIMITS.max_name_length + 1 : c.rng.logRange(LIMITS.max_name_length + 1, 2000);
      op[field] = str(c.rng, len);
      return { kind, op, expect: { code: 'too_long' }, note: `${kind}.${field} is ${len} long` };
    },
  },
  {
    name: 'text_too_long',
    weight: { ws: 2, batch: 2, http: 2 },
    make(c) {
      const [kind, field] = kindWith(c, ['text', 'stacktrace', 'object']);
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      const len = c.rng.chance(0.3) ? LIMITS.max_string_length + 1 : c.rng.range(LIMITS.max_string_length + 1, 9000);
      const long = str(c.rng, len);
      const type = SCHEMA[kind]![field]!.type;
      if (type === 'object') op[field] = withKeyAt(c.rng, c.rng.range(1, LIMITS.max_depth), kind === 'state' ? 'score' : 'note', long, c.t, { keys: kind === 'state' ? 'state' : 'any' });
      else if (type === 'stacktrace' && c.rng.chance(0.5)) op[field] = ['frame 1', long];
      else op[field] = long;
      return { kind, op, expect: { code: 'too_long' }, note: `a ${len}-character string in ${kind}.${field}` };
    },
  },
  {
    name: 'too_many_items',
    weight: { ws: 1, batch: 1, http: 1 },
    make(c) {
      const [kind, field] = kindWith(c, ['names']);
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      const n = c.rng.chance(0.3) ? LIMITS.max_name_length + 1 : c.rng.range(LIMITS.max_name_length + 1, 2000);
      op[field] = Array.from({ length: n }, () => 't');
      return { kind, op, expect: { code: 'too_long' }, note: `${kind}.${field} has ${n} items` };
    },
  },
  {
    name: 'key_too_long',
    weight: { ws: 1, batch: 1, http: 1 },
    make(c) {
      const [kind, field] = kindWith(c, ['object']);
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      const len = c.rng.range(LIMITS.max_name_length + 1, 500);
      op[field] = withKeyAt(c.rng, c.rng.range(1, LIMITS.max_depth), str(c.rng, len, 'ascii'), 1, c.t, { keys: kind === 'state' ? 'state' : 'any' });
      return { kind, op, expect: { code: 'too_long' }, note: `a ${len}-character key in ${kind}.${field}` };
    },
  },
  {
    name: 'too_deep',
    weight: { ws: 4, batch: 3, http: 4 },
    make(c) {
      const [kind, field] = kindWith(c, ['object']);
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      // Past max_depth, but far from what exhausts a decoder's (or encoder's) stack: that is
      // a case of its own in test/fuzz-regressions.json.
      const depth = c.rng.chance(0.4) ? LIMITS.max_depth + 1 : c.rng.logRange(LIMITS.max_depth + 1, 300);
      op[field] = nestedTo(c.rng, depth, scalar(c.rng), { keys: kind === 'state' ? 'state' : 'any' });
      return { kind, op, expect: { code: 'too_deep' }, note: `${kind}.${field} nested ${depth} deep` };
    },
  },
  {
    name: 'bin_in_value',
    weight: { ws: 2, batch: 2 },
    make(c) {
      const [kind, field] = kindWith(c, ['object']);
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      // The bin sits one level below the deepest container, so it stays within max_depth.
      const depth = c.rng.range(1, LIMITS.max_depth - 1);
      op[field] = nestedTo(c.rng, depth, c.rng.bytes(c.rng.range(0, 16)), { keys: kind === 'state' ? 'state' : 'any' });
      return { kind, op, expect: { code: 'invalid_field' }, note: `MessagePack bin at depth ${depth + 1} of ${kind}.${field}: JSON has no bytes` };
    },
  },
  {
    name: 'forbidden_key',
    weight: { ws: 4, batch: 3, http: 5 },
    make(c) {
      const [kind, field] = kindWith(c, ['object']);
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      // Over WebSocket, msgpackr renames "__proto__" while decoding (mutation proto_key_renamed).
      const key = c.rng.pick(c.t === 'http' ? ['constructor', 'prototype', '__proto__'] : ['constructor', 'prototype']);
      const depth = c.rng.range(1, LIMITS.max_depth);
      op[field] = withKeyAt(c.rng, depth, key, c.rng.pick<Value>([{ polluted: true }, 1, null, 'x']), c.t, { keys: kind === 'state' ? 'state' : 'any' });
      return { kind, op, expect: { code: 'forbidden_key' }, note: `"${key}" as a key at depth ${depth} of ${kind}.${field}` };
    },
  },
  {
    name: 'proto_key_renamed',
    weight: { ws: 2, batch: 2 },
    make(c) {
      const kind = c.rng.pick(['state', 'event', 'metric']);
      const field = kind === 'state' ? 'state' : kind === 'event' ? 'data' : 'metadata';
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      const depth = c.rng.range(1, LIMITS.max_depth - 1); // its value is one level more
      op[field] = withKeyAt(c.rng, depth, '__proto__', { polluted: true }, c.t, { keys: kind === 'state' ? 'state' : 'any' });
      return { kind, op, expect: OK, note: `"__proto__" at depth ${depth} of ${kind}.${field}: decoded as "__proto_" (docs/protocol.md)` };
    },
  },
  {
    name: 'lone_surrogates',
    weight: { ws: 1, batch: 1, http: 1 },
    make(c) {
      const kind = c.rng.pick(['event', 'state']);
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      if (kind === 'event') op['message'] = loneSurrogates(c.rng);
      else op['state'] = { player: loneSurrogates(c.rng) };
      return { kind, op, expect: OK, note: `lone surrogates in ${kind} text` };
    },
  },
  {
    name: 'unknown_op',
    weight: { ws: 3, batch: 3 },
    make(c) {
      const kind = c.rng.pick(HARMLESS_KINDS);
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      const k = c.rng.pick<unknown>(['teleport', 'Event', 'event ', 'EVENT', '', 'register2', '__proto__', 'constructor', 'toString', 'batch', 'ops', 1, 0, true, { k: 'event' }, null, str(c.rng, 8)]);
      if (c.rng.chance(0.1)) delete op['k'];
      else op['k'] = k;
      return { kind, op, expect: { code: 'unknown_op' }, note: `k = ${JSON.stringify(op['k'])}` };
    },
  },
  {
    name: 'unknown_session',
    weight: { ws: 3, http: 3 },
    make(c) {
      const kind = c.rng.pick(OP_KINDS.filter((k) => k !== 'register' && (c.t !== 'http' || k !== 'crash')));
      const id = c.rng.pick([`local-session-${c.rng.u32()}-${c.rng.int(1000)}`, `srv-${c.rng.u32()}`, nameStr(c.rng), '0', 'null', '<live:9>']);
      return { kind, op: validOp(c.rng, kind, c.t, id), expect: { code: 'unknown_session' }, note: `${kind} for session "${id}" that does not exist` };
    },
  },
  {
    name: 'ended_session',
    weight: { ws: 3, batch: 0, http: 3 },
    make(c) {
      const kind = c.rng.pick(OP_KINDS.filter((k) => k !== 'register' && (c.t !== 'http' || k !== 'crash')));
      const session = c.rng.pick([ENDED, CRASHED]);
      return { kind, op: validOp(c.rng, kind, c.t, session), expect: afterEnd(kind), note: `${kind} for the ${session} session` };
    },
  },
  {
    name: 'not_an_object',
    weight: { ws: 2, batch: 2, http: 2 },
    make(c) {
      const kind = c.rng.pick(HTTP_KINDS);
      const pool: unknown[] = [null, 1, 'event', true, [], [{ k: 'event' }], 0.5];
      if (c.t !== 'http') pool.push(c.rng.bytes(4), new Date(0));
      const op = c.rng.pick(pool);
      // ops frame: no map, no q (refused by position); batch: no `k` (unknown_op); HTTP: bad_request.
      const expect: OpExpect = c.t === 'ws' ? { code: 'invalid_field', noQ: true } : c.t === 'batch' ? { code: 'unknown_op' } : { code: 'bad_request' };
      return { kind, op, expect, note: `the op is ${JSON.stringify(op)}`, q: 'none' };
    },
  },
  {
    name: 'bad_q',
    weight: { ws: 3 },
    make(c) {
      const kind = harmlessKind(c);
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      const badQ = c.rng.pick<unknown>([undefined, 0, -1, 1.5, '7', 2 ** 53, 2 ** 60, NaN, null, true, [1], { q: 1 }, -0.5]);
      return { kind, op, expect: { code: 'invalid_field', noQ: true }, note: `q = ${String(badQ)}`, q: 'none', badQ };
    },
  },
  {
    name: 'resent_q',
    weight: { ws: 2 },
    make(c) {
      // A q at or below the connection's mark is a resend: skipped without a word. Its body
      // would be refused (unknown_op) if the daemon looked at it, so a skip is observable.
      const kind = 'event';
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      op['k'] = 'not-a-kind';
      return { kind, op, expect: OK, note: 'an op numbered at or below the mark: skipped as a resend', q: 'resend' };
    },
  },
  {
    name: 'register_in_batch',
    weight: { batch: 1 },
    make(c) {
      const kind = 'register';
      const op = validOp(c.rng, kind, c.t, liveSession(c));
      return { kind, op, expect: { code: 'invalid_field' }, note: 'register inside a batch' };
    },
  },
];

export const MUTATION_NAMES = MUTATIONS.map((m) => m.name);

const TABLES: Record<Transport, Array<[number, Mutation]>> = {
  ws: MUTATIONS.filter((m) => m.weight.ws).map((m) => [m.weight.ws!, m]),
  batch: MUTATIONS.filter((m) => m.weight.batch).map((m) => [m.weight.batch!, m]),
  http: MUTATIONS.filter((m) => m.weight.http).map((m) => [m.weight.http!, m]),
};

/**
 * Largest op a case may be, as plain MessagePack: even written in the widest forms (msgpack.ts)
 * it then fits in one frame with room to spare, so no op case is a frame-size case by accident.
 */
export const MAX_OP_BYTES = 12_000;

/** One op case for `t`, from its own generator (drawn again, same PRNG, if it came out too big). */
export function opCase(rng: Rng, t: Transport): OpCase {
  for (;;) {
    const m = rng.weighted(TABLES[t]);
    const made = m.make({ rng, t });
    if (encode(made.op, 'plain').length > MAX_OP_BYTES) continue;
    return { transport: t, mutation: m.name, q: 'next', ...made };
  }
}

/** The kind an op case's body is for (HTTP: the path it is posted to). */
export function kindOf(op: unknown): string | undefined {
  return op && typeof op === 'object' && !Array.isArray(op) ? ((op as Op)['k'] as string | undefined) : undefined;
}

export { junk };
