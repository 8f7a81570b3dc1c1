import t from 'tap';
import { spawn } from 'node:child_process';
import { startFakeUpstream } from './support/fake-upstream.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIN, spawnDaemon, startTestDaemon, until } from './support/daemon-harness.js';

const daemonEvents = (upstream: Awaited<ReturnType<typeof startFakeUpstream>>, name: string) =>
  upstream.applied({ kind: 'event' }).filter((r) => r.body.name === name);

t.test('heartbeats: hung once, recovered on the next heartbeat, no hang while paused', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { api } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url, heartbeat_timeout_seconds: 1 });
  // Events are counted by their daemon timestamp after a given moment: on a loaded machine the
  // watch may fire between registration and the first heartbeat, which is correct behaviour.
  const since = (name: string, from: number) => daemonEvents(upstream, name).filter((r) => Date.parse(r.body.timestamp) >= from);
  const id = await api.register();
  await api.ok('/heartbeat', { session_id: id });
  const beat = Date.now();
  await until(() => since('application_appears_hung', beat).length === 1, 'hung event upstream', 10_000);
  t.equal((await api.get(`/session?session_id=${id}`)).body.hung, true, 'the session reads hung');
  const hung = since('application_appears_hung', beat)[0]!.body;
  t.equal(hung.group, 'datacat.daemon');
  t.equal(hung.category, 'error');
  t.match(hung.data, { last_heartbeat: /^\d{4}-/, seconds_since_heartbeat: Number });
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(since('application_appears_hung', beat).length, 1, 'reported once');

  const recoveredAt = Date.now();
  await api.ok('/heartbeat', { session_id: id });
  await until(() => since('application_recovered', recoveredAt - 50).length === 1, 'recovered event');
  t.equal((await api.get(`/session?session_id=${id}`)).body.hung, false);

  await api.ok('/pause_heartbeat', { session_id: id });
  const paused = Date.now();
  await new Promise((r) => setTimeout(r, 2500));
  t.equal(since('application_appears_hung', paused).length, 0, 'no hung event while paused');
  const view = (await api.get(`/session?session_id=${id}`)).body;
  t.equal(view.hung, false);
  t.equal(view.heartbeat_paused, true);
  t.ok(view.events.some((e: any) => e.name === 'application_appears_hung'), 'daemon events are in offline reads too');
});

t.test('upstream heartbeats are coalesced, only for live sessions', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { api } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url, upstream_heartbeat_seconds: 1, heartbeat_timeout_seconds: 30 });
  const live = await api.register('live', '1');
  const ended = await api.register('ended', '1');
  await api.ok('/end', { session_id: ended });
  const afterEnd = upstream.requests.length; // a beat may have caught it while it was still active
  for (let i = 0; i < 50; i++) await api.ok('/heartbeat', { session_id: live });
  await new Promise((r) => setTimeout(r, 2600));
  const beats = upstream.applied({ kind: 'heartbeat' }).filter((b) => b.seq > afterEnd);
  t.ok(beats.length >= 2 && beats.length <= 4, `${beats.length} upstream heartbeats for 50 local ones in ~2.6 s`);
  t.ok(beats.every((b) => b.sessionId === live), 'none for the ended session');
});

