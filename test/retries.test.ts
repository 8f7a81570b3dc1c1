import t from 'tap';
import { startFakeUpstream } from './support/fake-upstream.js';
import { startTestDaemon, until } from './support/daemon-harness.js';

t.test('an unavailable upstream is retried with growing, capped delays, never in a tight loop', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url, retry_base_ms: 40, retry_max_ms: 320 });
  const id = await api.register();
  upstream.addFault({ match: (r) => r.kind === 'event', status: 503 });
  await api.ok('/event', { session_id: id, name: 'e' });
  await new Promise((r) => setTimeout(r, 2500));
  const tries = upstream.requests.filter((r) => r.kind === 'event').map((r) => r.at);
  const gaps = tries.slice(1).map((at, i) => at - tries[i]!);
  t.ok(tries.length >= 5 && tries.length <= 30, `${tries.length} tries in 2.5 s: retried, but not in a tight loop`);
  t.ok(gaps.every((g) => g >= 15), `every gap is a real wait (min ${Math.min(...gaps)} ms)`);
  t.ok(gaps.every((g) => g <= 320 * 1.2 + 60), `no gap beyond retry_max_ms (max ${Math.max(...gaps)} ms)`);
  t.ok(gaps.slice(-3).every((g) => g >= 150), `later gaps have grown (${gaps.slice(-3).join(', ')} ms)`);
  const h = daemon.health();
  t.equal(h.upstream.online, false);
  t.ok(h.upstream.attempt >= 5, 'attempt counts failed tries');
  t.match(h.upstream.last_error, /HTTP 503/);
  t.ok(h.upstream.next_retry_at && Date.parse(h.upstream.next_retry_at) - Date.now() <= 400, 'next_retry_at within the cap');
  upstream.clearFaults();
  await until(() => upstream.applied({ kind: 'event' }).length === 1, 'delivered once the fault clears');
  await until(() => daemon.health().upstream.attempt === 0, 'backoff reset on success');
  t.equal(daemon.health().upstream.online, true);
});

t.test('Retry-After is honoured even beyond retry_max_ms', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { api } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url, retry_base_ms: 20, retry_max_ms: 100 });
  const id = await api.register();
  upstream.addFault({ match: (r) => r.kind === 'event', status: 429, retryAfter: 1, times: 1 });
  await api.ok('/event', { session_id: id, name: 'e' });
  await until(() => upstream.applied({ kind: 'event' }).length === 1, 'delivered after Retry-After');
  const [first, second] = upstream.requests.filter((r) => r.kind === 'event');
  t.ok(second!.at - first!.at >= 950, `waited ${second!.at - first!.at} ms for Retry-After: 1`);
});

t.test('POST /flush cuts a long backoff short', async (t) => {
  const upstream = await startFakeUpstream({ startDown: true });
  t.teardown(() => upstream.close());
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url, retry_base_ms: 20_000, retry_max_ms: 60_000 });
  const id = await api.register();
  await api.ok('/event', { session_id: id, name: 'e' });
  await until(() => daemon.health().upstream.next_retry_at !== null, 'in backoff');
  t.ok(Date.parse(daemon.health().upstream.next_retry_at) - Date.now() > 5000, 'the next retry is far away');
  await upstream.up();
  const started = Date.now();
  const flushed = await api.post('/flush?wait=1', {});
  t.equal(flushed.status, 200);
  t.same(flushed.body, { status: 'ok', depth: 0 }, 'flush with wait=1 answers once the queue is empty');
  t.ok(Date.now() - started < 3000, 'drained at once');
  t.equal(upstream.applied({ kind: 'event' }).length, 1);
});

t.test('a 400 becomes a dead letter; the session and other sessions go on', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url });
  const a = await api.register('a', '1');
  const b = await api.register('b', '1');
  upstream.addFault({ match: (r) => r.kind === 'event' && r.body?.data?.i === 3, status: 400 });
  for (let i = 0; i < 6; i++) {
    await api.ok('/event', { session_id: a, name: 'e', data: { i } });
    await api.ok('/event', { session_id: b, name: 'e', data: { i: i + 100 } });
  }
  await api.ok('/end', { session_id: a });
  await until(() => daemon.health().queue.depth === 0, 'drained');
  const aOps = upstream.sessions.get(a)!.ops;
  t.same(aOps.filter((o) => o.kind === 'event').map((o) => o.body.data.i), [0, 1, 2, 4, 5], 'the rest of the session went on, in order');
  t.equal(aOps.at(-1)!.kind, 'end', 'end still last');
  t.equal(upstream.sessions.get(b)!.ops.length, 6, 'the other session is untouched');
  const h = daemon.health();
  t.equal(h.queue.dead_letters, 1, 'one dead letter, kept and counted');
  t.equal(upstream.requests.filter((r) => r.kind === 'event' && r.body?.data?.i === 3).length, 1, 'a 4xx is not retried');
});
