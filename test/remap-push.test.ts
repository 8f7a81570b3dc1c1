import t from 'tap';
import { startFakeUpstream } from './support/fake-upstream.js';
import { startTestDaemon, until } from './support/daemon-harness.js';
import { RawWs, registerRaw } from './support/raw-ws.js';

t.test('a remap that comes while a reconnecting client waits for its welcome is pushed to it after the welcome', async (t) => {
  // A new connection of a client id is welcomed only once the ops its earlier connection read
  // are settled (docs/protocol.md). Until then it is not among the connections remaps go to:
  // a remap made meanwhile must still reach it, or the client never learns its server id.
  const upstream = await startFakeUpstream({ startDown: true });
  t.teardown(() => upstream.close());
  const { url, api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url, workers: 2 });
  const first = await RawWs.open(url, 'c');
  t.teardown(() => first.close());
  await first.welcome();
  const local = await registerRaw(first, 1);
  t.match(local, /^local-session-/);
  // The client's next op waits in a busy worker, so its reconnection waits for it to settle.
  daemon.pool.control(daemon.pool.slotOf(daemon.directory.resolve(local)!), { t: 'stall', ms: 3000 });
  first.send({ t: 'ops', ops: [{ q: 2, k: 'event', session_id: local, name: 'e' }] });
  await new Promise((r) => setTimeout(r, 100)); // its round is posted to the busy worker
  const second = await RawWs.open(url, 'c');
  t.teardown(() => second.close());
  await upstream.up();
  await api.ok('/flush');
  await until(() => daemon.health().remaps === 1, 'the session remapped while the client waits for its welcome', 2500);
  const welcome = await second.welcome();
  t.equal(welcome.acked, 2, 'welcomed once the earlier op settled');
  const remap = await second.next((f) => f.t === 'remap', 2000);
  t.same([remap.local_id, remap.server_id], [local, daemon.directory.ids(daemon.directory.resolve(local)!)!.server_id]);
});
