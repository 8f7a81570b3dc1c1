/**
 * The daemon's start and stop, at chosen moments: what a restart finds of a kill's leftovers
 * while new work already arrives, and what a stop leaves behind.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Daemon } from '../dist/src/daemon.js';
import { openStore, type Db } from '../dist/src/outbox/store.js';
import { ALL_LEASES, leaseKey } from '../dist/src/outbox/keys.js';
import { pack, unpack } from '../dist/src/protocol/codec.js';
import { startFakeUpstream } from './support/fake-upstream.js';
import { BIN, processExists, spawnDaemon, startTestDaemon, testConfig, until, JsonClient } from './support/daemon-harness.js';

const WORKER_EXEC_ARGV = process.execArgv.filter((arg) => !/^--(import|loader|experimental-loader|require)\b/.test(arg));

/** A store whose read of the send leases (SyncActor.countLeftLeases) waits for `gate` after the iterator is made. */
function leaseReadHeld(raw: Db, reached: () => void, gate: Promise<void>): Db {
  return new Proxy(raw, {
    get(target, prop) {
      if (prop === 'iterator')
        return (options?: { gt?: string; lt?: string }) => {
          const it = target.iterator(options as never);
          if (options?.gt !== ALL_LEASES.gt || options?.lt !== ALL_LEASES.lt) return it;
          const all = it.all.bind(it);
          return Object.assign(it, {
            all: async () => {
              reached();
              await gate;
              return all();
            },
          });
        };
      const v = Reflect.get(target, prop);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  }) as Db;
}

/**
 * A store as a kill mid-run leaves it: one session (with `events` queued after its create) and
 * the send lease of 17 its lane held (keys.ts).
 */
async function storeWithLeftoverLease(t: Tap.Test, dataDir: string, serverUrl: string, events: string[]): Promise<{ id: string; sn: number }> {
  const first = await startTestDaemon(t, dataDir, { server_url: serverUrl });
  const id = await first.api.register('app', '1');
  for (const name of events) await first.api.ok('/event', { session_id: id, name });
  const sn = first.daemon.directory.resolve(id)!;
  await first.close();
  const store = await openStore(dataDir);
  await store.put(leaseKey(sn), pack(17));
  await store.close();
  return { id, sn };
}

/** A daemon on `dataDir` whose count of leftover leases stops once reached (`atLeases`) until `release()`. */
async function startWithLeaseCountHeld(t: Tap.Test, dataDir: string, config: Record<string, unknown>) {
  let reached!: () => void;
  const atLeases = new Promise<void>((r) => (reached = r));
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const daemon = await Daemon.start(testConfig(dataDir, config), {
    workerExecArgv: WORKER_EXEC_ARGV,
    wrapDb: (db) => leaseReadHeld(db, reached, gate),
  });
  t.teardown(() => daemon.close());
  return { daemon, api: new JsonClient(`http://127.0.0.1:${daemon.port}`), atLeases, release };
}

t.test('a lane that starts while the restart counts the leases a kill left keeps its own lease', async (t) => {
  const upstream = await startFakeUpstream({ startDown: true });
  t.teardown(() => upstream.close());
  const dataDir = t.testdir();
  const { id, sn } = await storeWithLeftoverLease(t, dataDir, upstream.url, ['before']);

  // The server takes its time with every op: whatever the new daemon sends stays in flight.
  await upstream.up();
  // (The fake records a request once answered; its fault rule sees it arrive.)
  let creates = 0;
  upstream.addFault({ match: (r) => (r.kind === 'create' && ++creates > 0) || (r.kind !== 'read' && r.kind !== 'other'), delayMs: 4000 });
  const { daemon, api, atLeases, release } = await startWithLeaseCountHeld(t, dataDir, { server_url: upstream.url });
  await atLeases;
  // An op for the session while the leftover leases are being counted. Its 200 comes after the
  // sync actor was told (afterCommit): a lane that may run now sends its create within moments.
  await api.ok('/event', { session_id: id, name: 'during' });
  const sentEarly = await upstream.waitFor(() => creates > 0, 1000).then(() => true, () => false);
  release();
  await daemon.ready();
  await upstream.waitFor(() => creates > 0, 5000, 'the lane sending');
  t.notOk(sentEarly, 'no lane sent before the leftover leases were counted');
  const lease = await daemon.db.get(leaseKey(sn));
  t.ok(lease, 'the lane sending has a durable send lease: a kill now would be counted after the restart');
  t.equal(lease && (unpack(lease) as number), 17, "the lane's own lease");
  const inDoubt = daemon.health().upstream.in_doubt as number;
  t.ok(inDoubt >= 1 && inDoubt <= 17, `the leftover lease counted (${inDoubt})`);
});

t.test('a /register whose create is in flight while the restart counts leftover leases keeps its lease of one, uncounted', async (t) => {
  const upstream = await startFakeUpstream({ startDown: true });
  t.teardown(() => upstream.close());
  const dataDir = t.testdir();
  const { sn } = await storeWithLeftoverLease(t, dataDir, upstream.url, []);

  await upstream.up();
  let creates = 0;
  upstream.addFault({ match: (r) => r.kind === 'create' && ++creates > 0, delayMs: 3000 });
  const { daemon, api, atLeases, release } = await startWithLeaseCountHeld(t, dataDir, { server_url: upstream.url, register_timeout_ms: 300 });
  await atLeases;
  // The sync actor is loaded (the count runs in its start): /register tries the server, which is slow.
  const late = await api.register('app', '1');
  t.match(late, /^local-session-/, 'a local id: the create is still in flight');
  t.equal(creates, 1, "/register's own create reached the server");
  const lateSn = daemon.directory.resolve(late)!;
  t.ok(await daemon.db.get(leaseKey(lateSn)), 'its lease is durable');
  release();
  await daemon.ready();
  t.ok(await daemon.db.get(leaseKey(lateSn)), 'the count of leftover leases left it alone');
  t.equal(daemon.health().upstream.in_doubt, 1, "only the leftover lease's one queued op (the create) is counted");
});

t.test('SIGTERM while a /register waits for the server: it is answered and persisted, not cut off', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const args = ['--data-dir', t.testdir(), '--server-url', upstream.url, '--register-timeout-ms', '1000'];
  const first = await spawnDaemon(t, args);
  await first.api.registerOnServer('app', '1'); // the sync actor runs and the server is known up
  let arrived = 0;
  upstream.addFault({ match: (r) => r.kind === 'create' && ++arrived > 0, delayMs: 3000 });
  const registered = first.api.post('/register', { product: 'app', version: '1' }).catch((err: unknown) => err);
  await upstream.waitFor(() => arrived > 0, 5000, "/register's create at the server");
  // The request is read and in progress: the daemon is waiting for the server's id.
  t.same(await first.kill('SIGTERM'), { code: 0, signal: null }, 'exit 0');
  const answer = await registered;
  t.notOk(answer instanceof Error, `answered, not cut off (${answer instanceof Error ? String((answer as Error).cause ?? answer) : ''})`);
  if (answer instanceof Error) return;
  const { status, body } = answer as { status: number; body: { session_id: string } };
  t.equal(status, 200, 'with the local id');
  const again = await spawnDaemon(t, args);
  t.equal((await again.api.get(`/session?session_id=${encodeURIComponent(body.session_id)}`)).status, 200, 'and the session it answered survives the restart');
  upstream.clearFaults();
  await again.api.ok('/flush?wait=1', {});
  const duplicates = upstream.applied({ kind: 'create' }).length - 2;
  const inDoubt = (await again.api.get('/health')).body.upstream.in_doubt as number;
  t.ok(duplicates <= inDoubt, `a second create of it is counted in doubt (${duplicates} duplicate, in_doubt ${inDoubt})`);
  await again.kill('SIGTERM');
});

