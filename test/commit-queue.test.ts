import t from 'tap';
import { openStore } from '../dist/src/outbox/store.js';
import { CommitQueue } from '../dist/src/outbox/commit-queue.js';
import { decodeCounters } from '../dist/src/outbox/counters.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (v: Uint8Array | undefined): string | undefined => (v === undefined ? undefined : new TextDecoder().decode(v));

t.test('write sets submitted together are one batch, and a key written by several ends with the last write', async (t) => {
  const db = await openStore(t.testdir());
  t.teardown(() => db.close());
  const commits = new CommitQueue(db, decodeCounters(undefined), { sync: false });
  await commits.submit({ puts: [['x!gone', bytes('old')]] });
  const before = commits.batchesWritten;
  // In one tick, as a round's submitters do: a client's mark put by every frame, a put then a
  // delete, a delete then a put, beside chunks.
  const submitted = [
    commits.submit({ chunks: [{ sn: 1, count: 2, value: bytes('c1') }], puts: [['h!client', bytes('1')], ['x!put-then-del', bytes('v')]] }),
    commits.submit({ puts: [['h!client', bytes('2')]], dels: ['x!put-then-del', 'x!gone'] }),
    commits.submit({ chunks: [{ sn: 1, count: 1, value: bytes('c2') }], puts: [['h!client', bytes('3')], ['x!gone', bytes('back')]] }),
  ];
  const results = await Promise.all(submitted);
  t.equal(commits.batchesWritten - before, 1, 'one LevelDB batch');
  t.same(results.map((r) => r.chunkSeqs), [[1], [], [3]], 'chunks keep their sequence numbers in submission order');
  t.equal(text(await db.get('h!client')), '3', 'the last mark');
  t.equal(await db.get('x!put-then-del'), undefined, 'a put then a delete: deleted');
  t.equal(text(await db.get('x!gone')), 'back', 'a delete then a put: put');
  t.equal(commits.counters.depth, 3);
});
