import t from 'tap';
import { createServer } from 'node:net';
import { connect } from '../dist/src/client/index.js';
import { startFakeUpstream } from './support/fake-upstream.js';
import { spawnDaemon, until } from './support/daemon-harness.js';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

t.test('a client streams, the daemon is SIGKILLed mid-stream and restarted: every op lands exactly once, in order', async (t) => {
  const upstream = await startFakeUpstream({ startDown: true });
  t.teardown(() => upstream.close());
  const dataDir = t.testdir();
  const port = await freePort();
  const args = ['--data-dir', dataDir, '--server-url', upstream.url, '--retry-base-ms', '50', '--retry-max-ms', '300'];
  let daemon = await spawnDaemon(t, [...args, '--port', String(port)]);

  const client = connect({ url: `ws://127.0.0.1:${port}`, reconnectBaseMs: 50, reconnectMaxMs: 200 });
  const errors: string[] = [];
  client.on('error', (e) => errors.push(`${e.code} ${e.message}`));
  t.teardown(() => client.close({ timeoutMs: 1000 }).catch(() => undefined));
  const sessions = [await client.register({ product: 'ws-app', version: '1' }), await client.register({ product: 'ws-app', version: '2' })];
  const total = 30_000;
  let killedAt = -1;
  for (let n = 0; n < total; n++) {
    sessions[n % 2]!.logEvent('e', { data: { n } });
    if (n % 500 === 499) await new Promise((r) => setImmediate(r));
    if (!client.connected && killedAt < 0) continue;
    if (n === 12_000) {
      // Mid-stream: ops are in flight, some acked, some not.
      killedAt = n;
      await daemon.kill('SIGKILL');
      daemon = await spawnDaemon(t, [...args, '--port', String(port)]);
    }
    if (client.buffered + client.unacked > 15_000) await client.waitForCapacity();
  }
  await client.flush();
  // Failed reconnects while the daemon restarts are expected; a refused op would not be.
  t.same(errors.filter((e) => !e.startsWith('connect_failed')), [], 'no op refused');
  const health = (await daemon.api.get('/health')).body;
  t.equal(health.queue.depth, 2 + total, 'two creates and every op, each exactly once, in the outbox');

  await upstream.up();
  await daemon.api.ok('/flush');
  await until(async () => (await daemon.api.get('/health')).body.queue.depth === 0, 'drained', 30_000);
  for (const [i, s] of sessions.entries()) {
    const view = (await daemon.api.get(`/session?session_id=${s.id}`)).body;
    const got = upstream.sessions.get(view.server_id)!.ops.map((o) => o.body.data.n as number);
    const want = Array.from({ length: total / 2 }, (_, k) => 2 * k + i);
    t.same(got, want, `session ${i}: delivered once each, in order`);
  }
});
