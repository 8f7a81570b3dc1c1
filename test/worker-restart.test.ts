import t from 'tap';
import { startTestDaemon, until } from './support/daemon-harness.js';

t.test('a worker that dies is replaced and its sessions reload from their snapshots', async (t) => {
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9', workers: 2 });
  const ids = [await api.register('a', '1'), await api.register('b', '1')];
  for (const [i, id] of ids.entries()) await api.ok('/state', { session_id: id, state: { counter: 1, who: i } });

  daemon.pool.control(0, { t: 'die' });
  await until(() => daemon.pool.restarts === 1, 'the pool noticed the death');
  await until(() => daemon.pool.alive === 2, 'the slot has a worker again');

  for (const id of ids) await api.ok('/state', { session_id: id, state: { counter: 2 } });
  for (const [i, id] of ids.entries()) {
    const view = (await api.get(`/session?session_id=${id}`)).body;
    t.same(view.state, { counter: 2, who: i }, `${id}: state merged onto the reloaded snapshot`);
  }
  t.equal(daemon.health().queue.depth, 2 + 4, 'two creates and four state updates, none lost or doubled');
  t.equal(daemon.health().workers.alive, 2);
});

t.test('group commit: ops of many sessions arriving in one loop turn are written in one batch', async (t) => {
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9' });
  const ids = await Promise.all(Array.from({ length: 8 }, (_, i) => api.register('app', String(i))));
  const before = daemon.commits.batchesWritten;
  const rt = Date.now();
  const results = await Promise.all(
    ids.flatMap((id) => Array.from({ length: 50 }, (_, i) => daemon.ingest.submit([{ kind: 'event', session_id: id, body: { name: 'e', data: { i } } }], rt))),
  );
  t.ok(results.every(([outcome]) => outcome === null), 'all 400 acked');
  t.equal(daemon.commits.batchesWritten - before, 1, '400 ops of 8 sessions, one write batch');
  t.equal(daemon.health().queue.depth, 8 + 400);
  // Over HTTP the grouping depends on arrival times; it must still group under concurrency.
  const beforeHttp = daemon.commits.batchesWritten;
  await Promise.all(ids.flatMap((id) => Array.from({ length: 50 }, (_, i) => api.ok('/event', { session_id: id, name: 'e', data: { i } }))));
  t.ok(daemon.commits.batchesWritten - beforeHttp < 400, `400 concurrent HTTP ops in ${daemon.commits.batchesWritten - beforeHttp} batches`);
});