t.test("a session's parent process dies: crash event and crash op; an ended session is left alone", async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { api } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url });
  const child = () => spawn('sleep', ['60'], { stdio: 'ignore' });
  const app = child();
  const finished = child();
  t.teardown(() => void (app.kill(), finished.kill()));
  const id = await api.register('app', '1', { parent_pid: app.pid });
  const endedId = await api.register('app', '1', { parent_pid: finished.pid });
  await api.ok('/end', { session_id: endedId });
  app.kill('SIGKILL');
  finished.kill('SIGKILL');
  await until(async () => (await api.get(`/session?session_id=${id}`)).body.crashed === true, 'marked crashed', 5000);
  const view = (await api.get(`/session?session_id=${id}`)).body;
  t.equal(view.active, false);
  t.ok(view.ended_at);
  await until(() => upstream.applied({ kind: 'crash' }).length === 1, 'crash op upstream');
  const ops = upstream.sessions.get(id)!.ops;
  t.same(ops.slice(-2).map((o) => o.kind), ['event', 'crash'], 'the event, then the crash, last');
  t.match(ops.at(-2)!.body, { name: 'parent_process_crashed', category: 'critical', group: 'datacat.daemon', data: { parent_pid: app.pid } });
  t.same(ops.at(-1)!.body, { reason: 'parent_process_terminated' });
  await new Promise((r) => setTimeout(r, 1200));
  const endedView = (await api.get(`/session?session_id=${endedId}`)).body;
  t.equal(endedView.crashed, false, 'a session that ended normally is never marked crashed');
  t.notOk(upstream.sessions.get(endedId)!.crashed);
});

t.test('counters and histograms: aggregated upstream once per interval; an acked delta survives SIGKILL', async (t) => {
  const upstream = await startFakeUpstream({ startDown: true });
  t.teardown(() => upstream.close());
  const dataDir = t.testdir();
  const args = ['--data-dir', dataDir, '--server-url', upstream.url, '--batch-interval-seconds', '1', '--retry-base-ms', '50', '--retry-max-ms', '200'];
  const first = await spawnDaemon(t, args);
  const id = await first.api.register();
  for (let i = 0; i < 100; i++) await first.api.ok('/metric', { session_id: id, name: 'kills', type: 'counter', value: 0, delta: 1, tags: ['b', 'a'] });
  const samples = [0.0005, 0.003, 0.003, 0.2, 0.7, 45, 120];
  for (const v of samples) await first.api.ok('/metric', { session_id: id, name: 'load_time', type: 'histogram', value: v, unit: 'seconds' });
  await first.api.ok('/metric', { session_id: id, name: 'custom', type: 'histogram', value: 7, metadata: { buckets: [1, 5, 'inf'], note: 'x' } });
  await first.api.ok('/metric', { session_id: id, name: 'fps', type: 'gauge', value: 60 });
  await first.kill('SIGKILL'); // acked deltas, not yet flushed upstream

  const second = await spawnDaemon(t, args);
  for (let i = 0; i < 5; i++) await second.api.ok('/metric', { session_id: id, name: 'kills', type: 'counter', delta: 2, tags: ['a', 'b'] });
  await upstream.up();
  await second.api.ok('/flush');
  await until(() => upstream.applied({ kind: 'metric' }).some((r) => r.body.name === 'kills' && r.body.value === 110), 'counter total 110 upstream', 8000);
  await until(async () => (await second.api.get('/health')).body.queue.depth === 0, 'everything delivered');
  const counters = upstream.applied({ kind: 'metric' }).filter((r) => r.body.name === 'kills');
  t.ok(counters.length <= 3, `100 + 5 deltas went up as ${counters.length} snapshot(s)`);
  t.same(counters.at(-1)!.body.tags, ['a', 'b'], 'one aggregate per name + sorted tags');
  t.equal(counters.at(-1)!.body.type, 'counter');
  const hist = upstream.applied({ kind: 'metric' }).filter((r) => r.body.name === 'load_time').at(-1)!.body;
  t.equal(hist.type, 'histogram');
  t.equal(hist.metadata.count, samples.length);
  t.equal(hist.metadata.buckets.reduce((n: number, b: { count: number }) => n + b.count, 0), samples.length, 'bucket counts add up');
  t.equal(hist.metadata.buckets.length, 15, 'default bounds');
  t.equal(hist.metadata.buckets[14].count, 2, 'values past the last bound land in the last bucket');
  t.ok(Math.abs(hist.value - samples.reduce((a, b) => a + b) / samples.length) < 1e-9, 'value is the mean');
  const custom = upstream.applied({ kind: 'metric' }).filter((r) => r.body.name === 'custom').at(-1)!.body;
  t.same(custom.metadata.buckets, [{ le: 1, count: 0 }, { le: 5, count: 0 }, { le: '+Inf', count: 1 }], '"inf" bound');
  t.equal(custom.metadata.note, 'x', 'other metadata kept');
  t.equal(upstream.applied({ kind: 'metric' }).filter((r) => r.body.name === 'fps').length, 1, 'gauges pass through');
  await second.kill('SIGTERM');
});

