import t from 'tap';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, spawnDaemon } from './support/daemon-harness.js';

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env['PATH'] ?? '', HOME: '/tmp', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('exit', (code) => resolve({ code, stderr }));
  });
}

t.test('a bad value refuses to start with one line naming the key', async (t) => {
  const res = await run(['--port', 'eighty']);
  t.equal(res.code, 2);
  t.equal(res.stderr.trim().split('\n').length, 1, 'one line');
  t.match(res.stderr, /daemon_port/);
  const env = await run([], { DATACAT_OVERFLOW: 'explode' });
  t.equal(env.code, 2);
  t.match(env.stderr, /overflow.*DATACAT_OVERFLOW/);
});

t.test('started the way DataCat clients start it: DATACAT_CONFIG with a string port; unknown keys warn', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'daemon_config_0.json');
  writeFileSync(
    file,
    JSON.stringify({ daemon_port: '0', server_url: 'http://127.0.0.1:9', batch_interval_seconds: 5, max_batch_size: 100, heartbeat_timeout_seconds: 60, data_dir: join(dir, 'data'), shiny_new_key: true }),
  );
  // spawnDaemon passes --port 0 too; the file must still be read and its keys accepted.
  const d = await spawnDaemon(t, [], { env: { DATACAT_CONFIG: file } });
  t.ok(d.stderr.some((l) => l.includes('shiny_new_key')), 'unknown key reported as a warning');
  const id = await d.api.register('py', '3.11', { parent_pid: process.pid });
  t.match(id, /^local-session-/);
  const health = (await d.api.get('/health')).body;
  t.equal(health.upstream.url, 'http://127.0.0.1:9', 'server_url from the file');
  t.same((await d.kill('SIGTERM')).code, 0);
});

t.test('durability fsync syncs each batch and works end to end', async (t) => {
  const d = await spawnDaemon(t, ['--data-dir', t.testdir(), '--durability', 'fsync', '--server-url', 'http://127.0.0.1:9']);
  const id = await d.api.register();
  for (let i = 0; i < 20; i++) await d.api.ok('/event', { session_id: id, name: 'e' });
  t.equal((await d.api.get('/health')).body.queue.depth, 21);
  await d.kill('SIGKILL');
});

t.test('a store another daemon holds gives one clear error naming the data dir', async (t) => {
  const dataDir = t.testdir();
  const first = await spawnDaemon(t, ['--data-dir', dataDir]);
  const res = await run(['--port', '0', '--data-dir', dataDir]);
  t.equal(res.code, 1);
  t.match(res.stderr, new RegExp(`data_dir ${dataDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  t.equal(res.stderr.trim().split('\n').length, 1, 'one line');
  await first.kill('SIGTERM');
});

t.test('a mistyped command is a usage error, not a daemon', async (t) => {
  const res = await run(['stauts']);
  t.equal(res.code, 2);
  t.match(res.stderr, /no command "stauts"/);
});
