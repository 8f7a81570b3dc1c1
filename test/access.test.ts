import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { BIN, JsonClient, spawnDaemon, startTestDaemon, until } from './support/daemon-harness.js';
import { startFakeUpstream } from './support/fake-upstream.js';
import { RawWs } from './support/raw-ws.js';

t.test('binds 127.0.0.1 by default; beyond loopback without auth_token it serves only local clients', async (t) => {
  const { daemon } = await startTestDaemon(t, join(t.testdir(), 'default'), { server_url: 'http://127.0.0.1:9' });
  t.equal((daemon.http.server.address() as AddressInfo).address, '127.0.0.1');
  const dir = t.testdir();
  const open = await spawnDaemon(t, ['--host', '0.0.0.0', '--server-url', 'http://127.0.0.1:9', '--data-dir', join(dir, 'no-token')]);
  t.ok(
    open.stderr.some((line) => /"level":40/.test(line) && /only clients on this machine are served/.test(line)),
    'starts, and warns once that only local clients are served',
  );
  const registered = await open.api.post('/register', { product: 'p', version: '1' });
  t.equal(registered.status, 200, 'a client on loopback is served');
  // Another machine, as far as the daemon can tell: this machine's own non-loopback address.
  const external = Object.values(networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal);
  if (!external) t.skip('no non-loopback IPv4 interface here');
  else {
    const remote = new JsonClient(`http://${external.address}:${open.port}`);
    const refused = await remote.post('/event', { session_id: registered.body.session_id, name: 'e' });
    t.equal(refused.status, 401, 'a client from another address is refused');
    t.match(refused.body.details, /serves only clients on its own machine; set auth_token/);
    t.equal((await remote.get('/health')).status, 200, '/health stays open');
    await t.rejects(RawWs.open(`http://${external.address}:${open.port}`, 'c'), { status: 401 }, 'and so is its WebSocket upgrade');
  }
  await open.kill('SIGTERM');
  const exposed = await spawnDaemon(t, ['--host', '0.0.0.0', '--auth-token', 'tok', '--data-dir', join(dir, 'exposed')]);
  t.notOk(exposed.stderr.some((line) => /only clients on this machine/.test(line)), 'no warning with a token');
  t.equal((await exposed.api.get('/health')).status, 200, 'starts with a token');
  t.equal((await exposed.api.get('/sessions')).status, 401);
  await exposed.kill('SIGTERM');
});

t.test('the token is checked on every endpoint but /health, and on the WebSocket upgrade', async (t) => {
  const { url } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9', auth_token: 'sekrit' });
  const anon = new JsonClient(url);
  const almost = new JsonClient(url, { authorization: 'Bearer sekri' });
  const posts = ['/register', '/state', '/event', '/metric', '/heartbeat', '/pause_heartbeat', '/resume_heartbeat', '/end', '/flush', '/queue/replay'];
  const gets = ['/session?session_id=x', '/sessions', '/queue', '/metrics'];
  for (const path of posts) t.equal((await anon.post(path, {})).status, 401, `POST ${path}`);
  for (const path of gets) t.equal((await almost.get(path)).status, 401, `GET ${path} with a wrong token`);
  t.equal((await anon.get('/health')).status, 200, '/health is open');
  await t.rejects(RawWs.open(url, 'c'), { status: 401 }, 'WebSocket upgrade');
});

t.test('upstream TLS: certificates are verified unless tls_insecure_skip_verify', async (t) => {
  const here = new URL('./fixtures/', import.meta.url);
  const server = createHttpsServer({ cert: readFileSync(new URL('selfsigned-cert.pem', here)), key: readFileSync(new URL('selfsigned-key.pem', here)) }, (req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(req.url === '/api/sessions' ? '{"session_id":"tls-1"}' : '{"status":"ok"}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise((r) => server.close(r)));
  const serverUrl = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const dir = t.testdir();
  const strict = await startTestDaemon(t, join(dir, 'strict'), { server_url: serverUrl, register_timeout_ms: 2000 });
  t.match(await strict.api.register(), /^local-session-/, 'a self-signed server is not trusted');
  await until(() => strict.daemon.health().upstream.last_error !== null, 'a TLS failure is reported');
  t.match(strict.daemon.health().upstream.last_error, /certificate/i);

  const lax = await startTestDaemon(t, join(dir, 'lax'), { server_url: serverUrl, tls_insecure_skip_verify: true, register_timeout_ms: 2000 });
  t.equal(await lax.api.register(), 'tls-1', 'tls_insecure_skip_verify accepts it');
});

t.test('api_key goes upstream as a Bearer token and never appears in /health or the logs', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const key = 'dc_live_0123456789abcdef';
  const serverUrl = upstream.url.replace('http://', 'http://user:hunter2@');
  const d = await spawnDaemon(t, ['--server-url', serverUrl, '--api-key', key, '--log-level', 'debug', '--data-dir', t.testdir()]);
  const id = await d.api.register();
  upstream.addFault({ match: (r) => r.kind === 'event', status: 500, times: 2 }); // errors get logged
  await d.api.ok('/event', { session_id: id, name: 'e' });
  await until(() => upstream.applied({ kind: 'event' }).length === 1, 'delivered');
  t.ok(upstream.requests.every((r) => r.headers['authorization'] === `Bearer ${key}`), 'every upstream request carries the key');
  const health = JSON.stringify((await d.api.get('/health')).body);
  t.notOk(health.includes(key), 'not in /health');
  t.notOk(health.includes('hunter2'), 'nor a password in server_url');
  t.match(health, /user:\*\*\*@/, 'which is shown redacted');
  const metrics = await (await fetch(d.url + '/metrics')).text();
  t.notOk(metrics.includes(key), 'not in /metrics');
  await d.kill('SIGTERM');
  const logs = d.stderr.join('\n');
  t.ok(logs.length > 0, 'there were logs');
  t.notOk(logs.includes(key), 'not in the logs');
  t.notOk(logs.includes('hunter2'), 'nor the password');
});
