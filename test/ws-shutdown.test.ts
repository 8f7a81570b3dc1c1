/** Shutting down (SIGTERM, daemon.close()) while WebSocket connections are coming and going. */
import t from 'tap';
import { startFakeUpstream } from './support/fake-upstream.js';
import { startTestDaemon, until } from './support/daemon-harness.js';
import { RawWs } from './support/raw-ws.js';

t.test("a reconnect waiting for a dropped socket's register when the daemon stops: closed with 1001, the stop finishes, the register is kept", async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  // The create answers after register_timeout_ms: the register waits 800 ms, then gets a local id.
  upstream.addFault({ match: (r) => r.kind === 'create', delayMs: 3000 });
  const dataDir = t.testdir();
  const { url, daemon } = await startTestDaemon(t, dataDir, { server_url: upstream.url, register_timeout_ms: 800 });
  const a = await RawWs.open(url, 'stopping');
  await a.welcome();
  a.send({ t: 'ops', ops: [{ q: 1, k: 'register', product: 'p', version: '1' }] });
  await new Promise((resolve) => setTimeout(resolve, 100)); // the daemon waits for the upstream
  // The socket drops with the register in flight: its connection is gone from the gateway, while
  // the client id's mark is held until the register is persisted.
  await new Promise((resolve) => a.ws.once('close', resolve).terminate());
  await until(() => daemon.ws.connections.size === 0, 'the dropped connection to be gone');
  // The reconnect waits for that register before its welcome...
  const b = await RawWs.open(url, 'stopping');
  t.teardown(() => b.ws.terminate());
  await new Promise((resolve) => setTimeout(resolve, 50));
  // ...when the daemon is told to stop.
  const stopped = daemon.close().then(() => 'stopped');
  const outcome = await Promise.race([stopped, new Promise((resolve) => setTimeout(() => resolve('still stopping after 6 s'), 6000))]);
  t.equal(outcome, 'stopped', 'the daemon stops (the register waits at most register_timeout_ms)');
  t.equal((await b.waitClosed()).code, 1001, 'the waiting connection is told the daemon is shutting down');
  t.notOk(b.frames.some((f) => f.t === 'welcome'), 'it was not welcomed by a daemon on its way out');
  await stopped;

  const again = await startTestDaemon(t, dataDir, { server_url: 'http://127.0.0.1:9' });
  const c = await RawWs.open(again.url, 'stopping');
  t.teardown(() => c.close());
  const welcome = await c.welcome();
  t.equal(welcome.acked, 1, 'the register read before the stop was persisted before it');
  t.match(welcome.registered, [[1, /^local-session-/]], 'and its session id is in the welcome');
  t.equal((await again.api.get('/sessions')).body.length, 1, 'one session');
});
