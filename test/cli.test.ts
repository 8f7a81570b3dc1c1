import t from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { BIN, ROOT, processExists, spawnDaemon } from './support/daemon-harness.js';

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

t.test('npm start -- flags: SIGTERM to npm stops the daemon, exit 0', async (t) => {
  // npm runs the script under `sh -c`, and sh does not pass signals on: without `exec` in the
  // script, a service manager stopping npm left the daemon running, holding its port.
  const npm = spawn('npm', ['start', '--silent', '--', '--port', '0', '--log-level', 'info', '--data-dir', t.testdir(), '--server-url', 'http://127.0.0.1:9'], {
    cwd: ROOT,
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  t.teardown(() => void npm.kill('SIGKILL'));
  const exited = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: npm.stderr! }).on('line', (line) => {
      const m = /"msg":"datacat daemon listening".*?"port":(\d+)|"port":(\d+).*?"msg":"datacat daemon listening"/.exec(line);
      if (m) resolve(Number(m[1] ?? m[2]));
    });
    void exited.then((code) => reject(new Error(`npm start exited (${code}) before the daemon listened`)));
  });
  t.equal((await fetch(`http://127.0.0.1:${port}/health`)).status, 200, 'serving');
  npm.kill('SIGTERM');
  t.equal(await exited, 0, 'npm exits 0');
  await t.rejects(fetch(`http://127.0.0.1:${port}/health`), 'and the daemon is gone with it');
});

