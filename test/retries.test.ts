import t from 'tap';
import { join } from 'node:path';
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
  t.match(h.upstream.last_error, /HTTP 503/);
  // The server's own /health answers (only events fail), so between two tries it may read online.
  if (h.upstream.online) t.equal(h.upstream.attempt, 0, 'attempt is 0 while online (CONTRACT §4)');
  else t.ok(h.upstream.attempt >= 1 && Date.parse(h.upstream.next_retry_at) - Date.now() <= 400, 'attempt counted, next_retry_at within the cap');
  t.ok(h.upstream.failures_since_success >= 5, `every failed try since the last success counted, online or not (${h.upstream.failures_since_success})`);
  const [head] = (await api.get(`/queue?session_id=${id}`)).body.items;
  t.ok(head.attempts >= 5, `the op's own attempts are counted (${head.attempts})`);
  t.match(head.last_error, /HTTP 503/);
  upstream.clearFaults();
  await until(() => upstream.applied({ kind: 'event' }).length === 1, 'delivered once the fault clears');
  await until(() => daemon.health().upstream.attempt === 0, 'backoff reset on success');
  t.equal(daemon.health().upstream.online, true);
  // The server applied the event a moment before the daemon read its answer.
  await until(() => daemon.health().upstream.failures_since_success === 0, 'no failure since that delivery');
});

t.test("a 503 on one session's requests only: that session backs off on its own clock, the others flow", async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { api } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url, retry_base_ms: 50, retry_max_ms: 800 });
  const sick = await api.registerOnServer('sick', '1');
  const fine = await api.registerOnServer('fine', '1');
  upstream.addFault({ match: (r) => r.sessionId === sick && r.kind === 'state', status: 503 });
  await api.ok('/state', { session_id: sick, state: { x: 1 } });
  const started = Date.now();
  for (let i = 0; i < 20; i++) {
    await api.ok('/state', { session_id: fine, state: { i } });
    await new Promise((r) => setTimeout(r, 150));
  }
  await until(() => upstream.applied({ kind: 'state', sessionId: fine }).length === 20, "every op of the healthy session delivered");
  const tries = upstream.requests.filter((r) => r.kind === 'state' && r.sessionId === sick).map((r) => r.at);
  const elapsed = Date.now() - started;
  // Retried at every reopening of the gate this was ~5 tries a second; on its own clock the waits
  // double from 50 ms up to 800 ms, about 8 tries in the first 3 s.
  t.ok(tries.length >= 3 && tries.length <= 14, `${tries.length} tries in ${elapsed} ms while the other session flowed`);
  const gaps = tries.slice(1).map((at, i) => at - tries[i]!);
  t.ok(gaps.slice(-2).every((g) => g >= 300), `later gaps have grown (${gaps.join(', ')} ms)`);
  upstream.clearFaults();
  await until(() => upstream.applied({ kind: 'state', sessionId: sick }).length === 1, 'delivered once the fault clears', 5000);
});

t.test("a 503 and a 429 with Retry-After, each on one session's requests only: those sessions wait that long, the others do not wait with them", async (t) => {
  const retryAfter = 2;
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { api } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url, upstream_heartbeat_seconds: 3600 });
  const sick = { 503: await api.registerOnServer('sick-503', '1'), 429: await api.registerOnServer('sick-429', '1') };
  const fine = await api.registerOnServer('fine', '1');
  for (const [status, id] of Object.entries(sick)) upstream.addFault({ match: (r) => r.sessionId === id && r.kind !== 'create', status: Number(status), retryAfter });
  for (const id of Object.values(sick)) await api.ok('/state', { session_id: id, state: { x: 1 } });
  const posted: number[] = [];
  for (let i = 0; i < 40; i++) {
    posted.push(Date.now());
    await api.ok('/event', { session_id: fine, name: 'e', data: { i } });
    await new Promise((r) => setTimeout(r, 150));
  }
  await until(() => upstream.applied({ kind: 'event', sessionId: fine }).length === 40, 'every event of the healthy session delivered', 10_000);
  // Each sick session's first answer closes the gate for everyone (nothing says yet that the
  // server serves the others): up to one Retry-After each. From then on the healthy session's
  // events go at once.
  const settled = posted[0]! + (2 * retryAfter + 0.5) * 1000;
  const late = upstream.applied({ kind: 'event', sessionId: fine }).filter((r) => r.at - posted[r.body.data.i]! > 1000 && posted[r.body.data.i]! > settled);
  t.same(late.map((r) => r.body.data.i), [], 'after the first Retry-Afters, no event of the healthy session waited more than 1 s');
  for (const [status, id] of Object.entries(sick)) {
    const tries = upstream.requests.filter((r) => r.sessionId === id && r.kind === 'state').map((r) => r.at);
    const gaps = tries.slice(1).map((at, i) => at - tries[i]!);
    t.ok(tries.length >= 2 && gaps.every((g) => g >= retryAfter * 1000 - 50), `the ${status} session honours Retry-After (${tries.length} tries, gaps ${gaps.join(', ')} ms)`);
  }
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

