import { EventEmitter } from 'node:events';
import type { Db } from './store.js';
import { COUNTERS, chunkKey, replayedChunkKey } from './keys.js';
import { type Counters, type CounterDeltas, encodeCounters } from './counters.js';

/** One session's ops from one round, already encoded by the actor (see outbox/chunk.ts). */
export interface Chunk {
  sn: number;
  /** Ops in the chunk; the chunk takes `count` consecutive sequence numbers. */
  count: number;
  value: Uint8Array;
  /**
   * A replayed dead letter: the op's original number, which places it in the session's queue
   * (keys.ts, replayedChunkKey); the chunk still takes a fresh number of its own.
   */
  sortsAs?: number;
}

/** Everything one producer (a round, the sync actor, an admin call) needs written atomically. */
export interface WriteSet {
  chunks?: Chunk[];
  puts?: Array<[key: string, value: Uint8Array]>;
  dels?: string[];
  deltas?: CounterDeltas;
}

export interface Committed {
  /** First sequence number of each chunk of the write set, in order. */
  chunkSeqs: number[];
}

type BatchOp = { type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string };

interface Pending {
  ws: WriteSet;
  resolve: (c: Committed) => void;
  reject: (err: Error) => void;
}

/**
 * Group commit. Every producer submits a write set; whatever accumulates while a LevelDB write is
 * in flight goes into the next single batch, together with the counters, and the submitters are
 * answered only when that batch is durable. Under load, batches grow by themselves; when idle, a
 * lone op is written at once. There is no timer and no tuning knob to get wrong.
 *
 * Batches are written strictly one after another, so any prefix of the submitted write sets is
 * what a crash can leave behind: producers rely on that ordering (a round's snapshot never lands
 * without the rounds before it).
 *
 * A failed write poisons the queue: that batch, everything pending behind it and every later
 * submit are refused until `recover()`. Write sets submitted after a failed one may depend on it
 * (a round's snapshot builds on the previous round's), so none may land until the owner of that
 * state (the round coordinator, on `failed`) has reloaded it from disk.
 */
export class CommitQueue extends EventEmitter {
  private failure: Error | null = null;
  private pending: Pending[] = [];
  private writing = false;
  private idleWaiters: Array<() => void> = [];
  /** Counters as of the last durable batch. */
  private durable: Counters;
  /** Session and local-id numbers handed out, possibly not yet durable. */
  private allocated: Pick<Counters, 'sessions' | 'local'>;
  /** Bytes submitted and not yet durable: the gateway's backpressure signal. */
  pendingBytes = 0;
  batchesWritten = 0;

  constructor(
    private readonly db: Db,
    counters: Counters,
    private readonly options: { sync: boolean },
  ) {
    super();
    this.durable = { ...counters };
    this.allocated = { sessions: counters.sessions, local: counters.local };
  }

  get counters(): Readonly<Counters> {
    return this.durable;
  }

  /**
   * Hands out the next session number or local-id number. Numbers are persisted with the next
   * batch; anything that reveals one to a client waits for a batch, so none is reused after a crash.
   */
  allocate(kind: 'sessions' | 'local'): number {
    return ++this.allocated[kind];
  }

  submit(ws: WriteSet): Promise<Committed> {
    if (this.failure) return Promise.reject(this.failure);
    this.pendingBytes += sizeOf(ws);
    return new Promise<Committed>((resolve, reject) => {
      this.pending.push({ ws, resolve, reject });
      if (!this.writing) {
        this.writing = true;
        // Let the rest of this tick's submits join the first batch.
        queueMicrotask(() => void this.drain());
      }
    });
  }

  get failed(): boolean {
    return this.failure !== null;
  }

  /** Accepts writes again after a failure, once the caller has resynchronized with the disk. */
  recover(): void {
    this.failure = null;
  }

  /** Resolves once everything submitted so far is durable (or failed). */
  idle(): Promise<void> {
    if (!this.writing && this.pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private async drain(): Promise<void> {
    while (this.pending.length > 0) {
      const group = this.pending;
      this.pending = [];
      const next: Counters = { ...this.durable, ...this.allocated };
      const ops: BatchOp[] = [];
      // A key written more than once in one batch is written once, with its last value (what
      // LevelDB would keep anyway). A client's mark is put once per frame, so under load most of
      // a batch's puts were the same few marks, and every op costs main-thread time to hand over.
      const slotOfKey = new Map<string, number>();
      const write = (op: BatchOp): void => {
        const slot = slotOfKey.get(op.key);
        if (slot === undefined) slotOfKey.set(op.key, ops.push(op) - 1);
        else ops[slot] = op;
      };
      const results: Committed[] = [];
      let bytes = 0;
      for (const { ws } of group) {
        bytes += sizeOf(ws);
        const chunkSeqs: number[] = [];
        if (ws.chunks)
          for (const chunk of ws.chunks) {
            chunkSeqs.push(next.seq);
            const key = chunk.sortsAs === undefined ? chunkKey(chunk.sn, next.seq) : replayedChunkKey(chunk.sn, chunk.sortsAs, next.seq);
            ops.push({ type: 'put', key, value: chunk.value });
            next.seq += chunk.count;
            next.depth += chunk.count;
            next.bytes += chunk.value.byteLength;
          }
        if (ws.puts) for (const [key, value] of ws.puts) write({ type: 'put', key, value });
        if (ws.dels) for (const key of ws.dels) write({ type: 'del', key });
        if (ws.deltas) for (const [name, delta] of Object.entries(ws.deltas)) next[name as keyof CounterDeltas] += delta;
        results.push({ chunkSeqs });
      }
      ops.push({ type: 'put', key: COUNTERS, value: encodeCounters(next) });
      try {
        await writeBatch(this.db, ops, this.options.sync);
        this.durable = next;
        this.batchesWritten++;
        this.pendingBytes -= bytes;
        group.forEach((p, i) => p.resolve(results[i]!));
        this.emit('written');
      } catch (err) {
        const error = new Error(`LevelDB write failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        this.failure = error;
        const refused = group.concat(this.pending.splice(0));
        this.pendingBytes = 0;
        for (const p of refused) p.reject(error);
        this.emit('failed', error);
      }
    }
    this.writing = false;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}

/**
 * Writes one batch through LevelDB's chained batch, which hands each op straight to the native
 * WriteBatch. The array form (`db.batch(ops)`) clones every op and sets its encodings on the
 * clone; with the daemon's mix of shapes that took 16 % of the main thread under HTTP load, mostly
 * in V8 inline-cache misses. Measured: http-ingest 19.7–19.9 k → 22.7–23.7 k ops/s.
 */
async function writeBatch(db: Db, ops: BatchOp[], sync: boolean): Promise<void> {
  const batch = db.batch();
  try {
    for (const op of ops) {
      if (op.type === 'put') batch.put(op.key, op.value);
      else batch.del(op.key);
    }
  } catch (err) {
    await batch.close();
    throw err;
  }
  await batch.write({ sync });
}

function sizeOf(ws: WriteSet): number {
  let n = 0;
  if (ws.chunks) for (const c of ws.chunks) n += c.value.byteLength;
  if (ws.puts) for (const [k, v] of ws.puts) n += k.length + v.byteLength;
  return n;
}
