import type { Db } from './store.js';
import { ALL_CHUNKS } from './keys.js';

/**
 * Gives disk space back after a backlog drains. Delivered chunks are deleted as they are
 * consumed, but LevelDB only frees their files when compaction rewrites the range, which it does
 * lazily; so once a lot has been deleted (RECLAIM_BYTES), or the queue has just become empty,
 * the outbox range is compacted explicitly. One compaction at a time, in the background.
 */
export const RECLAIM_BYTES = 256 * 1024 * 1024;

export class Reclaimer {
  private deletedSince = 0;
  private running: Promise<void> | null = null;
  compactions = 0;

  constructor(private readonly db: Db) {}

  /** Chunk bytes just deleted (their deletion is durable). */
  deleted(bytes: number): void {
    this.deletedSince += bytes;
    if (this.deletedSince >= RECLAIM_BYTES) this.compact();
  }

  /** Every queued op has been delivered: a good moment to hand the space back. */
  drained(): void {
    if (this.deletedSince > 0) this.compact();
  }

  /** Resolves when the compaction in progress (if any) is done. */
  idle(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  private compact(): void {
    if (this.running) return;
    this.deletedSince = 0;
    this.running = this.db
      .compactRange(ALL_CHUNKS.gt, ALL_CHUNKS.lt)
      .then(() => void this.compactions++)
      .catch(() => undefined) // only space is at stake; the next trigger tries again
      .finally(() => (this.running = null));
  }
}
