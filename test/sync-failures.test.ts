import t from 'tap';
import { recountCounters } from '../dist/src/outbox/recount.js';
import type { Db } from '../dist/src/outbox/store.js';
import type { UpstreamOp } from '../dist/src/outbox/chunk.js';
import { cursorKey } from '../dist/src/outbox/keys.js';
import { unpack } from '../dist/src/protocol/codec.js';
import { startFakeUpstream } from './support/fake-upstream.js';
import { syncRig } from './support/sync-rig.js';
import { startTestDaemon, until } from './support/daemon-harness.js';

t.test('two /queue/replay calls at once replay each dead letter once', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url });
  const id = await api.register();
  upstream.addFault({ match: (r) => r.kind === 'event', status: 400 });
  for (let i = 0; i < 5; i++) await api.ok('/event', { session_id: id, name: 'e', data: { i } });
  await api.ok('/flush?wait=1', {});
  t.equal(daemon.health().queue.dead_letters, 5, 'five dead letters');
  upstream.clearFaults();

  // Two operators (or a retrying script) at once: the second call reads the dead letters while
  // the first one's move is being written.
  const answers = await Promise.all([daemon.replay(), daemon.replay()]);
  t.equal(answers[0] + answers[1], 5, `five replayed in all (${answers.join(' + ')})`);
  await api.ok('/flush?wait=1', {});
  await until(() => upstream.applied({ kind: 'event' }).length >= 5, 'the replayed events delivered');
  await new Promise((r) => setTimeout(r, 200));
  t.same(upstream.applied({ kind: 'event' }).map((r) => r.body.data.i).sort(), [0, 1, 2, 3, 4], 'each event once');
  const { stored, counted } = await recountCounters(daemon.db);
  t.equal(stored.dead, counted.dead, 'dead-letter counter exact');
  t.equal(stored.depth, counted.depth, 'depth counter exact');
  t.equal(daemon.health().queue.dead_letters, 0);
});

/** Wraps a store so that the batches `failWrite` picks (by the keys and values they put) fail. */
function failingWrites(raw: Db, failWrite: (puts: Array<[string, Uint8Array]>) => boolean): Db {
  return new Proxy(raw, {
    get(target, prop) {
      if (prop === 'batch')
        return () => {
          const batch = target.batch();
          const puts: Array<[string, Uint8Array]> = [];
          const put = batch.put.bind(batch);
          const write = batch.write.bind(batch);
          return Object.assign(batch, {
            put: (key: string, value: Uint8Array) => {
              puts.push([key, value]);
              return put(key, value);
            },
            write: async (options?: { sync?: boolean }) => {
              if (failWrite(puts)) {
                await batch.close();
                throw new Error('simulated: I/O error');
              }
              return write(options);
            },
          });
        };
      const v = Reflect.get(target, prop);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  }) as Db;
}

const create = (): UpstreamOp => ({ k: 'create', t: 1, b: { product: 'p', version: '1' } });
const state = (i: number): UpstreamOp => ({ k: 'state', t: 2 + i, b: { state: { i } } });

t.test('a consumption record that fails while the lane sends on: the later records do not land without it', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  let failed = 0;
  // Fails once: the record of state 1's delivery (cursor at index 3: create, state 0, state 1).
  const { db, commits, sync, queue } = await syncRig(t, upstream, (db) => failingWrites(db, (puts) => {
    const hit = failed === 0 && puts.some(([k, v]) => k === cursorKey(1) && (unpack(v) as [number, number])[1] === 3);
    if (hit) failed++;
    return hit;
  }));
  // State 2 is answered slowly: the failed write and the queue's recovery happen while it is out,
  // so the records of the deliveries after it are written by a recovered queue.
  upstream.addFault({ match: (r) => r.kind === 'state' && r.body?.state?.i === 2, delayMs: 100, times: 1 });
  await queue(1, [create(), ...[0, 1, 2, 3, 4, 5, 6, 7].map(state)]);
  await sync.start();
  await until(() => sync.queueInfo().sessions === 0 && commits.counters.depth === 0, 'drained', 5000).catch(() => undefined);
  await new Promise((r) => setTimeout(r, 300));
  t.equal(failed, 1, 'the write failed once');
  const sent = upstream.applied({ kind: 'state' }).map((r) => r.body.state.i);
  t.same([...new Set(sent)], [0, 1, 2, 3, 4, 5, 6, 7], `every state delivered, in order (${sent.join(',')})`);
  const { stored, counted } = await recountCounters(db);
  t.equal(counted.depth, 0, 'nothing left queued');
  t.equal(stored.depth, counted.depth, `depth counter exact (stored ${stored.depth}, counted ${counted.depth})`);
  t.equal(stored.bytes, counted.bytes, 'bytes counter exact');
  t.equal(sync.inDoubt, sent.length - 8, `every resend counted in doubt, and nothing else (${sync.inDoubt} in doubt)`);
});

t.test('a replay that fails part way: the dead letters it did put back are still sent', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  let replayBatches = 0;
  // The replay's second write set fails (it moves 500 dead letters a write): a replayed chunk's
  // key has a third part (keys.ts, replayedChunkKey).
  const failing = (puts: Array<[string, Uint8Array]>): boolean =>
    puts.some(([k]) => k.startsWith('q!') && k.split('!').length === 4) && ++replayBatches === 2;
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url }, { wrapDb: (db) => failingWrites(db, failing) });
  const a = await api.register('a', '1');
  const b = await api.register('b', '1');
  upstream.addFault({ match: (r) => r.kind === 'event', status: 400 });
  for (let i = 0; i < 500; i++) await api.ok('/event', { session_id: a, name: 'a', data: { i } });
  for (let i = 0; i < 5; i++) await api.ok('/event', { session_id: b, name: 'b', data: { i } });
  await api.ok('/end', { session_id: a });
  await api.ok('/end', { session_id: b });
  await api.ok('/flush?wait=1', {});
  await until(() => daemon.health().queue.dead_letters === 505 && daemon.health().queue.depth === 0, 'all events dead letters');
  upstream.clearFaults();

  t.not((await api.post('/queue/replay', {})).status, 200, 'the replay failed part way');
  t.equal(replayBatches, 2);
  t.equal(daemon.health().queue.dead_letters, 5, "session a's 500 were put back, b's 5 not");
  await until(async () => (await api.post('/queue/replay', {})).status === 200, 'replaying the rest');
  await api.ok('/flush?wait=1', {});
  await until(() => upstream.applied({ kind: 'event' }).length >= 505, 'every replayed event delivered', 5000).catch(() => undefined);
  t.equal(upstream.applied({ kind: 'event', sessionId: b }).length, 5, "b's events delivered");
  t.equal(upstream.applied({ kind: 'event', sessionId: a }).length, 500, `a's events delivered too (${upstream.applied({ kind: 'event', sessionId: a }).length})`);
  t.equal(daemon.health().queue.depth, 0, `nothing left queued (depth ${daemon.health().queue.depth})`);
});
