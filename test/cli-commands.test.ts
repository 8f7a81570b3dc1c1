/**
 * The admin commands (`status`, `queue`, `flush`, `replay`) as an operator runs them: the CLI in
 * a child process against a daemon started through bin/datacat-daemon, checking stdout, stderr
 * and the exit code (0 ok, 1 daemon unreachable or an error answer, 2 bad usage or config).
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { createServer as createHttpServer, type IncomingHttpHeaders } from 'node:http';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, spawnDaemon, until } from './support/daemon-harness.js';
import { startFakeUpstream } from './support/fake-upstream.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

// An empty working directory for the CLI, so that no stray daemon_config.json is read.
const EMPTY_DIR = mkdtempSync(join(tmpdir(), 'datacat-cli-'));
t.teardown(() => rmSync(EMPTY_DIR, { recursive: true, force: true }));

/** Runs `datacat-daemon <args>` with a clean environment, in EMPTY_DIR unless told otherwise. */
function cli(args: string[], options: { env?: Record<string, string>; cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd ?? EMPTY_DIR,
      env: { PATH: process.env['PATH'] ?? '', HOME: '/tmp', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs a command with `--json` and parses its stdout, failing loudly with stderr otherwise. */
async function cliJson(args: string[], options?: { env?: Record<string, string>; cwd?: string }): Promise<any> {
  const res = await cli([...args, '--json'], options);
  if (res.code !== 0) throw new Error(`datacat-daemon ${args.join(' ')} --json exited ${res.code}: ${res.stderr}`);
  return JSON.parse(res.stdout);
}

const oneLine = (s: string): boolean => s.trim() !== '' && !s.trim().includes('\n');

t.test('status: a human summary, or the raw /health with --json', async (t) => {
  const d = await spawnDaemon(t, ['--data-dir', t.testdir(), '--server-url', 'http://127.0.0.1:9', '--workers', '2']);
  const port = String(d.port);
  const res = await cli(['status', '--port', port]);
  t.equal(res.code, 0, res.stderr);
  t.equal(res.stderr, '');
  t.match(res.stdout, new RegExp(`pid ${d.proc.pid}, version \\d+\\.\\d+\\.\\d+, 0 active sessions`));
  t.match(res.stdout, /upstream\s+http:\/\/127\.0\.0\.1:9: offline/);
  t.match(res.stdout, /queue\s+0 ops \(0 B\), 0 dead letters, 0 dropped/);
  t.match(res.stdout, /workers\s+2 of 2 alive/);
  t.match(res.stdout, /remaps\s+0/);

  const health = await cliJson(['status', '--port', port]);
  t.equal(health.status, 'ok');
  t.equal(health.pid, d.proc.pid);
  t.equal(health.upstream.url, 'http://127.0.0.1:9');
  t.match(health.workers, { size: 2, alive: 2 });
  t.type(health.queue.depth, 'number');
});

t.test('flush prints the remaining depth; flush --wait waits until the queue is empty', async (t) => {
  const upstream = await startFakeUpstream({ startDown: true });
  t.teardown(() => upstream.close());
  // A long backoff: without the flush, the daemon would not retry for 20 s.
  const d = await spawnDaemon(t, ['--data-dir', t.testdir(), '--server-url', upstream.url, '--retry-base-ms', '20000', '--retry-max-ms', '60000']);
  const port = String(d.port);
  const id = await d.api.register();
  for (let i = 0; i < 3; i++) await d.api.ok('/event', { session_id: id, name: 'e', data: { i } });

  const res = await cli(['flush', '--port', port]);
  t.equal(res.code, 0, res.stderr);
  t.match(res.stdout, /^\d+ ops? still queued/, 'upstream down: the ops stay queued');
  const answer = await cliJson(['flush', '--port', port]);
  t.equal(answer.status, 'ok');
  t.ok(answer.depth >= 4, `depth ${answer.depth}: the create and 3 events`);

  await until(async () => (await d.api.get('/health')).body.upstream.next_retry_at !== null, 'in backoff');
  await upstream.up();
  const started = Date.now();
  const waited = await cli(['flush', '--wait', '--port', port]);
  t.equal(waited.code, 0, waited.stderr);
  t.match(waited.stdout, /queue is empty/);
  t.ok(Date.now() - started < 10_000, 'drained at once, not after the backoff');
  t.equal(upstream.applied({ kind: 'event' }).length, 3);
  t.same(await cliJson(['flush', '--wait', '--port', port]), { status: 'ok', depth: 0 });
});

t.test('queue lists the queued ops with the contract fields; --limit and --session', async (t) => {
  const d = await spawnDaemon(t, ['--data-dir', t.testdir(), '--server-url', 'http://127.0.0.1:9']);
  const port = String(d.port);
  const a = await d.api.register('a', '1');
  const b = await d.api.register('b', '1');
  for (let i = 0; i < 3; i++) await d.api.ok('/event', { session_id: a, name: 'e', data: { i } });
  for (let i = 0; i < 2; i++) await d.api.ok('/event', { session_id: b, name: 'e', data: { i } });
  const depth = (await d.api.get('/health')).body.queue.depth as number;

  const all = await cliJson(['queue', '--port', port]);
  t.equal(all.total, depth, 'total is the queue depth');
  t.equal(all.items.length, depth, 'every op listed');
  for (const item of all.items) {
    for (const key of ['seq', 'session_id', 'kind', 'attempts', 'enqueued_at', 'last_error']) t.ok(key in item, `item has ${key}`);
  }
  t.same(new Set(all.items.map((i: { session_id: string }) => i.session_id)), new Set([a, b]));
  t.equal(all.items.filter((i: { kind: string; session_id: string }) => i.kind === 'event' && i.session_id === a).length, 3);

  const limited = await cliJson(['queue', '--limit', '2', '--port', port]);
  t.equal(limited.items.length, 2, '--limit 2');
  t.equal(limited.total, depth, 'total still counts everything');

  const onlyB = await cliJson(['queue', '--session', b, '--port', port]);
  t.ok(onlyB.items.length >= 2, 'b has its events queued');
  t.ok(onlyB.items.every((i: { session_id: string }) => i.session_id === b), '--session filters');
  t.equal(onlyB.total, onlyB.items.length);

  const human = await cli(['queue', '--port', port, '--limit=3']);
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, /^SEQ\s+SESSION\s+KIND\s+ATTEMPTS\s+AGE\s+LAST ERROR\n/);
  t.match(human.stdout, new RegExp(`\\n3 of ${depth} queued ops\\n$`));
  t.equal(human.stdout.trim().split('\n').length, 5, 'header, 3 rows, count');
});

t.test('queue --dead lists dead letters; replay moves them back into the queue', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const d = await spawnDaemon(t, ['--data-dir', t.testdir(), '--server-url', upstream.url, '--retry-base-ms', '50', '--retry-max-ms', '400']);
  const port = String(d.port);
  const id = await d.api.register();
  upstream.addFault({ match: (r) => r.kind === 'event' && r.body?.name === 'refused', status: 400 });
  await d.api.ok('/event', { session_id: id, name: 'refused' });
  await d.api.ok('/event', { session_id: id, name: 'fine' });
  await until(async () => {
    const { queue } = (await d.api.get('/health')).body;
    return queue.dead_letters === 1 && queue.depth === 0;
  }, 'one dead letter, the rest delivered');

  const dead = await cliJson(['queue', '--dead', '--port', port]);
  t.equal(dead.total, 1);
  t.equal(dead.items.length, 1);
  // The session may have been remapped to its server id by now: either id names it.
  const { server_id } = (await d.api.get(`/session?session_id=${id}`)).body;
  t.ok([id, server_id].includes(dead.items[0].session_id), `the session's id (${dead.items[0].session_id})`);
  t.equal(dead.items[0].kind, 'event');
  t.match(dead.items[0].last_error, /400/, 'the upstream answer is the reason');
  const human = await cli(['queue', '--dead', '--port', port]);
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, /\n1 of 1 dead letters\n$/);
  t.match(await cliJson(['queue', '--port', port]), { total: 0 }, 'the live queue drained');

  upstream.clearFaults();
  const replayed = await cli(['replay', '--port', port]);
  t.equal(replayed.code, 0, replayed.stderr);
  t.match(replayed.stdout, /moved 1 dead letter back into the queue/);
  await until(() => upstream.applied({ kind: 'event' }).length === 2, 'the replayed event is delivered');
  t.same(await cliJson(['replay', '--port', port]), { status: 'ok', replayed: 0 }, 'nothing left to replay');
  t.match(await cliJson(['queue', '--dead', '--port', port]), { items: [], total: 0 });
});

