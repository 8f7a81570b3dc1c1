import t from 'tap';
import { startFakeUpstream } from './support/fake-upstream.js';
import { startTestDaemon, until } from './support/daemon-harness.js';

t.test('offline: local id, ops accepted and readable; online: everything arrives under the server id, in order', async (t) => {
  const upstream = await startFakeUpstream({ startDown: true });
  t.teardown(() => upstream.close());
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url });

  const localId = await api.register('game', '2.1', { parent_pid: process.pid });
  t.match(localId, /^local-session-\d+-1$/, 'offline register answers a local id at once');

  await api.ok('/state', { session_id: localId, state: { level: 1, player: { hp: 10, name: 'a' } } });
  await api.ok('/state', { session_id: localId, state: { level: 1 } }); // changes nothing: not queued
  await api.ok('/state', { session_id: localId, state: { level: 2, player: { hp: null } } });
  for (let i = 0; i < 5; i++) await api.ok('/event', { session_id: localId, name: 'tick', data: { i } });
  await api.ok('/metric', { session_id: localId, name: 'fps', value: 59.5, tags: ['gpu:a'] });

  const offline = await api.get(`/session?session_id=${localId}`);
  t.equal(offline.status, 200, 'GET /session works offline');
  t.equal(offline.body.id, localId);
  t.equal(offline.body.server_id, null);
  t.same(offline.body.state, { level: 2, player: { name: 'a' } }, 'deep merge with null delete');
  t.equal(offline.body.events.length, 5);
  t.equal(offline.body.metrics[0].name, 'fps');
  t.equal(offline.body.synced_with_server, false);
  t.equal(daemon.health().queue.depth, 1 + 2 + 5 + 1, 'create + 2 state + 5 events + 1 metric queued');

  await upstream.up();
  await api.ok('/flush');
  await until(() => daemon.health().queue.depth === 0, 'outbox drained');

  t.equal(upstream.sessions.size, 1, 'one session created upstream');
  const [serverSession] = [...upstream.sessions.values()];
  const serverId = serverSession!.id;
  t.same(
    serverSession!.ops.map((o) => o.kind),
    ['state', 'state', 'event', 'event', 'event', 'event', 'event', 'metric'],
    'create first, then every op in the order accepted',
  );
  t.same(serverSession!.ops[0]!.body.state, { level: 1, player: { hp: 10, name: 'a' } });
  t.same(serverSession!.ops[1]!.body.state, { level: 2, player: { hp: null } }, 'the effective patch goes upstream');
  t.same(
    serverSession!.ops.filter((o) => o.kind === 'event').map((o) => o.body.data.i),
    [0, 1, 2, 3, 4],
  );
  t.match(serverSession!.ops[2]!.body.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'RFC 3339 receive time');
  t.equal(serverSession!.create.product, 'game');
  t.ok(serverSession!.create.machine_id && serverSession!.create.hostname, 'machine_id and hostname filled in');
  t.ok(
    upstream.requests.filter((r) => r.outcome === 'applied' && r.sessionId).every((r) => r.sessionId === serverId),
    'no request ever used the local id',
  );

  // Ops that keep arriving under the local id go upstream under the server id.
  await api.ok('/event', { session_id: localId, name: 'after-remap' });
  await api.ok('/end', { session_id: localId });
  await until(() => serverSession!.ended, 'end delivered');
  t.same(serverSession!.ops.slice(-2).map((o) => o.kind), ['event', 'end'], 'end last');
  t.equal(serverSession!.ops.at(-2)!.body.name, 'after-remap');

  const byLocal = await api.get(`/session?session_id=${localId}`);
  const byServer = await api.get(`/session?session_id=${serverId}`);
  t.equal(byLocal.body.id, localId, 'read by the local id answers the local id');
  t.equal(byServer.body.id, serverId, 'read by the server id answers the server id');
  t.equal(byLocal.body.server_id, serverId);
  t.equal(byServer.body.local_id, localId);
  t.equal(byLocal.body.active, false);
  t.ok(byLocal.body.ended_at);
  t.equal(byLocal.body.synced_with_server, true);
  t.equal(daemon.health().remaps, 1);
});

t.test('online: /register answers the server id and nothing is queued for the create', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url });
  const id = await api.register();
  t.match(id, /^srv-\d+$/);
  await api.ok('/event', { session_id: id, name: 'hello' });
  await until(() => upstream.applied({ kind: 'event' }).length === 1, 'event delivered');
  t.equal(upstream.applied({ kind: 'create' }).length, 1, 'created exactly once');
  t.equal(daemon.health().remaps, 0);
  const view = await api.get(`/session?session_id=${id}`);
  t.equal(view.body.server_id, id);
  t.equal(view.body.local_id, null);
});

t.test('sessions sync concurrently and a stuck session does not block the others', async (t) => {
  const upstream = await startFakeUpstream({ startDown: true });
  t.teardown(() => upstream.close());
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url });
  const ids: string[] = [];
  for (let s = 0; s < 4; s++) {
    const id = await api.register('app', String(s));
    ids.push(id);
    for (let i = 0; i < 10; i++) await api.ok('/event', { session_id: id, name: 'e', data: { s, i } });
  }
  // Session 0's events fail with 500 forever; the others must still drain.
  upstream.addFault({ match: (r) => r.kind === 'event' && r.body?.data?.s === 0, status: 500 });
  await upstream.up();
  await api.ok('/flush');
  await until(() => upstream.applied({ kind: 'event' }).length === 30, 'three healthy sessions delivered');
  for (const s of upstream.sessions.values()) {
    const is = s.ops.filter((o) => o.kind === 'event').map((o) => o.body.data.i);
    if (is.length) t.same(is, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'per-session order');
  }
  // Consumption is recorded just after delivery (pipelined writes): wait for it to be durable.
  await until(() => daemon.health().queue.depth === 10, "only the stuck session's ops still queued");
  t.equal(daemon.health().queue.depth, 10, "the stuck session's ops are still queued");
  upstream.clearFaults();
  await api.ok('/flush');
  await until(() => daemon.health().queue.depth === 0, 'stuck session drained after the fault clears');
  t.equal(upstream.applied({ kind: 'event' }).length, 40);
});

t.test('a server with integer ids: a create answered {"id": 42} gives the session the id "42", and its ops go to /api/sessions/42', async (t) => {
  const { createServer } = await import('node:http');
  const paths: string[] = [];
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      paths.push(`${req.method} ${req.url}`);
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(req.url === '/api/sessions' ? '{"id":42}' : '{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const { api } = await startTestDaemon(t, t.testdir(), { server_url: `http://127.0.0.1:${(server.address() as { port: number }).port}` });
  const id = await api.register('ints', '1');
  t.equal(id, '42', 'the server id, as a string');
  await api.ok('/event', { session_id: id, name: 'e' });
  await until(() => paths.includes('POST /api/sessions/42/events'), 'the event under the server id');
  t.equal((await api.get('/health')).body.queue.dead_letters, 0, 'no dead letter');
});
