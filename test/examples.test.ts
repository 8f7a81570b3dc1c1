import t from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startTestDaemon } from './support/daemon-harness.js';

// The examples are documentation: they must run, against a real daemon.
t.test('examples/basic.ts runs end to end', async (t) => {
  const { url, api } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9' });
  const file = fileURLToPath(new URL('../examples/basic.ts', import.meta.url));
  // Same TypeScript loader as this test (tap's), so the example runs from source.
  const child = spawn(process.execPath, [...process.execArgv, file], { env: { ...process.env, DATACAT_URL: url.replace('http', 'ws') }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (out += d));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.equal(code, 0, out);
  const sessions = (await api.get('/sessions')).body;
  t.equal(sessions.length, 1, 'the example registered a session');
  t.equal(sessions[0].active, false, 'and ended it');
  t.ok(sessions[0].events.length > 0 && sessions[0].metrics.length > 0, 'with events and metrics');
});
