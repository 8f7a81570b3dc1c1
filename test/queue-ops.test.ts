import t from 'tap';
import { startFakeUpstream } from './support/fake-upstream.js';
import { spawnDaemon, startTestDaemon, until } from './support/daemon-harness.js';
import { connect } from '../dist/src/client/index.js';
import { RawWs, registerRaw } from './support/raw-ws.js';

const payload = 'x'.repeat(400);

t.test('overflow block: HTTP gets 503 with Retry-After, WebSocket is paused and told; nothing is lost; both resume after a drain', async (t) => {
  const upstream = await startFakeUpstream({ startDown: true });
  t.teardown(() => upstream.close());
  const { api, url, daemon } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url, queue_max_bytes: 20_000, overflow: 'block' });
  const id = await api.register();
  let accepted = 0;
  let refused: Awaited<ReturnType<typeof api.post>> | null = null;
  for (let i = 0; i < 500 && !refused; i++) {
    const res = await api.post('/event', { session_id: id, name: 'e', message: payload, data: { i } });
    if (res.status === 200) accepted++;
    else refused = res;
  }
  t.ok(refused, `refused after ${accepted} events`);
  t.equal(refused!.status, 503);
  t.equal(refused!.body.error, 'queue_full');
  t.ok(Number(refused!.headers.get('retry-after')) >= 1, 'Retry-After');
  t.equal((await api.post('/register', { product: 'p', version: '1' })).status, 503, 'registrations wait too');
  t.equal(daemon.health().queue.depth, 1 + accepted, 'every accepted op is queued');
  for (const path of ['/heartbeat', '/pause_heartbeat', '/resume_heartbeat'])
    t.equal((await api.post(path, { session_id: id })).status, 200, `${path} queues nothing: taken from a full outbox (the app is not reported hung)`);
  t.equal(daemon.health().queue.depth, 1 + accepted, 'and added nothing');

  const c = await RawWs.open(url, 'blocked');
  t.teardown(() => c.close());
  await c.welcome();
  const flow = await c.next((f) => f.t === 'flow');
  t.same(flow, { t: 'flow', paused: true, reason: 'queue_full' }, 'the WebSocket client is told');

  await upstream.up();
  await api.ok('/flush');
  await c.next((f) => f.t === 'flow' && f.paused === false, 10_000);
  await until(async () => (await api.post('/event', { session_id: id, name: 'after' })).status === 200, 'HTTP accepted again', 10_000);
  await until(() => daemon.health().queue.depth === 0, 'drained');
  t.equal(upstream.applied({ kind: 'event' }).length, accepted + 1, 'nothing lost');
});

t.test('overflow block: a WebSocket application whose heartbeats sit unread while the outbox is full is not reported hung; the watch resumes after', async (t) => {
  const upstream = await startFakeUpstream({ startDown: true });
  t.teardown(() => upstream.close());
  const { api, url } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url, queue_max_bytes: 20_000, overflow: 'block', heartbeat_timeout_seconds: 3 });
  const c = await RawWs.open(url, 'beating');
  t.teardown(() => c.close());
  const q0 = (await c.welcome()).acked;
  const wsId = await registerRaw(c, q0 + 1);
  let q = q0 + 1;
  let beating = true;
  const beat = setInterval(() => beating && c.send({ t: 'ops', ops: [{ q: ++q, k: 'heartbeat', session_id: wsId }] }), 100);
  t.teardown(() => clearInterval(beat));
  const filler = await api.register('filler', '1');
  for (let i = 0; i < 500; i++) if ((await api.post('/event', { session_id: filler, name: 'e', message: payload })).status === 503) break;
  await c.next((f) => f.t === 'flow' && f.paused === true);
  await new Promise((r) => setTimeout(r, 4500)); // past heartbeat_timeout_seconds, socket unread
  t.equal((await api.get('/sessions')).status, 200); // its round runs the duties too
  const during = (await api.get(`/session?session_id=${wsId}`)).body;
  t.equal(during.hung, false, 'not hung while its heartbeats wait unread');
  await upstream.up();
  await api.ok('/flush');
  await c.next((f) => f.t === 'flow' && f.paused === false, 10_000);
  await new Promise((r) => setTimeout(r, 1500));
  const after = (await api.get(`/session?session_id=${wsId}`)).body;
  t.notOk(after.events.some((e: any) => e.name === 'application_appears_hung'), 'no hung event at any point');
  beating = false; // now it really goes silent: the watch must see it
  await until(async () => (await api.get(`/session?session_id=${wsId}`)).body.hung === true, 'hung once it stops beating', 8000);
});