t.test('offline reads keep the most recent events and metrics, bounded', async (t) => {
  const { api } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9', recent_events_limit: 5, recent_metrics_limit: 3 });
  const id = await api.register();
  for (let i = 0; i < 20; i++) await api.ok('/event', { session_id: id, name: `e${i}` });
  for (let i = 0; i < 10; i++) await api.ok('/metric', { session_id: id, name: `m${i}`, value: i });
  const view = (await api.get(`/session?session_id=${id}`)).body;
  t.same(view.events.map((e: any) => e.name), ['e15', 'e16', 'e17', 'e18', 'e19']);
  t.same(view.metrics.map((m: any) => m.name), ['m7', 'm8', 'm9']);
  t.match(view.events[0].timestamp, /Z$/);
  const all = (await api.get('/sessions')).body;
  t.equal(all[0].events.length, 5);
  for (const key of ['id', 'server_id', 'local_id', 'created_at', 'updated_at', 'active', 'crashed', 'hung', 'synced_with_server', 'state', 'events', 'metrics', 'last_heartbeat', 'hostname', 'machine_id'])
    t.ok(key in view, `the session has ${key}`);
});

t.test('started the way DataCat clients start it: when the application exits, its sessions crash and the daemon persists and exits', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const dir = t.testdir();
  const configFile = join(dir, 'daemon_config_auto.json');
  const dataDir = join(dir, 'data');
  writeFileSync(configFile, JSON.stringify({ daemon_port: '0', server_url: upstream.url, batch_interval_seconds: 5, max_batch_size: 100, heartbeat_timeout_seconds: 60, data_dir: dataDir }));
  const launcher = spawn(process.execPath, [fileURLToPath(new URL('./support/launch-like-datacat.mjs', import.meta.url)), BIN, configFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  launcher.stdout!.on('data', (d: Buffer) => (out += d));
  await new Promise((resolve) => launcher.on('exit', resolve));
  const { daemon_pid: daemonPid, session_id: id } = JSON.parse(out) as { daemon_pid: number; session_id: string };
  t.teardown(() => {
    try {
      process.kill(daemonPid, 'SIGKILL');
    } catch {}
  });
  await until(() => !processExists(daemonPid), 'the daemon exited after its parent', 15_000);
  // What it persisted: a fresh daemon on the same store shows the session crashed, nothing queued.
  const again = await spawnDaemon(t, ['--data-dir', dataDir, '--server-url', upstream.url]);
  const view = (await again.api.get(`/session?session_id=${id}`)).body;
  const events = upstream.sessions.get(view.server_id)?.ops ?? [];
  t.match(events.at(-2)?.body, { name: 'daemon_parent_exited', group: 'datacat.daemon', category: 'critical' }, 'the session got daemon_parent_exited upstream');
  t.equal(events.at(-1)?.kind, 'crash', 'then its crash, last');
  t.equal(view.crashed, true);
  t.equal(view.active, false);
  t.equal((await again.api.get('/health')).body.queue.depth, 0, 'everything was delivered before exiting');
  await again.kill('SIGTERM');
});

t.test('a daemon started by hand keeps running when its parent exits', async (t) => {
  const dir = t.testdir();
  const shell = spawn('sh', ['-c', `"${process.execPath}" "${BIN}" --port 0 --data-dir "${join(dir, 'data')}" --server-url http://127.0.0.1:9 --log-level silent & echo $!`], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  shell.stdout!.on('data', (d: Buffer) => (out += d));
  await new Promise((resolve) => shell.on('exit', resolve));
  const pid = Number(out.trim());
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  });
  await new Promise((r) => setTimeout(r, 1500));
  t.ok(processExists(pid), 'still running after its parent shell exited');
});

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