t.test('queue and replay against a stand-in daemon: the query sent, the table printed', async (t) => {
  // Pins what the CLI sends and how it renders CONTRACT §2 answers, whatever the daemon's state.
  const seen: Array<{ method: string; url: string; headers: IncomingHttpHeaders }> = [];
  const enqueuedAt = new Date(Date.now() - 90_000).toISOString();
  const server = createHttpServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers });
    const body = req.url!.startsWith('/queue/replay')
      ? { status: 'ok', replayed: 2 }
      : req.url!.startsWith('/queue')
        ? {
            items: [
              { seq: 7, session_id: 'local-session-1-1', kind: 'event', attempts: 3, enqueued_at: enqueuedAt, last_error: 'HTTP 400:\n{"error":"bad"}' },
              { seq: 9, session_id: 'local-session-1-1', kind: 'end', attempts: 0, enqueued_at: enqueuedAt, last_error: null },
            ],
            total: 5,
          }
        : 'not json';
    res.writeHead(200, { 'content-type': 'application/json' }).end(typeof body === 'string' ? body : JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const port = String((server.address() as { port: number }).port);

  const res = await cli(['queue', '--dead', '--session', 'local-session-1-1', '--limit', '2', '--port', port, '--auth-token', 's3cret']);
  t.equal(res.code, 0, res.stderr);
  const url = new URL(seen[0]!.url, 'http://x');
  t.equal(url.pathname, '/queue');
  t.same(Object.fromEntries(url.searchParams), { session_id: 'local-session-1-1', limit: '2', dead: '1' });
  t.equal(seen[0]!.headers.authorization, 'Bearer s3cret');
  t.equal(
    res.stdout,
    [
      'SEQ  SESSION            KIND   ATTEMPTS  AGE      LAST ERROR',
      '7    local-session-1-1  event  3         1.5 min  HTTP 400: {"error":"bad"}',
      '9    local-session-1-1  end    0         1.5 min',
      '2 of 5 dead letters of session local-session-1-1',
      '',
    ].join('\n'),
  );

  const replay = await cli(['replay', '--port', port]);
  t.equal(replay.code, 0, replay.stderr);
  t.equal(replay.stdout, 'moved 2 dead letters back into the queue\n');
  t.match(seen.at(-1), { method: 'POST', url: '/queue/replay', headers: { 'content-type': 'application/json' } });
  t.notOk(seen.at(-1)!.headers.authorization, 'no token configured, none sent');

  const notJson = await cli(['status', '--port', port]);
  t.equal(notJson.code, 1);
  t.match(notJson.stderr, /answered 200 with something that is not JSON: is a datacat daemon listening there\?/);
});

