import t from 'tap';
import { startTestDaemon, until } from './support/daemon-harness.js';

t.test('the application exits while a register is in flight: the session it answers is crashed too', async (t) => {
  const dataDir = t.testdir();
  const config = { server_url: 'http://127.0.0.1:9', workers: 2, exit_drain_seconds: 0 };
  const { api, daemon } = await startTestDaemon(t, dataDir, config);
  await api.register('a', '1');
  const slot = daemon.pool.slotOf(daemon.commits.counters.sessions + 1);
  daemon.pool.control(slot, { t: 'stall', ms: 1500 });
  const registering = api.post('/register', { product: 'late', version: '1' });
  await new Promise((r) => setTimeout(r, 200)); // its round waits in the busy worker
  const exited = daemon.parentExited(999999);
  const answer = await registering;
  await exited;
  t.equal(answer.status, 200, 'the register was answered: the session exists');
  const second = await startTestDaemon(t, dataDir, { ...config, heartbeat_timeout_seconds: 3600 });
  const view = (await second.api.get(`/session?session_id=${answer.body.session_id}`)).body;
  t.equal(view.crashed, true, 'crashed like every session active when the application exited');
});
