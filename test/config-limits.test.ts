/**
 * Keys that become timer delays are bounded by Node's timer limit (2^31-1 ms, ~24.8 days): past
 * it, setTimeout/setInterval fire after 1 ms (TimeoutOverflowWarning), so a "monthly" upstream
 * heartbeat made ~900 heartbeats a second and a long retry delay retried in a tight loop. The
 * daemon refuses such values at startup, one line naming the key, exit 2; the largest allowed
 * value works as the long delay it says.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, spawnDaemon } from './support/daemon-harness.js';
import { startFakeUpstream } from './support/fake-upstream.js';
import { MAX_TIMER_MS, MAX_TIMER_SECONDS } from '../dist/src/config/index.js';
import { Backoff, MAX_RETRY_AFTER_MS } from '../dist/src/actors/backoff.js';
import { Backoff as ClientBackoff } from '../dist/src/client/backoff.js';

/** Runs bin/datacat-daemon; a daemon that starts instead of refusing is killed after 15 s (code null). */
function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, '--port', '0', ...args], { env: { PATH: process.env['PATH'] ?? '', HOME: '/tmp', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    const timer = setTimeout(() => p.kill('SIGKILL'), 15_000);
    let stderr = '';
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

t.equal(MAX_TIMER_MS, 2 ** 31 - 1);
t.equal(MAX_TIMER_SECONDS, 2_147_483);

t.test('every timer key past 2^31-1 ms is refused at startup: exit 2, one line naming the key', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'limits.json');
  writeFileSync(file, JSON.stringify({ exit_drain_seconds: MAX_TIMER_SECONDS + 1 }));
  const dataDir = join(dir, 'data');
  const cases: Array<[key: string, args: string[], env?: Record<string, string>]> = [
    // The audit's cases, then one past the limit for every other key that becomes a delay.
    ['upstream_heartbeat_seconds', ['--upstream-heartbeat-seconds', '2147484']],
    ['retry_base_ms', ['--retry-base-ms', '3000000000', '--retry-max-ms', '3000000000']],
    ['register_timeout_ms', ['--register-timeout-ms', '3000000000']],
    ['retry_max_ms', ['--retry-max-ms', String(MAX_TIMER_MS + 1)]],
    ['upstream_timeout_ms', [], { DATACAT_UPSTREAM_TIMEOUT_MS: String(MAX_TIMER_MS + 1) }],
    ['batch_interval_seconds', ['--batch-interval-seconds', '2147483.5']],
    ['exit_drain_seconds', ['--config', file]],
    ['upstream_heartbeat_seconds', [], { DATACAT_UPSTREAM_HEARTBEAT_SECONDS: '1e9' }],
  ];
  const results = await Promise.all(cases.map(([, args, env]) => run(['--data-dir', dataDir, ...args], env)));
  cases.forEach(([key, args, env], i) => {
    const { code, stderr } = results[i]!;
    const what = `${key} from ${args.join(' ') || JSON.stringify(env)}`;
    t.equal(code, 2, `${what}: exit 2`);
    t.equal(stderr.trim().split('\n').length, 1, `${what}: one line`);
    const limit = key.endsWith('_ms') ? MAX_TIMER_MS : MAX_TIMER_SECONDS;
    t.match(stderr, new RegExp(`invalid config: ${key} must be .*\\b${limit}\\b.*timer limit`), `${what}: names the key and the limit`);
    t.notMatch(stderr, /TimeoutOverflowWarning/);
  });
});

t.test('the largest values are accepted and wait as long as they say', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const d = await spawnDaemon(t, [
    '--data-dir', t.testdir(),
    '--server-url', upstream.url,
    '--upstream-heartbeat-seconds', String(MAX_TIMER_SECONDS),
    '--exit-drain-seconds', String(MAX_TIMER_SECONDS),
    '--batch-interval-seconds', String(MAX_TIMER_SECONDS),
    '--register-timeout-ms', String(MAX_TIMER_MS),
    '--upstream-timeout-ms', String(MAX_TIMER_MS),
    '--retry-max-ms', String(MAX_TIMER_MS),
  ]);
  // The server answers at once, so /register gets its id however long it would have waited.
  const id = await d.api.register();
  await d.api.ok('/heartbeat', { session_id: id });
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(upstream.applied({ kind: 'heartbeat' }).length, 0, 'no upstream heartbeat within 1.5 s (a 1 ms timer made hundreds)');
  t.notOk(d.stderr.some((l) => l.includes('TimeoutOverflowWarning')), 'no timer overflowed');
  t.equal((await d.kill('SIGTERM')).code, 0);
});

t.test('backoff delays never exceed retry_max_ms, jitter and Retry-After included', async (t) => {
  for (const r of [0, 0.5, 1 - Number.EPSILON]) {
    const sync = new Backoff(MAX_TIMER_MS, MAX_TIMER_MS, () => r);
    const client = new ClientBackoff({ baseMs: MAX_TIMER_MS, maxMs: MAX_TIMER_MS, random: () => r });
    let worst = 0;
    for (let i = 0; i < 100; i++) worst = Math.max(worst, sync.fail(), sync.fail(Number.MAX_SAFE_INTEGER), client.next());
    t.ok(worst <= MAX_TIMER_MS, `random ${r}: at most ${MAX_TIMER_MS} (got ${worst})`);
  }
  const small = new Backoff(100, 1000, () => 1 - Number.EPSILON);
  t.equal(small.fail(Number.MAX_SAFE_INTEGER), MAX_RETRY_AFTER_MS, 'a huge Retry-After is cut to an hour');
});