t.test('a SIGTERM or SIGINT while the daemon is starting stops it with exit 0', async (t) => {
  // The unknown flag's warning is logged as soon as the start command has read its config: from
  // there to the port being open (the store opens, the workers start), a signal must stop it
  // cleanly. (Before it, bin/datacat-daemon's own handlers end the process with 0; before node
  // runs that file's first line, ~60-90 ms here, a signal can only have its default effect.)
  for (const [signal, afterMs] of [['SIGTERM', 0], ['SIGINT', 0], ['SIGTERM', 20], ['SIGINT', 50], ['SIGTERM', 100]] as const) {
    const p = spawn(process.execPath, [BIN, '--port', '0', '--data-dir', join(t.testdir(), `${signal}-${afterMs}`), '--server-url', 'http://127.0.0.1:9', '--not-a-flag'], {
      env: { PATH: process.env['PATH'] ?? '', HOME: '/tmp' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => p.once('exit', (code, sig) => resolve([code, sig])));
    await new Promise<void>((resolve) => createInterface({ input: p.stderr! }).on('line', (line) => line.includes('not-a-flag') && resolve()));
    await new Promise((r) => setTimeout(r, afterMs));
    p.kill(signal);
    t.same(await exited, [0, null], `${signal} ${afterMs} ms into startup: exit 0, not killed by the signal`);
  }
});

t.test("a stop signal twice in a row (a terminal's Ctrl-C reaches npm and the daemon, npm passes it on) still exits 0", async (t) => {
  const d = await spawnDaemon(t, ['--data-dir', t.testdir(), '--server-url', 'http://127.0.0.1:9']);
  d.proc.kill('SIGINT');
  d.proc.kill('SIGINT');
  t.equal((await d.exited).code, 0);
});

t.test('a host or port that cannot be listened on: one line naming the key', async (t) => {
  const badHost = await run(['--port', '0', '--data-dir', t.testdir(), '--host', 'no-such-host.invalid']);
  t.equal(badHost.code, 2, 'a host that does not resolve is a bad value');
  t.equal(badHost.stderr.trim().split('\n').length, 1, 'one line');
  t.match(badHost.stderr, /host "no-such-host\.invalid" does not resolve/);
  const notMine = await run(['--port', '0', '--data-dir', t.testdir(), '--host', '192.0.2.77']);
  t.equal(notMine.code, 2, 'an address of another machine too');
  t.match(notMine.stderr, /host "192\.0\.2\.77" is not an address of this machine/);
  t.equal(notMine.stderr.trim().split('\n').length, 1, 'one line, no warning about auth_token before it');
  const first = await spawnDaemon(t, ['--data-dir', t.testdir()]);
  const busy = await run(['--port', String(first.port), '--data-dir', t.testdir()]);
  t.equal(busy.code, 1);
  t.match(busy.stderr, new RegExp(`daemon_port ${first.port} is already in use`));
  t.equal(busy.stderr.trim().split('\n').length, 1, 'one line');
});

/** Runs bin/datacat-daemon with stdout captured; one that starts a daemon instead is killed after 10 s (code null). */
function runOut(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env['PATH'] ?? '', HOME: '/tmp', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const timer = setTimeout(() => p.kill('SIGKILL'), 10_000);
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

t.test('--version, -v, -V and `version` print the version and exit 0, starting no daemon', async (t) => {
  const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  // HOME in a test dir: were a daemon started, its store would go there, not into /tmp.
  const env = { HOME: t.testdir() };
  for (const args of [['--version'], ['-v'], ['-V'], ['version'], ['--port', '0', '--version']]) {
    const res = await runOut(args, env);
    t.same(res, { code: 0, stdout: `${version}\n`, stderr: '' }, args.join(' '));
  }
  const help = await runOut(['--help'], env);
  t.match(help.stdout, /datacat-daemon version .*--version, -v, -V/, '--help lists it');
});

/**
 * Starts the daemon the way a DataCat client does (DATACAT_CONFIG, from a parent process that then
 * exits, leaving the daemon behind) with `args`; answers the daemon's pid and port.
 */
async function startedByAnApplication(t: Tap.Test, args: string[], env: Record<string, string>): Promise<{ pid: number; port: number }> {
  const launcher = `
    const { spawn } = require('node:child_process');
    const { createInterface } = require('node:readline');
    const [bin, ...args] = process.argv.slice(1);
    const d = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    createInterface({ input: d.stderr }).on('line', (line) => {
      if (!line.includes('"datacat daemon listening"')) return;
      process.stdout.write(JSON.stringify({ pid: d.pid, port: JSON.parse(line).port }));
      process.exit(0);
    });
    d.on('exit', (code) => process.exit(100 + (code ?? 0)));`;
  const p = spawn(process.execPath, ['-e', launcher, BIN, ...args], { env: { PATH: process.env['PATH'] ?? '', HOME: '/tmp', ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  p.stdout!.on('data', (d: Buffer) => (out += d));
  const code = await new Promise((resolve) => p.on('exit', resolve));
  if (code !== 0) throw new Error(`the daemon did not start (launcher exit ${code})`);
  const started = JSON.parse(out) as { pid: number; port: number };
  t.teardown(() => {
    if (processExists(started.pid)) process.kill(started.pid, 'SIGKILL');
  });
  return started;
}

t.test('DATACAT_CONFIG makes exit_with_parent default to true, but an explicit false from any layer wins', async (t) => {
  const dir = t.testdir();
  const config = (name: string, extra: Record<string, unknown> = {}): string => {
    const file = join(dir, `${name}.json`);
    // One worker each: six daemons start at once.
    writeFileSync(file, JSON.stringify({ daemon_port: '0', server_url: 'http://127.0.0.1:9', log_level: 'info', workers: 1, data_dir: join(dir, name), ...extra }));
    return file;
  };
  // [what, args, env, exits with the parent]; all started in parallel, the parent gone at once.
  const cases: Array<[string, string[], Record<string, string>, boolean]> = [
    ['default', [], { DATACAT_CONFIG: config('default') }, true],
    ['--no-exit-with-parent', ['--no-exit-with-parent'], { DATACAT_CONFIG: config('no-flag') }, false],
    ['--exit-with-parent=false', ['--exit-with-parent=false'], { DATACAT_CONFIG: config('eq-false') }, false],
    ['DATACAT_EXIT_WITH_PARENT=false', [], { DATACAT_CONFIG: config('env'), DATACAT_EXIT_WITH_PARENT: 'false' }, false],
    ['exit_with_parent: false in the file', [], { DATACAT_CONFIG: config('file', { exit_with_parent: false }) }, false],
    ['false in the file, then --exit-with-parent', ['--exit-with-parent'], { DATACAT_CONFIG: config('file-then-flag', { exit_with_parent: false }) }, true],
  ];
  const daemons = await Promise.all(cases.map(([, args, env]) => startedByAnApplication(t, args, env)));
  const orphaned = Date.now();
  // The parent watch looks twice a second, and with the upstream down there is nothing to drain:
  // once those that go with their parent are gone (and a few looks later), the others stayed.
  const deadline = orphaned + 15_000;
  while (Date.now() < deadline && daemons.some(({ pid }, i) => cases[i]![3] && processExists(pid))) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, Math.max(500, orphaned + 2000 - Date.now())));
  for (const [i, [what, , , exits]] of cases.entries()) {
    const { pid, port } = daemons[i]!;
    if (exits) {
      t.notOk(processExists(pid), `${what}: exited with its parent`);
      continue;
    }
    t.ok(processExists(pid), `${what}: still running after its parent exited`);
    t.equal((await fetch(`http://127.0.0.1:${port}/health`)).status, 200, `${what}: and serving`);
    process.kill(pid, 'SIGTERM');
  }
});

t.test('ignored input warns: single-dash flags, stray arguments, DATACAT_* variables that are no key', async (t) => {
  const d = await spawnDaemon(t, ['-p', '1234', '-x', '--data-dir', t.testdir(), '--server-url', 'http://127.0.0.1:9', '--enable-compression', 'extra', '--', 'after'], {
    env: { DATACAT_PORT: '1234', DATACAT_SERVERURL: 'http://x', DATACAT_SOAK: '1', DATACAT_CHAOS_SEED: '7', DATACAT_CHAOS_MS: '1', DATACAT_URL: 'ws://x' },
  });
  // What it said while starting (later lines may be about the upstream being down).
  const startup = d.stderr.slice(0, d.stderr.findIndex((l) => l.includes('"datacat daemon listening"')));
  const warnings = startup.flatMap((l) => {
    const m = JSON.parse(l) as { level: number; msg: string };
    return m.level === 40 ? [m.msg] : [];
  });
  t.same(warnings, [
    'unknown flag "-p" (ignored: flags have two dashes, e.g. --port)',
    'unexpected argument "1234" (ignored: the daemon takes only --flags)',
    'unknown flag "-x" (ignored: flags have two dashes, e.g. --port)',
    'unexpected argument "extra" (ignored: the daemon takes only --flags)',
    'unexpected argument "after" (ignored: the daemon takes only --flags)',
    'unknown environment variable "DATACAT_PORT" (ignored; did you mean DATACAT_DAEMON_PORT?)',
    'unknown environment variable "DATACAT_SERVERURL" (ignored; did you mean DATACAT_SERVER_URL?)',
  ], 'each named, said to be ignored; none for the variables the tooling reads');
  t.not(d.port, 1234, 'nothing ignored was used');
  t.equal((await d.api.get('/health')).body.upstream.url, 'http://127.0.0.1:9');
  t.equal((await d.kill('SIGTERM')).code, 0, 'and the daemon ran');
});

t.test('a data_dir that cannot be created is a bad value: one line naming it, exit 2', async (t) => {
  const res = await run(['--port', '0', '--data-dir', '/proc/nope']);
  t.equal(res.code, 2);
  t.equal(res.stderr.trim().split('\n').length, 1, 'one line');
  t.match(res.stderr, /cannot create data_dir \/proc\/nope: ENOENT/);
});
