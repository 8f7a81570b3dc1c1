import { pack, unpack } from '../protocol/codec.js';

/**
 * Counters persisted in every write batch (key `k!counters`), so that startup reads one key
 * instead of scanning the queue, and the numbers stay exact across a SIGKILL: they can never
 * disagree with the entries they count, because they are written in the same atomic batch.
 */
export interface Counters {
  /** Next outbox op sequence number. */
  seq: number;
  /** Ops in the outbox, not yet delivered or dead-lettered. */
  depth: number;
  /** Bytes of outbox chunks still stored (a chunk counts until its last op is consumed). */
  bytes: number;
  /** Dead letters stored. */
  dead: number;
  /** Ops discarded by an overflow policy, ever (the sum of the two below). */
  dropped: number;
  /** Events and metrics refused on arrival under `overflow: drop_newest`. */
  dropped_newest: number;
  /** Queued events and metrics discarded to make room under `overflow: drop_oldest`. */
  dropped_oldest: number;
  /** Last session number given out. */
  sessions: number;
  /** Last `n` used in a `local-session-<unix>-<n>` id; never reused. */
  local: number;
  /** Remaps recorded, ever. */
  remaps: number;
  /**
   * Upstream requests whose outcome the daemon could not know, ever (possible duplicates): a
   * timeout or reset after sending, and after a kill, what its send leases covered (keys.ts).
   */
  in_doubt: number;
}

export const ZERO_COUNTERS: Readonly<Counters> = { seq: 1, depth: 0, bytes: 0, dead: 0, dropped: 0, dropped_newest: 0, dropped_oldest: 0, sessions: 0, local: 0, remaps: 0, in_doubt: 0 };

/** Changes a write set makes to the accounting counters; applied when its batch is built. */
export type CounterDeltas = Partial<Pick<Counters, 'depth' | 'bytes' | 'dead' | 'dropped' | 'dropped_newest' | 'dropped_oldest' | 'remaps' | 'in_doubt'>>;

export function encodeCounters(c: Counters): Uint8Array {
  return pack(c);
}

export function decodeCounters(buf: Uint8Array | undefined): Counters {
  if (!buf) return { ...ZERO_COUNTERS };
  return { ...ZERO_COUNTERS, ...(unpack(buf) as Partial<Counters>) };
}
