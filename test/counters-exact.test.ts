import t from 'tap';
import { ClassicLevel } from 'classic-level';
import { connect } from '../dist/src/client/index.js';
import { ALL_CHUNKS, ALL_DEAD, COUNTERS, cursorKey, parseChunkKey } from '../dist/src/outbox/keys.js';
import { countOps, type ChunkEntry } from '../dist/src/outbox/chunk.js';
import { decodeCounters } from '../dist/src/outbox/counters.js';
import { unpack } from '../dist/src/protocol/codec.js';
import { spawnDaemon } from './support/daemon-harness.js';

/** Recounts the outbox from its entries, independently of the counters record. */
async function recount(dataDir: string): Promise<{ counters: ReturnType<typeof decodeCounters>; depth: number; bytes: number; dead: number }> {
  const db = new ClassicLevel<string, Uint8Array>(dataDir, { keyEncoding: 'utf8', valueEncoding: 'view' });
  await db.open();
  try {
    let depth = 0;
    let bytes = 0;
    for await (const [key, value] of db.iterator(ALL_CHUNKS)) {
      const { sn, seq } = parseChunkKey(key);
      const cursor = await db.get(cursorKey(sn));
      const delivered = cursor && (unpack(cursor) as [number, number])[0] === seq ? (unpack(cursor) as [number, number])[1] : 0;
      depth += countOps(unpack(value) as ChunkEntry[]) - delivered;
      bytes += value.byteLength;
    }
    let dead = 0;
    for await (const _ of db.keys(ALL_DEAD)) dead++;
    return { counters: decodeCounters(await db.get(COUNTERS)), depth, bytes, dead };
  } finally {
    await db.close();
  }
}

t.test('depth and bytes stay exact across SIGKILLs in the middle of writes', async (t) => {
  const dataDir = t.testdir();
  for (let round = 0; round < 3; round++) {
    const d = await spawnDaemon(t, ['--data-dir', dataDir, '--server-url', 'http://127.0.0.1:9']);
    const client = connect({ url: `ws://127.0.0.1:${d.port}`, reconnectMaxMs: 100 });
    client.on('error', () => undefined);
    const session = await client.register({ product: 'exact', version: String(round) });
    const httpId = await d.api.register('exact-http', String(round));
    let stop = false;
    const http = (async () => {
      for (let i = 0; !stop; i++) await d.api.post('/event', { session_id: httpId, name: 'h', data: { i } }).catch(() => undefined);
    })();
    const ws = (async () => {
      for (let i = 0; !stop; i++) {
        session.logEvent('w', { data: { i } });
        if (i % 200 === 0) await new Promise((r) => setTimeout(r, 1));
      }
    })();
    await new Promise((r) => setTimeout(r, 400 + 300 * round));
    await d.kill('SIGKILL'); // mid-stream: batches in flight, acked and not
    stop = true;
    await Promise.all([http, ws]);
    client.close({ timeoutMs: 0 }).catch(() => undefined);
    const { counters, depth, bytes, dead } = await recount(dataDir);
    t.equal(counters.depth, depth, `kill ${round + 1}: depth counter ${counters.depth} = ops stored`);
    t.equal(counters.bytes, bytes, `kill ${round + 1}: bytes counter = chunk bytes stored`);
    t.equal(counters.dead, dead, `kill ${round + 1}: dead-letter counter = dead letters stored`);
    t.ok(depth > 0);
  }
});
