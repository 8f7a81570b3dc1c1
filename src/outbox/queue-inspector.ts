import type { Db } from './store.js';
import type { CommitQueue, WriteSet } from './commit-queue.js';
import { ALL_CHUNKS, ALL_DEAD, chunkKey, chunkRange, cursorKey, deadKey, parseChunkKey, parseDeadKey } from './keys.js';
import { countOps, decodeChunk, encodeChunk, type ChunkEntry } from './chunk.js';
import { unpack } from '../protocol/codec.js';
import type { Directory } from '../actors/directory.js';
import type { DeadLetter } from './dead-letter.js';

/** One queued op or dead letter, as GET /queue lists it (CONTRACT §2). */
export interface QueueItem {
  seq: number;
  session_id: string;
  kind: string;
  attempts: number;
  enqueued_at: string;
  last_error: string | null;
}

export interface QueueQuery {
  sessionId?: string;
  limit: number;
  dead: boolean;
}

/** What the sync actor knows of a session's head op (tries and last error live in memory). */
export type HeadInfo = (sn: number) => { seq: number; attempts: number; last_error: string | null } | null;

const REPLAY_BATCH = 500;

/**
 * Operator access to the outbox: listing queued ops and dead letters, and moving dead letters
 * back into the queue. It reads LevelDB directly (bounded by `limit`, never the whole backlog into
 * memory) and writes through the commit queue like everything else.
 */
export class QueueInspector {
  constructor(
    private readonly db: Db,
    private readonly commits: CommitQueue,
    private readonly directory: Directory,
    private readonly headInfo: HeadInfo,
  ) {}

  /** The replay in progress, if any: the next one starts after it (replay). */
  private replaying: Promise<unknown> = Promise.resolve();

  /**
   * Queued ops in delivery order within each session (sessions by session number), or dead
   * letters by sequence number. `total` counts everything that matches, not only what is listed.
   */
  async list(q: QueueQuery): Promise<{ items: QueueItem[]; total: number } | null> {
    let sn: number | undefined;
    if (q.sessionId !== undefined) {
      sn = this.directory.resolve(q.sessionId);
      if (sn === undefined) return null;
    }
    return q.dead ? this.listDead(q.limit, sn) : this.listQueued(q.limit, sn);
  }

  private async listQueued(limit: number, only: number | undefined): Promise<{ items: QueueItem[]; total: number }> {
    const items: QueueItem[] = [];
    let total = only === undefined ? this.commits.counters.depth : 0;
    let cursorOf = null as { sn: number; at: [number, number] | null } | null;
    for await (const [key, value] of this.db.iterator(only === undefined ? ALL_CHUNKS : chunkRange(only))) {
      const { sn, seq } = parseChunkKey(key);
      if (cursorOf?.sn !== sn) {
        const c: Uint8Array | undefined = await this.db.get(cursorKey(sn));
        cursorOf = { sn, at: c ? (unpack(c) as [number, number]) : null };
      }
      // Ops before the cursor in its chunk are delivered: not queued any more.
      const from = cursorOf.at && cursorOf.at[0] === seq ? cursorOf.at[1] : 0;
      if (only !== undefined) total += countOps(unpack(value) as ChunkEntry[]) - from;
      if (items.length >= limit) {
        if (only === undefined) break;
        continue; // keep counting this session's ops
      }
      const head = this.headInfo(sn);
      const ops = decodeChunk(value);
      for (let i = from; i < ops.length && items.length < limit; i++) {
        const op = ops[i]!;
        const isHead = head?.seq === seq + i;
        items.push({
          seq: seq + i,
          session_id: this.idOf(sn),
          kind: op.k,
          attempts: isHead ? head.attempts : 0,
          enqueued_at: new Date(op.t).toISOString(),
          last_error: isHead ? head.last_error : null,
        });
      }
    }
    return { items, total };
  }

  private async listDead(limit: number, only: number | undefined): Promise<{ items: QueueItem[]; total: number }> {
    const items: QueueItem[] = [];
    let total = only === undefined ? this.commits.counters.dead : 0;
    for await (const value of this.db.values(ALL_DEAD)) {
      const d = unpack(value) as DeadLetter;
      if (only !== undefined) {
        if (d.sn !== only) continue;
        total++;
      }
      if (items.length >= limit) {
        if (only === undefined) break;
        continue;
      }
      items.push({ seq: d.seq, session_id: this.idOf(d.sn), kind: d.op.k, attempts: d.attempts, enqueued_at: new Date(d.op.t).toISOString(), last_error: d.reason });
    }
    return { items, total };
  }

  /**
   * Moves every dead letter back into its session's queue where its original sequence number
   * places it (a replayed create comes before the ops that needed it). Returns how many were
   * replayed. `moved` is told of each session touched as soon as its dead letters are back in the
   * queue (its lane must read from the start again), so that a replay failing part way leaves
   * none of those it did move unnoticed: nothing else would tell the sync actor of them.
   */
  replay(moved: (sn: number) => void): Promise<{ replayed: number }> {
    // One at a time: two replays at once read the same dead letters before either had moved
    // them, and each put them back into the queue (sent twice, the dead counter below zero).
    const run = this.replaying.then(() => this.replayAll(moved));
    this.replaying = run.catch(() => undefined);
    return run;
  }

  private async replayAll(moved: (sn: number) => void): Promise<{ replayed: number }> {
    let replayed = 0;
    for (;;) {
      const batch = await this.db.iterator({ ...ALL_DEAD, limit: REPLAY_BATCH }).all();
      if (batch.length === 0) break;
      // Each op a chunk of its own, placed by its original number (keys.ts, replayedChunkKey).
      const ws: WriteSet = { chunks: [], dels: [], deltas: { dead: 0 } };
      const sessions = new Set<number>();
      for (const [key, value] of batch) {
        const d = unpack(value) as DeadLetter;
        ws.chunks!.push({ sn: d.sn, count: 1, value: encodeChunk([d.op]), sortsAs: parseDeadKey(key) });
        ws.dels!.push(key);
        ws.deltas!.dead! -= 1;
        sessions.add(d.sn);
      }
      await this.commits.submit(ws);
      replayed += batch.length;
      for (const sn of sessions) moved(sn);
    }
    return { replayed };
  }

  private idOf(sn: number): string {
    const ids = this.directory.ids(sn);
    return ids?.server_id ?? ids?.local_id ?? `#${sn}`;
  }
}
