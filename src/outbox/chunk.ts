import { pack, unpack } from '../protocol/codec.js';
import { ProtocolError } from '../protocol/errors.js';
import { validateOp } from '../protocol/validate.js';
import type { Limits } from '../protocol/limits.js';
import type { JsonObject, MetricBody, Op } from '../protocol/ops.js';

/** What goes upstream, one entry per DataCat REST request (CONTRACT §3). Heartbeats are not queued. */
export type UpstreamKind = 'create' | 'state' | 'event' | 'metric' | 'end' | 'crash';

export interface UpstreamOp {
  /** Kind of request. */
  k: UpstreamKind;
  /** Daemon receive time, ms since the epoch: the upstream `timestamp` and the op's enqueued_at. */
  t: number;
  /** The request body without `timestamp` (added at send time from `t`). */
  b: Record<string, unknown>;
  /**
   * A create only: the server already refused it, answering /register's own attempt with a 4xx
   * (this is that answer). It is not retried: the sync actor makes it a dead letter without
   * sending it again (CONTRACT §3). Replaying the dead letter sends it.
   */
  refused?: string;
  /**
   * A metric the daemon made from a session's counter or histogram aggregates (its periodic
   * snapshot), not one the client sent: reads do not list it among the session's recent metrics.
   */
  agg?: true;
}

/**
 * Events and metrics that go upstream as the client sent them, kept as the client's own bytes:
 * ops `i` (ascending indices) of the MessagePack array `r` (a WebSocket batch), received at `t`.
 * Re-encoding them was half of the workers' busy time under WebSocket load; decoding them again
 * happens when the sync actor sends them, at the upstream's pace.
 */
export interface RawSegment {
  r: Uint8Array;
  t: number;
  i: number[];
}

/** One entry of a chunk: an op the daemon built (create, state patch, aggregate, its own events,
 *  end, crash) or a run of ops kept as received. */
export type ChunkEntry = UpstreamOp | RawSegment;

/**
 * An outbox chunk: one session's upstream ops from one round, in order. One LevelDB entry per
 * chunk instead of per op: measured 1.7 M ops/s (chunks of 100) against 0.12 M ops/s (one entry
 * per op), encode included.
 */
export function encodeChunk(entries: ChunkEntry[]): Uint8Array {
  return pack(entries);
}

/** Ops in a chunk (what the queue depth counts). */
export function countOps(entries: ChunkEntry[]): number {
  let n = 0;
  for (const e of entries) n += 'r' in e ? e.i.length : 1;
  return n;
}

/**
 * Re-normalizing ops that were validated when they arrived: limits cannot refuse them again
 * (the configured limits may have changed since), so they are effectively off.
 */
const UNBOUNDED: Limits = {
  max_body_bytes: Number.MAX_SAFE_INTEGER,
  max_frame_bytes: Number.MAX_SAFE_INTEGER,
  max_ops_per_frame: Number.MAX_SAFE_INTEGER,
  max_depth: 1_000_000,
  max_string_length: Number.MAX_SAFE_INTEGER,
  max_name_length: Number.MAX_SAFE_INTEGER,
};

/** The chunk's upstream ops, in order, with raw segments decoded and normalized. */
export function decodeChunk(bytes: Uint8Array): UpstreamOp[] {
  const entries = unpack(bytes) as ChunkEntry[];
  const out: UpstreamOp[] = [];
  for (const e of entries) {
    if (!('r' in e)) {
      out.push(e);
      continue;
    }
    const raw = unpack(e.r) as unknown[];
    for (const i of e.i) {
      const item = raw[i] as { k?: unknown };
      // The same normalization as at ingest (known fields only, `level` → category), so what is
      // sent is exactly what would have been stored had the op been re-encoded.
      const op = renormalize(item);
      if (op.kind === 'event') out.push({ k: 'event', t: e.t, b: op.body as unknown as JsonObject });
      else if (op.kind === 'metric') out.push({ k: 'metric', t: e.t, b: metricUpstreamBody(op.body) });
    }
  }
  return out;
}

function renormalize(item: { k?: unknown }): Op {
  try {
    return validateOp(String(item.k), item, UNBOUNDED, '-');
  } catch (err) {
    // Stores written before MessagePack bin was refused in values can hold some in a batch's
    // bytes: such an op goes up as it did then (a Buffer's JSON form) rather than stranding
    // its session's queue.
    if (!(err instanceof ProtocolError) || err.code !== 'invalid_field') throw err;
    return validateOp(String(item.k), bytesAsJson(item) as JsonObject, UNBOUNDED, '-');
  }
}

function bytesAsJson(v: unknown): unknown {
  if (v instanceof Uint8Array) return { type: 'Buffer', data: Array.from(v) };
  if (Array.isArray(v)) return v.map(bytesAsJson);
  if (v === null || typeof v !== 'object') return v;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(v)) out[key] = bytesAsJson((v as Record<string, unknown>)[key]);
  return out;
}

/** CONTRACT §3 metric body: `delta` is between client and daemon only, so it is left out. */
export function metricUpstreamBody(m: MetricBody): JsonObject {
  if (m.delta === undefined) return m as unknown as JsonObject;
  const { delta: _delta, ...rest } = m;
  return rest as unknown as JsonObject;
}

/**
 * overflow drop_oldest: the chunk without its events and metrics (lifecycle and state stay),
 * leaving alone the first `keepFrom` ops (already delivered: a cursor points past them, and
 * their indices must not move). Returns the entries to keep and how many ops were dropped.
 */
export function withoutPassThrough(entries: ChunkEntry[], keepFrom: number): { kept: ChunkEntry[]; dropped: number } {
  const kept: ChunkEntry[] = [];
  let index = 0;
  let dropped = 0;
  for (const e of entries) {
    if ('r' in e) {
      // A raw segment only ever holds events and metrics: keep the part before keepFrom.
      const keep = e.i.filter((_, j) => index + j < keepFrom);
      dropped += e.i.length - keep.length;
      index += e.i.length;
      if (keep.length > 0) kept.push({ r: e.r, t: e.t, i: keep });
      continue;
    }
    if (index >= keepFrom && (e.k === 'event' || e.k === 'metric')) dropped++;
    else kept.push(e);
    index++;
  }
  return { kept, dropped };
}