t.test('overflow drop_newest: new events and metrics are discarded and counted; lifecycle and state are kept', async (t) => {
  const upstream = await startFakeUpstream({ startDown: true });
  t.teardown(() => upstream.close());
  const { api, url, daemon } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url, queue_max_bytes: 10_000, overflow: 'drop_newest' });
  const id = await api.register();
  let persisted = 0;
  for (let i = 0; i < 100; i++) {
    const res = await api.post('/event', { session_id: id, name: 'e', message: payload, data: { i } });
    if (res.status === 200) persisted++;
    else t.match([res.status, res.body.error, res.headers.get('retry-after')], [503, 'dropped', /^\d+$/], 'a dropped op is no 200: it is not persisted');
  }
  const droppedHttp = 100 - persisted;
  t.ok(droppedHttp > 0 && persisted > 0, `${persisted} kept, ${droppedHttp} dropped`);
  t.same((await api.post('/metric', { session_id: id, name: 'm', value: 1 })).body.error, 'dropped', 'metrics too');
  await api.ok('/state', { session_id: id, state: { still: 'kept' } });
  const other = await api.register('p', '2');
  // A WebSocket batch: its events are dropped by the worker, reported as such.
  const c = await RawWs.open(url, 'dn');
  t.teardown(() => c.close());
  await c.welcome();
  const { Packr } = await import('msgpackr');
  c.send({ t: 'batch', session_id: id, q: 1, n: 3, ops: new Packr().pack([{ k: 'event', name: 'a' }, { k: 'state', state: { ws: 1 } }, { k: 'metric', name: 'm', value: 2 }]) });
  const acks = await c.acked(3);
  t.same(acks.flatMap((a) => a.errors ?? []).map((e: any) => [e[0], e[1]]), [[1, 'dropped'], [3, 'dropped']]);
  await api.ok('/end', { session_id: id });
  const h = daemon.health();
  t.equal(h.queue.dropped, droppedHttp + 1 + 2, 'every drop counted');
  t.same(h.queue.dropped_by_reason, { drop_newest: droppedHttp + 3, drop_oldest: 0 });
  t.equal(h.queue.depth, 1 + persisted + 1 + 1 + 1 + 1, 'create, kept events, state, other create, ws state, end');
  await upstream.up();
  await api.ok('/flush?wait=1', {});
  const ops = upstream.sessions.get((await api.get(`/session?session_id=${id}`)).body.server_id)!.ops.map((o) => o.kind);
  t.same(ops.filter((k) => k !== 'event'), ['state', 'state', 'end'], 'state and lifecycle all delivered');
  t.ok(upstream.sessions.get((await api.get(`/session?session_id=${other}`)).body.server_id), 'the later session was created');
});

t.test('overflow drop_oldest: the oldest events go, counted exactly; lifecycle and state survive', async (t) => {
  const upstream = await startFakeUpstream({ startDown: true });
  t.teardown(() => upstream.close());
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url, queue_max_bytes: 10_000, overflow: 'drop_oldest' });
  const id = await api.register();
  await api.ok('/state', { session_id: id, state: { first: true } });
  const total = 150;
  for (let i = 0; i < total; i++) t.equal((await api.ok('/event', { session_id: id, name: 'e', message: payload, data: { i } })).status, 'ok');
  // Trimming goes on until the outbox is under 90 % of its bound (LOW_WATER): wait for all of it.
  await until(() => daemon.health().queue.bytes <= 9_000, 'back under the low-water mark', 20_000);
  await api.ok('/end', { session_id: id });
  const h = daemon.health();
  const dropped = h.queue.dropped_by_reason.drop_oldest;
  t.ok(dropped > 0, `${dropped} oldest events dropped`);
  t.equal(h.queue.depth + dropped, 1 + 1 + total + 1, 'queued + dropped = everything accepted');
  await upstream.up();
  await api.ok('/flush?wait=1', {});
  const ops = upstream.sessions.get((await api.get(`/session?session_id=${id}`)).body.server_id)!.ops;
  t.equal(ops[0]!.kind, 'state', 'the state survived');
  t.equal(ops.at(-1)!.kind, 'end', 'end last');
  const delivered = ops.filter((o) => o.kind === 'event').map((o) => o.body.data.i);
  t.equal(delivered.length, total - dropped);
  t.same(delivered, Array.from({ length: total - dropped }, (_, k) => dropped + k), 'it was the oldest that went');
});

t.test('GET /queue lists and filters; a 400 becomes a dead letter with its reason; replay delivers it', async (t) => {
  const upstream = await startFakeUpstream({ startDown: true });
  t.teardown(() => upstream.close());
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url });
  const a = await api.register('a', '1');
  const b = await api.register('b', '1');
  for (let i = 0; i < 5; i++) await api.ok('/event', { session_id: a, name: 'ea', data: { i } });
  for (let i = 0; i < 3; i++) await api.ok('/metric', { session_id: b, name: 'mb', value: i });
  const all = (await api.get('/queue')).body;
  t.equal(all.total, 2 + 5 + 3);
  t.equal(all.items.length, 10);
  t.same(Object.keys(all.items[0]).sort(), ['attempts', 'enqueued_at', 'kind', 'last_error', 'seq', 'session_id']);
  const limited = (await api.get('/queue?limit=3')).body;
  t.equal(limited.items.length, 3);
  t.equal(limited.total, 10, 'total counts everything');
  const onlyB = (await api.get(`/queue?session_id=${b}`)).body;
  t.same(onlyB.items.map((i: any) => i.kind), ['create', 'metric', 'metric', 'metric']);
  t.equal(onlyB.total, 4);
  t.ok(onlyB.items.every((i: any) => i.session_id === b));
  t.equal((await api.get('/queue?limit=0')).status, 400);
  t.equal((await api.get('/queue?session_id=nope')).status, 404);

  upstream.addFault({ match: (r) => r.kind === 'event' && r.body?.data?.i === 2, status: 400 });
  await upstream.up();
  await api.ok('/flush?wait=1', {});
  const dead = (await api.get('/queue?dead=1')).body;
  t.equal(dead.total, 1);
  t.match(dead.items[0], { session_id: upstream.sessions.size ? String : String, kind: 'event', attempts: 1, last_error: /^HTTP 400/ });
  t.equal(daemon.health().queue.dead_letters, 1);

  upstream.clearFaults();
  const replay = await api.ok('/queue/replay', {});
  t.same(replay, { status: 'ok', replayed: 1 });
  await api.ok('/flush?wait=1', {});
  await until(() => upstream.applied({ kind: 'event' }).length === 5, 'the replayed event delivered');
  t.equal(daemon.health().queue.dead_letters, 0);
  t.equal((await api.get('/queue?dead=1')).body.total, 0);
});

