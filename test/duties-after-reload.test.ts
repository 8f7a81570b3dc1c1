import t from 'tap';
import { startFakeUpstream } from './support/fake-upstream.js';
import { startTestDaemon, until } from './support/daemon-harness.js';

const daemonEvents = (upstream: Awaited<ReturnType<typeof startFakeUpstream>>, name: string) =>
  upstream.applied({ kind: 'event' }).filter((r) => r.body.name === name);

t.test('a worker that dies: its active sessions are still watched without a new op (hang, pending counter)', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url, workers: 2, heartbeat_timeout_seconds: 2, batch_interval_seconds: 2 });
  const id = await api.registerOnServer('silent', '1');
  const sn = daemon.directory.resolve(id)!;
  await api.ok('/heartbeat', { session_id: id });
  await api.ok('/metric', { session_id: id, name: 'c', type: 'counter', value: 0, delta: 5 });
  // At once: the hang is 2 s away, and the counter's interval most likely too.
  daemon.pool.control(daemon.pool.slotOf(sn), { t: 'die' });
  await until(() => daemon.pool.restarts === 1 && daemon.pool.alive === 2, 'the worker was replaced');
  // No op for the session from now on: the daemon must find it hung itself, as after a restart.
  await until(() => daemonEvents(upstream, 'application_appears_hung').some((r) => r.sessionId === id), 'hung event for the silent session', 8000);
  await until(() => upstream.applied({ kind: 'metric', sessionId: id }).some((r) => r.body.type === 'counter' && r.body.value === 5), 'the acked counter total upstream', 8000);
  t.equal((await api.get(`/session?session_id=${id}`)).body.hung, true, 'it reads hung');
});

t.test('a hung session reloaded after a restart still counts as hung: /health says so and it gets no upstream heartbeat', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const dataDir = t.testdir();
  const config = { server_url: upstream.url, workers: 2, heartbeat_timeout_seconds: 1, upstream_heartbeat_seconds: 1 };
  const first = await startTestDaemon(t, dataDir, config);
  const id = await first.api.registerOnServer('hung', '1');
  await until(async () => (await first.api.get('/health')).body.sessions_by_status.hung === 1, 'hung', 5000);
  await first.close();

  const second = await startTestDaemon(t, dataDir, config);
  const restartedAt = upstream.requests.length;
  t.equal((await second.api.get(`/session?session_id=${id}`)).body.hung, true, 'the session reads hung');
  await until(() => second.daemon.rounds.isResident(second.daemon.directory.resolve(id)!), 'its actor reloaded at start');
  await new Promise((r) => setTimeout(r, 2500)); // two upstream heartbeat rounds
  t.equal((await second.api.get('/health')).body.sessions_by_status.hung, 1, '/health counts it hung');
  const beats = upstream.requests.slice(restartedAt).filter((r) => r.kind === 'heartbeat' && r.sessionId === id);
  t.equal(beats.length, 0, 'no upstream heartbeat for a hung session (README: live = active, not hung)');
});
