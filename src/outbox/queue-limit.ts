import type { OverflowPolicy } from '../config/index.js';
import type { CommitQueue } from './commit-queue.js';

/**
 * `queue_max_bytes` and the overflow policy. The outbox's size is its durable byte counter plus
 * what is waiting to be written, so a burst cannot slip past the bound between two batches.
 *
 * - `block`: the outbox takes nothing more until the sync actor has made room (HTTP answers 503
 *   with Retry-After; WebSocket connections stop being read and are told so).
 * - `drop_newest`: arriving events and metrics are discarded (and counted); everything else, the
 *   session lifecycle and state, is still accepted, past the bound if need be.
 * - `drop_oldest`: everything is accepted, and the oldest queued events and metrics are discarded
 *   (and counted) until the outbox is back under LOW_WATER of its bound.
 */
export const LOW_WATER = 0.9;

export class QueueLimit {
  constructor(
    readonly maxBytes: number,
    readonly policy: OverflowPolicy,
    private readonly commits: CommitQueue,
  ) {}

  get bytes(): number {
    return this.commits.counters.bytes + this.commits.pendingBytes;
  }

  get full(): boolean {
    return this.bytes >= this.maxBytes;
  }

  /** How many bytes drop_oldest must free to get back under the low-water mark. */
  get excess(): number {
    return Math.max(0, this.bytes - Math.floor(this.maxBytes * LOW_WATER));
  }
}