t.test('an unreachable daemon: exit 1 and one line saying where it looked', async (t) => {
  // A port that was free a moment ago: nothing listens there.
  const port = await new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
  for (const sub of ['status', 'queue', 'flush', 'replay']) {
    const res = await cli([sub, '--port', String(port)]);
    t.equal(res.code, 1, `${sub}: exit 1`);
    t.ok(oneLine(res.stderr), `${sub}: one line`);
    t.match(res.stderr, `datacat-daemon: cannot reach the daemon at http://127.0.0.1:${port} (ECONNREFUSED): is it running?`);
    t.equal(res.stdout, '');
  }
  // The same from the config file the daemon would read: ./daemon_config.json in the cwd.
  const dir = t.testdir({ 'daemon_config.json': JSON.stringify({ daemon_port: String(port), some_future_key: 1 }) });
  const res = await cli(['status'], { cwd: dir });
  t.equal(res.code, 1);
  t.ok(oneLine(res.stderr), 'one line: no warning about the unknown key');
  t.match(res.stderr, `http://127.0.0.1:${port}`);
});

t.test('bad usage or a bad config value: exit 2, one line, nothing started', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['queue', '--lmit', '2'], /queue: unknown flag --lmit/],
    [['queue', '--limit', '0'], /--limit must be a positive integer/],
    [['queue', '--limit', 'ten'], /--limit must be a positive integer/],
    [['queue', '--session'], /--session needs a value/],
    [['status', '--json=yes'], /--json takes no value/],
    [['flush', 'now'], /unexpected argument "now"/],
    [['status', '--port', 'eighty'], /daemon_port/],
    [['status', '--port', '0'], /daemon_port is 0/],
    [['replay'], /overflow.*DATACAT_OVERFLOW/],
  ];
  for (const [args, message] of cases) {
    const res = await cli(args, args[0] === 'replay' ? { env: { DATACAT_OVERFLOW: 'explode' } } : {});
    t.equal(res.code, 2, `${args.join(' ')}: exit 2`);
    t.ok(oneLine(res.stderr), `${args.join(' ')}: one line (${res.stderr.trim()})`);
    t.match(res.stderr, message);
    t.equal(res.stdout, '');
  }
});

