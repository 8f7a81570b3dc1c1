import t from 'tap';
import { spawn } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '../dist/src/client/index.js';
import { recountCounters } from '../dist/src/outbox/recount.js';
import type { Db } from '../dist/src/outbox/store.js';
import { startFakeUpstream } from './support/fake-upstream.js';
import { BIN, spawnDaemon, startTestDaemon, until } from './support/daemon-harness.js';

/** Wraps the store so that writes fail while `failing` is set (a full or failing disk). */
function flakyDisk() {
  const state = { failing: false, refused: 0 };
  const wrap = (db: Db): Db =>
    new Proxy(db, {
      get(target, prop) {
        // The commit queue writes through a chained batch: its write() is what fails.
        if (prop === 'batch')
          return () => {
            const batch = target.batch();
            const write = batch.write.bind(batch);
            return Object.assign(batch, {
              write: async (options?: { sync?: boolean }) => {
                if (state.failing) {
                  state.refused++;
                  await batch.close();
                  throw new Error('simulated: No space left on device');
                }
                return write(options);
              },
            });
          };
        const v = Reflect.get(target, prop);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
  return { state, wrap };
}

function run(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env['PATH'] ?? '', HOME: '/tmp' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout!.on('data', (d: Buffer) => (out += d));
    p.stderr!.on('data', (d: Buffer) => (out += d));
    p.on('exit', (code) => resolve({ code, out }));
  });
}

t.test('a failing disk: ops are refused, not acked; the daemon stays consistent and serves again', async (t) => {
  const disk = flakyDisk();
  const { api, url, daemon } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9' }, { wrapDb: disk.wrap });
  const id = await api.register();
  await api.ok('/state', { session_id: id, state: { v: 1 } });
  const client = connect({ url: url.replace('http', 'ws'), reconnectBaseMs: 20, reconnectMaxMs: 100 });
  client.on('error', () => undefined);
  t.teardown(() => client.close({ timeoutMs: 500 }).catch(() => undefined));
  const ws = await client.register({ product: 'ws', version: '1' });
  for (let i = 0; i < 100; i++) ws.logEvent('before', { data: { i } });
  await client.flush();

  disk.state.failing = true;
  const refused = await api.post('/state', { session_id: id, state: { during: true } });
  t.equal(refused.status, 503, 'refused while the disk fails');
  t.equal(refused.body.error, 'unavailable');
  t.ok(refused.headers.get('retry-after'), 'with Retry-After');
  t.equal((await api.post('/event', { session_id: id, name: 'lost?' })).status, 503);
  for (let i = 0; i < 100; i++) ws.logEvent('during', { data: { i } }); // not acked: the client keeps them
  await new Promise((r) => setTimeout(r, 500));
  t.ok(client.unacked + client.buffered > 0, 'the WebSocket ops wait, unacked');
  t.equal((await api.get('/health')).status, 200, 'the daemon is still up');

  disk.state.failing = false;
  await until(async () => (await api.post('/state', { session_id: id, state: { v: 2 } })).status === 200, 'accepting again', 10_000);
  await client.flush(); // the client resends what was not acked
  for (let i = 0; i < 100; i++) ws.logEvent('after', { data: { i } });
  await client.flush();
  const view = (await api.get(`/session?session_id=${id}`)).body;
  t.same(view.state, { v: 2 }, 'the refused update never happened');
  t.ok(disk.state.refused > 0, `${disk.state.refused} writes failed`);
  const { stored, counted } = await recountCounters(daemon.db);
  t.equal(stored.depth, counted.depth, 'depth counter still exact');
  t.equal(stored.bytes, counted.bytes, 'bytes counter still exact');
  // create + state v1 + state v2 for the HTTP session; create + 300 events for the WebSocket one.
  t.equal(counted.depth, 3 + 1 + 300, 'every acked op once, nothing refused');
});

t.test('a write failure while syncing: the lane starts over from the store, nothing is lost', async (t) => {
  const disk = flakyDisk();
  const upstream = await startFakeUpstream({ startDown: true });
  t.teardown(() => upstream.close());
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url, retry_base_ms: 20, retry_max_ms: 100 }, { wrapDb: disk.wrap });
  const id = await api.register();
  for (let i = 0; i < 300; i++) await api.ok('/event', { session_id: id, name: 'e', data: { i } });
  await upstream.up();
  await api.ok('/flush');
  await until(() => upstream.applied({ kind: 'event' }).length >= 50, 'draining');
  disk.state.failing = true; // consumption records fail mid-drain
  await new Promise((r) => setTimeout(r, 300));
  disk.state.failing = false;
  await api.ok('/flush');
  await until(() => daemon.health().queue.depth === 0, 'drained after the disk recovered', 15_000);
  const seen = new Set(upstream.applied({ kind: 'event' }).map((r) => r.body.data.i));
  t.equal(seen.size, 300, 'every event delivered (resends of unrecorded deliveries are allowed)');
});

t.test('a damaged store: one clear error naming data_dir, and `datacat-daemon repair` recovers it', async (t) => {
  const dataDir = t.testdir();
  const d = await spawnDaemon(t, ['--data-dir', dataDir, '--server-url', 'http://127.0.0.1:9']);
  const id = await d.api.register();
  for (let i = 0; i < 20; i++) await d.api.ok('/event', { session_id: id, name: 'e' });
  const busy = await run(['repair', '--data-dir', dataDir]);
  t.equal(busy.code, 1, 'repair refuses a store a daemon is using');
  t.match(busy.out, /in use by another daemon/);
  await d.kill('SIGTERM');

  const manifest = readdirSync(dataDir).find((f) => f.startsWith('MANIFEST-'))!;
  writeFileSync(join(dataDir, manifest), Buffer.from('this is not a LevelDB manifest'));
  const broken = await run(['--port', '0', '--data-dir', dataDir]);
  t.equal(broken.code, 1);
  t.equal(broken.out.trim().split('\n').length, 1, 'one line');
  t.match(broken.out, `data_dir ${dataDir} is damaged`);
  t.match(broken.out, `datacat-daemon repair --data-dir ${dataDir}`, 'it says how to repair');

  const repaired = await run(['repair', '--data-dir', dataDir]);
  t.equal(repaired.code, 0, repaired.out);
  t.match(repaired.out, /21 ops queued/);
  const again = await spawnDaemon(t, ['--data-dir', dataDir, '--server-url', 'http://127.0.0.1:9']);
  t.equal((await again.api.get('/health')).body.queue.depth, 21, 'create + 20 events survived');
  t.equal((await again.api.get(`/session?session_id=${id}`)).body.events.length, 20);
  await again.kill('SIGTERM');
});

t.test('a data_dir that cannot be made: one clear line at once, naming it', async (t) => {
  const file = join(t.testdir(), 'a-file');
  writeFileSync(file, 'not a directory');
  const inTheWay = await run(['--port', '0', '--data-dir', join(file, 'data')]);
  t.equal(inTheWay.code, 2, 'a bad value: exit 2');
  t.match(inTheWay.out, `cannot create data_dir ${join(file, 'data')}: ENOTDIR`);
  // Under /proc, mkdir answers ENOENT although the parent exists: Node's recursive mkdir spun
  // on that forever at 100% CPU; the daemon says so and stops.
  const inProc = await run(['--port', '0', '--data-dir', '/proc/datacat-daemon-test/data']);
  t.equal(inProc.code, 2);
  t.match(inProc.out, /cannot create data_dir \/proc\/datacat-daemon-test\/data: ENOENT/);
});