t.test("replaying the first op of a chunk still queued loses none of the chunk's other ops, across a kill -9 too", async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const dataDir = t.testdir();
  const first = await spawnDaemon(t, ['--data-dir', dataDir, '--server-url', upstream.url]);
  const client = connect({ url: first.url.replace(/^http/, 'ws') });
  client.on('error', () => undefined);
  const session = await client.register({ product: 'replay', version: '1', parentPid: null });
  await until(() => upstream.applied({ kind: 'create' }).length === 1, 'created upstream');
  // e0 is refused once (a dead letter); e1 fails with 500 until told otherwise, so the chunk that
  // holds all ten stays queued, delivered up to e0, while e0 is replayed.
  upstream.addFault({ match: (r) => r.kind === 'event' && r.body?.name === 'e0', status: 400, times: 1 });
  const failing = upstream.addFault({ match: (r) => r.kind === 'event' && r.body?.name === 'e1', status: 500 });
  for (let i = 0; i < 10; i++) session.logEvent(`e${i}`); // one turn: one batch, one chunk
  await client.flush();
  await client.close();
  await until(async () => (await first.api.get('/queue?dead=1')).body.total === 1, 'e0 is a dead letter');
  await until(() => upstream.requests.some((r) => r.kind === 'event' && r.body?.name === 'e1'), 'e1 tried');
  t.same((await first.api.post('/queue/replay', {})).body, { status: 'ok', replayed: 1 });
  t.equal((await first.api.get('/queue')).body.total, 10, 'e0 back in the queue, e1–e9 still there');
  await first.kill('SIGKILL');

  failing();
  const again = await spawnDaemon(t, ['--data-dir', dataDir, '--server-url', upstream.url]);
  await again.api.ok('/flush?wait=1', {});
  const delivered = upstream.applied({ kind: 'event' }).map((r) => r.body.name);
  t.same([...delivered].sort(), ['e0', 'e1', 'e2', 'e3', 'e4', 'e5', 'e6', 'e7', 'e8', 'e9'], 'every event once');
  t.equal(delivered.indexOf('e0'), 0, 'the replayed e0 first: its place is before the chunk it came from');
  t.equal((await again.api.get('/health')).body.queue.depth, 0);
  await again.kill('SIGTERM');
});

t.test('GET /metrics is Prometheus text and moves as ops flow', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { api } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url });
  const scrape = async (): Promise<Map<string, number>> => {
    const res = await fetch(api.url + '/metrics');
    t.match(res.headers.get('content-type'), /^text\/plain/);
    const values = new Map<string, number>();
    for (const line of (await res.text()).split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      // Values as Prometheus parses them (Go's ParseFloat: NaN and Inf in any case).
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})?) (-?[0-9.e+-]+|nan|[+-]?inf)$/i.exec(line);
      if (!m) throw new Error(`not Prometheus text: ${line}`);
      values.set(m[1]!, Number(m[3]));
    }
    return values;
  };
  const before = await scrape();
  t.ok(before.has('datacat_queue_depth') && before.has('nodejs_eventloop_lag_seconds'), 'queue and process metrics');
  const id = await api.register();
  for (let i = 0; i < 7; i++) await api.ok('/event', { session_id: id, name: 'e' });
  await until(() => upstream.applied({ kind: 'event' }).length === 7, 'delivered');
  const after = await scrape();
  t.equal(after.get('datacat_ops_accepted_total{kind="event"}'), 7);
  t.equal(after.get('datacat_ops_sent_total{kind="event"}'), 7);
  t.ok((after.get('datacat_ack_latency_seconds_count') ?? 0) >= 8, 'ack latency observed');
  t.ok((after.get('datacat_upstream_request_seconds_count{outcome="ok"}') ?? 0) >= 8, 'upstream latency observed');
  t.equal(after.get('datacat_sessions{status="active"}'), 1);
  t.equal(after.get('datacat_workers_alive'), 2);
});