t.test('the application exits while its /register waits for the server: that session is crashed too before the daemon exits', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const dir = t.testdir();
  const configFile = join(dir, 'daemon_config_auto.json');
  const dataDir = join(dir, 'data');
  writeFileSync(configFile, JSON.stringify({ daemon_port: '0', server_url: upstream.url, register_timeout_ms: 1500, data_dir: dataDir }));
  // Like launch-like-datacat.mjs, but the application's second /register is still waiting for
  // its answer when the application dies.
  const launcherFile = join(dir, 'launcher.mjs');
  writeFileSync(
    launcherFile,
    `import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
const [bin, configFile] = process.argv.slice(2);
const daemon = spawn(process.execPath, [bin], { env: { ...process.env, DATACAT_CONFIG: configFile }, stdio: ['pipe', 'pipe', 'pipe'] });
const port = await new Promise((resolve) => createInterface({ input: daemon.stderr }).on('line', (line) => { try { const m = JSON.parse(line); if (m.msg === 'datacat daemon listening') resolve(m.port); } catch {} }));
const post = (body) => fetch('http://127.0.0.1:' + port + '/register', { method: 'POST', body: JSON.stringify(body) });
const { session_id } = await (await post({ product: 'app', version: '1' })).json();
process.stdout.write(JSON.stringify({ daemon_pid: daemon.pid, session_id }) + '\\n');
process.stdin.once('data', () => { void post({ product: 'app', version: '2' }).catch(() => {}); setTimeout(() => process.exit(0), 100); });
`,
  );
  const launcher = spawn(process.execPath, [launcherFile, BIN, configFile], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  launcher.stdout!.on('data', (d: Buffer) => (out += d));
  await until(() => out.includes('\n'), 'the first session registered', 15_000);
  const { daemon_pid: daemonPid } = JSON.parse(out) as { daemon_pid: number; session_id: string };
  t.teardown(() => {
    try {
      process.kill(daemonPid, 'SIGKILL');
    } catch {}
  });
  await upstream.waitFor(() => upstream.sessions.size === 1, 10_000, 'the first session created');
  let arrived = 0;
  upstream.addFault({ match: (r) => r.kind === 'create' && ++arrived > 0, delayMs: 2500 });
  launcher.stdin!.write('go\n');
  await new Promise((resolve) => launcher.on('exit', resolve));
  t.equal(arrived, 1, "the second /register's create reached the server before the application died");
  await until(() => !processExists(daemonPid), 'the daemon exited after its parent', 20_000);
  await new Promise((r) => setTimeout(r, 1000)); // the slow create lands meanwhile
  const sessions = [...upstream.sessions.values()];
  t.equal(sessions.length, 2, 'both sessions exist upstream');
  for (const s of sessions) t.ok(s.crashed, `${s.id} (version ${s.create.version}) was crashed by the daemon before it exited`);
});
