import type { Db } from './store.js';
import { ALL_CHUNKS, ALL_DEAD, ALL_IDS, ALL_REMAPS, ALL_SNAPSHOTS, COUNTERS, cursorKey, parseChunkKey, parseDeadKey, parseSnapshotKey } from './keys.js';
import { countOps, type ChunkEntry } from './chunk.js';
import { decodeCounters, encodeCounters, type Counters } from './counters.js';
import { unpack } from '../protocol/codec.js';

/**
 * Rebuilds the counters record from what the store holds: a full scan, for `datacat-daemon
 * repair` (LevelDB repair may drop damaged records, so the old counters may no longer match)
 * and for tests that check the counters are exact. Normal startup never does this.
 *
 * Depth, bytes, dead letters and remaps are counted; the sequence and id counters are raised
 * past anything stored, so nothing is ever reused; drop counts are kept as they were (a drop
 * leaves nothing behind to count).
 */
export async function recountCounters(db: Db): Promise<{ stored: Counters; counted: Counters }> {
  const stored = decodeCounters(await db.get(COUNTERS));
  const counted: Counters = { ...stored, depth: 0, bytes: 0, dead: 0, remaps: 0 };
  for await (const [key, value] of db.iterator(ALL_CHUNKS)) {
    const { sn, seq } = parseChunkKey(key);
    const ops = countOps(unpack(value) as ChunkEntry[]);
    const cursor = await db.get(cursorKey(sn));
    const delivered = cursor && (unpack(cursor) as [number, number])[0] === seq ? (unpack(cursor) as [number, number])[1] : 0;
    counted.depth += ops - delivered;
    counted.bytes += value.byteLength;
    counted.seq = Math.max(counted.seq, seq + ops);
  }
  for await (const key of db.keys(ALL_DEAD)) {
    counted.dead++;
    counted.seq = Math.max(counted.seq, parseDeadKey(key) + 1);
  }
  for await (const _ of db.keys(ALL_REMAPS)) counted.remaps++;
  for await (const key of db.keys(ALL_SNAPSHOTS)) counted.sessions = Math.max(counted.sessions, parseSnapshotKey(key));
  for await (const key of db.keys(ALL_IDS)) {
    const n = /^i!local-session-\d+-(\d+)$/.exec(key);
    if (n) counted.local = Math.max(counted.local, Number(n[1]));
  }
  return { stored, counted };
}

/** Writes a recounted counters record. */
export async function writeCounters(db: Db, counters: Counters): Promise<void> {
  await db.put(COUNTERS, encodeCounters(counters));
}