t.test('auth_token: required by the daemon, sent from flags, env or the config file', async (t) => {
  const d = await spawnDaemon(t, ['--data-dir', t.testdir(), '--server-url', 'http://127.0.0.1:9', '--auth-token', 't', '--host', '0.0.0.0']);
  const port = String(d.port);

  const denied = await cli(['flush', '--port', port]);
  t.equal(denied.code, 1);
  t.ok(oneLine(denied.stderr));
  t.match(denied.stderr, /answered POST \/flush with 401 unauthorized: .*\(pass --auth-token/);
  const wrong = await cli(['flush', '--port', port, '--auth-token', 'nope']);
  t.equal(wrong.code, 1);
  t.match(wrong.stderr, /401 unauthorized/);
  t.notMatch(wrong.stderr, /pass --auth-token/, 'a token was passed: no hint to pass one');

  t.equal((await cli(['status', '--port', port])).code, 0, '/health needs no token');
  t.match(await cliJson(['flush', '--port', port, '--auth-token', 't']), { status: 'ok' }, 'flag');
  t.match(await cliJson(['flush', '--port', port], { env: { DATACAT_AUTH_TOKEN: 't' } }), { status: 'ok' }, 'env');
  // How DataCat clients configure a daemon: a JSON file named by DATACAT_CONFIG (string port);
  // its host 0.0.0.0 is reached on 127.0.0.1.
  const file = join(t.testdir(), 'daemon_config_0.json');
  writeFileSync(file, JSON.stringify({ daemon_port: port, host: '0.0.0.0', auth_token: 't' }));
  t.match(await cliJson(['flush'], { env: { DATACAT_CONFIG: file } }), { status: 'ok' }, 'DATACAT_CONFIG');
  t.match(await cliJson(['flush', '--config', file]), { status: 'ok' }, '--config');
});

t.test('help: for the command and for each subcommand, without starting anything', async (t) => {
  for (const args of [['help'], ['--help'], ['-h'], ['--port', '8079', '--help']]) {
    const res = await cli(args);
    t.equal(res.code, 0, args.join(' '));
    t.match(res.stdout, /^Usage: datacat-daemon \[config flags\]/);
    for (const sub of ['status', 'queue', 'flush', 'replay']) t.match(res.stdout, new RegExp(`\\n  ${sub} `));
  }
  for (const args of [['queue', '--help'], ['help', 'queue']]) {
    const res = await cli(args);
    t.equal(res.code, 0);
    t.match(res.stdout, /^Usage: datacat-daemon queue \[--dead\] \[--session ID\] \[--limit N\] \[--json\]/);
  }
  const unknown = await cli(['help', 'stauts']);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /no command "stauts"/);
});
