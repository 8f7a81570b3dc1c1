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

t.test('a client refused in a worker failure gets its later ops refused too, so its mark never covers a lost op', async (t) => {
  // The race, made certain: the client's first op waits in a busy worker when the other worker
  // dies; its next op is submitted before the first is refused, and would be persisted once the
  // daemon recovered, leaving the client's mark (one number for all its ops) past a lost op.
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9', workers: 2 });
  const [a, b] = [await api.register('a', '1'), await api.register('b', '1')];
  const slowSlot = daemon.pool.slotOf(daemon.directory.resolve(a)!);
  t.not(daemon.pool.slotOf(daemon.directory.resolve(b)!), slowSlot, 'the sessions live in different workers');
  const order = { broken: false };
  const event = (sessionId: string, name: string): Promise<unknown> =>
    daemon.ingest.submit([{ kind: 'event', session_id: sessionId, body: { name } }], Date.now(), [], 'accept', order);

  daemon.pool.control(slowSlot, { t: 'stall', ms: 1500 });
  let firstSettled = false;
  const first = event(a, 'first').finally(() => (firstSettled = true));
  await new Promise((r) => setTimeout(r, 50)); // its round is posted to the busy worker
  daemon.pool.control(1 - slowSlot, { t: 'die' });
  await until(() => daemon.pool.restarts === 1, 'the pool noticed the death');
  const second = event(b, 'second');
  t.notOk(firstSettled, 'the second op was submitted while the first was still in flight');
  const [r1, r2] = await Promise.allSettled([first, second]);
  t.equal(r1.status, 'rejected', 'the first op is refused: its round was posted before the failure');
  t.equal(r2.status, 'rejected', 'the second op is refused too, although it came after the failure');
  t.match((r2 as PromiseRejectedResult).reason, { code: 'unavailable' });
  t.equal(daemon.health().queue.depth, 2, 'nothing of the client is queued: only the two creates');

  // Its owner starts over from what is durable (a new connection does, once all has settled).
  order.broken = false;
  await event(b, 'third');
  t.equal(daemon.health().queue.depth, 3, 'its ops are taken again');
});

t.test('group commit: ops of many sessions arriving in one loop turn are written in one batch', async (t) => {
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9' });
  const ids = await Promise.all(Array.from({ length: 8 }, (_, i) => api.register('app', String(i))));
  // Write sets carrying these ops: the commit queue writes each as part of one LevelDB batch.
  // (Counting batches instead would count the sync actor's own writes, which land at any time.)
  const carrying: number[] = [];
  const submitWrite = daemon.commits.submit.bind(daemon.commits);
  daemon.commits.submit = (ws) => {
    const ops = (ws.chunks ?? []).reduce((n, c) => n + c.count, 0);
    if (ops > 0) carrying.push(ops);
    return submitWrite(ws);
  };
  const rt = Date.now();
  const results = await Promise.all(
    ids.flatMap((id) => Array.from({ length: 50 }, (_, i) => daemon.ingest.submit([{ kind: 'event', session_id: id, body: { name: 'e', data: { i } } }], rt))),
  );
  daemon.commits.submit = submitWrite;
  t.ok(results.every(([outcome]) => outcome === null), 'all 400 acked');
  t.same(carrying, [400], '400 ops of 8 sessions, one write batch');
  t.equal(daemon.health().queue.depth, 8 + 400);
  // Over HTTP the grouping depends on arrival times; it must still group under concurrency.
  const beforeHttp = daemon.commits.batchesWritten;
  await Promise.all(ids.flatMap((id) => Array.from({ length: 50 }, (_, i) => api.ok('/event', { session_id: id, name: 'e', data: { i } }))));
  t.ok(daemon.commits.batchesWritten - beforeHttp < 400, `400 concurrent HTTP ops in ${daemon.commits.batchesWritten - beforeHttp} batches`);
});

t.test('workers killed under load: the pool replaces them; no acked op is lost or doubled', async (t) => {
  const { api, url, daemon } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9', workers: 2 });
  const { connect } = await import('../dist/src/client/index.js');
  const client = connect({ url: url.replace('http', 'ws'), reconnectBaseMs: 20, reconnectMaxMs: 100 });
  client.on('error', () => undefined);
  t.teardown(() => client.close({ timeoutMs: 1000 }).catch(() => undefined));
  const sessions = await Promise.all([0, 1, 2, 3].map((i) => client.register({ product: 'load', version: String(i) })));
  const httpIds = [await api.register('http', '0'), await api.register('http', '1')];
  let stop = false;
  let httpAcked = 0;
  const http = httpIds.map(async (id) => {
    for (let i = 0; !stop; i++) {
      const res = await api.post('/event', { session_id: id, name: 'h', data: { i } });
      if (res.status === 200) httpAcked++;
    }
  });
  let wsLogged = 0;
  const ws = (async () => {
    while (!stop) {
      for (const s of sessions) s.logEvent('w', { data: { n: wsLogged } });
      wsLogged += sessions.length;
      if (client.buffered + client.unacked > 5000) await client.waitForCapacity();
      await new Promise((r) => setImmediate(r));
    }
  })();
  for (let kill = 0; kill < 3; kill++) {
    await new Promise((r) => setTimeout(r, 300));
    daemon.pool.control(kill % 2, { t: 'die' });
    await until(() => daemon.pool.restarts === kill + 1 && daemon.pool.alive === 2, `worker replaced (${kill + 1})`);
  }
  await new Promise((r) => setTimeout(r, 300));
  stop = true;
  await Promise.all([...http, ws]);
  await client.flush();
  const depth = daemon.health().queue.depth;
  t.equal(depth, 2 + 4 + httpAcked + wsLogged, `the outbox holds every acked op exactly once (${httpAcked} HTTP, ${wsLogged} WebSocket)`);
  t.equal(daemon.health().workers.alive, 2);
  t.equal(daemon.health().workers.restarts, 3);
});