t.test('an idle daemon finds out at once whether the upstream is reachable, and keeps asking while it is not', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const dir = t.testdir();
  const up = await startTestDaemon(t, join(dir, 'up'), { server_url: upstream.url });
  await until(() => up.daemon.health().upstream.online === true, '/health online with no op sent');
  t.equal(up.daemon.health().upstream.attempt, 0);

  const later = await startFakeUpstream({ startDown: true });
  t.teardown(() => later.close());
  const down = await startTestDaemon(t, join(dir, 'down'), { server_url: later.url, retry_base_ms: 40, retry_max_ms: 200 });
  await until(() => down.daemon.health().upstream.attempt >= 3, 'idle, it retries with backoff');
  const h = down.daemon.health().upstream;
  t.equal(h.online, false);
  t.match(h.last_error, /ECONNREFUSED/);
  t.ok(h.next_retry_at === null || Date.parse(h.next_retry_at) - Date.now() <= 250, 'next_retry_at within the cap');
  await later.up();
  await until(() => down.daemon.health().upstream.online === true, 'online again once the server is back, still with no op sent');
  t.equal(down.daemon.health().upstream.attempt, 0);
});

t.test("a create the server refuses at /register is not sent again: it is a dead letter until replayed", async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url });
  const removeFault = upstream.addFault({ match: (r) => r.kind === 'create', status: 403 });
  const id = await api.register('refused', '1');
  t.match(id, /^local-session-/, 'the session is local');
  await api.ok('/event', { session_id: id, name: 'e' });
  await until(() => daemon.health().queue.dead_letters === 2 && daemon.health().queue.depth === 0, 'the create and the event are dead letters');
  t.equal(upstream.requests.filter((r) => r.kind === 'create').length, 1, 'the create went upstream once: a 4xx is not retried');
  const dead = (await api.get('/queue?dead=1')).body.items;
  t.same(dead.map((i: { kind: string }) => i.kind), ['create', 'event']);
  t.match(dead[0].last_error, /HTTP 403/, "the server's answer is the reason");
  removeFault();
  t.equal((await api.post('/queue/replay', {})).body.replayed, 2);
  await until(() => upstream.applied({ kind: 'event' }).length === 1, 'replayed: created, then the event');
  t.equal(upstream.requests.filter((r) => r.kind === 'create').length, 2, 'replay sends the create again');
});

t.test('a create slower than register_timeout_ms: a local id at once, and still one session upstream', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url, register_timeout_ms: 200 });
  // Warm up first (workers started, link up), so what is measured is the slow create alone.
  await api.register('warm', '1');
  const before = upstream.sessions.size;
  upstream.addFault({ match: (r) => r.kind === 'create', delayMs: 1500, times: 1 }); // under the harness's upstream_timeout_ms
  const id = await api.register('slow', '1');
  t.equal(upstream.sessions.size, before, 'answered before the server made the session');
  t.match(id, /^local-session-/);
  await api.ok('/event', { session_id: id, name: 'e' });
  await until(() => upstream.applied({ kind: 'event' }).length === 1, 'the event delivered', 10_000);
  await until(() => upstream.applied({ kind: 'create' }).length === 2, "the slow create's answer", 10_000);
  await new Promise((r) => setTimeout(r, 300)); // anything a second create would do, it has done
  t.equal(upstream.sessions.size, before + 1, "one session upstream: the queued create took the first request's answer");
  const view = (await api.get(`/session?session_id=${id}`)).body;
  t.equal(view.server_id, upstream.applied({ kind: 'event' })[0]!.sessionId, 'remapped to that session');
  t.equal(daemon.sync!.inDoubt, 0, 'nothing in doubt');
});
