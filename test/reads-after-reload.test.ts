import t from 'tap';
import { spawnDaemon, startTestDaemon, until } from './support/daemon-harness.js';

t.test('reads after a worker death show every acked event of a session that was not loaded again', async (t) => {
  // Activity is persisted lazily (within ACTIVITY_PERSIST_MS); a worker dying within that second
  // loses the in-memory lists, and the outbox is what a reload catches up from. An ended session
  // is not reloaded by anything but a read, which must still see what was acked.
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9', workers: 2 });
  const id = await api.register('reads', '1');
  await api.ok('/event', { session_id: id, name: 'e1' });
  await api.ok('/metric', { session_id: id, name: 'g', value: 1.5 });
  await api.ok('/end', { session_id: id });
  daemon.pool.control(daemon.pool.slotOf(daemon.directory.resolve(id)!), { t: 'die' });
  await until(() => daemon.pool.restarts === 1 && daemon.pool.alive === 2, 'the worker was replaced');
  const view = (await api.get(`/session?session_id=${id}`)).body;
  t.same(view.events.map((e: { name: string }) => e.name), ['e1'], 'GET /session: the acked event');
  t.same(view.metrics.map((m: { name: string }) => m.name), ['g'], 'GET /session: the acked metric');
  const listed = (await api.get('/sessions')).body.find((s: { id: string }) => s.id === id);
  t.same(listed.events.map((e: { name: string }) => e.name), ['e1'], 'GET /sessions agrees');
});

t.test('GET /sessions after a restart shows every acked event of an ended session, before any read of it', async (t) => {
  const dataDir = t.testdir();
  const config = { server_url: 'http://127.0.0.1:9', workers: 2 };
  const first = await startTestDaemon(t, dataDir, config);
  const id = await first.api.register('reads', '1');
  await first.api.ok('/event', { session_id: id, name: 'e1' });
  await first.api.ok('/end', { session_id: id });
  // As a kill would leave it: the worker dies before the lazily kept lists are written.
  first.daemon.pool.control(first.daemon.pool.slotOf(first.daemon.directory.resolve(id)!), { t: 'die' });
  await until(() => first.daemon.pool.restarts === 1 && first.daemon.pool.alive === 2, 'the worker was replaced');
  await first.close();
  const second = await startTestDaemon(t, dataDir, config);
  const listed = (await second.api.get('/sessions')).body.find((s: { id: string }) => s.id === id);
  t.same(listed.events.map((e: { name: string }) => e.name), ['e1'], 'the acked event is listed');
});

t.test('GET /session after a SIGKILL shows every acked event of a session that ended just before it', async (t) => {
  // An ended session is not reloaded at startup (only active ones are), so its read is the first load.
  const args = ['--data-dir', t.testdir(), '--server-url', 'http://127.0.0.1:9'];
  const first = await spawnDaemon(t, args);
  const id = await first.api.register('reads', '1');
  for (let i = 0; i < 5; i++) await first.api.ok('/event', { session_id: id, name: `e${i}` });
  await first.api.ok('/end', { session_id: id });
  await first.kill('SIGKILL'); // within ACTIVITY_PERSIST_MS of the last change
  const second = await spawnDaemon(t, args);
  t.teardown(() => second.kill('SIGTERM'));
  const view = (await second.api.get(`/session?session_id=${id}`)).body;
  t.equal(view.active, false);
  t.same(view.events.map((e: { name: string }) => e.name), ['e0', 'e1', 'e2', 'e3', 'e4'], 'every acked event, once, in order');
});
