import t from 'tap';
import { spawn } from 'node:child_process';
import { startFakeUpstream } from './support/fake-upstream.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIN, processExists, spawnDaemon, startTestDaemon, until } from './support/daemon-harness.js';

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
  const live = await api.registerOnServer('live', '1');
  const ended = await api.register('ended', '1');
  await api.ok('/end', { session_id: ended });
  const afterEnd = upstream.requests.length; // a beat may have caught it while it was still active
  for (let i = 0; i < 50; i++) await api.ok('/heartbeat', { session_id: live });
  await new Promise((r) => setTimeout(r, 2600));
  const beats = upstream.applied({ kind: 'heartbeat' }).filter((b) => b.seq > afterEnd);
  t.ok(beats.length >= 2 && beats.length <= 4, `${beats.length} upstream heartbeats for 50 local ones in ~2.6 s`);
  t.ok(beats.every((b) => b.sessionId === live), 'none for the ended session');
});

t.test('no upstream heartbeat arrives after its session ended, even when heartbeats are slow', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  upstream.addFault({ match: (r) => r.kind === 'heartbeat', delayMs: 300 });
  const { api } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url, upstream_heartbeat_seconds: 1, heartbeat_timeout_seconds: 60 });
  const ids: string[] = [];
  for (let i = 0; i < 40; i++) ids.push(await api.register('hb', '1'));
  // A heartbeat round of 40 sessions in groups of 8 takes ~1.5 s: end them all in the middle of it.
  await until(() => upstream.applied({ kind: 'heartbeat' }).length > 0, 'a heartbeat round under way', 10_000);
  await Promise.all(ids.map((id) => api.ok('/end', { session_id: id })));
  await until(() => upstream.applied({ kind: 'end' }).length === 40, 'every end delivered', 10_000);
  await new Promise((r) => setTimeout(r, 2500)); // past the round, and the next
  const late = upstream.applied({ kind: 'end' }).filter((end) =>
    upstream.requests.some((r) => r.kind === 'heartbeat' && r.sessionId === end.sessionId && r.seq > end.seq),
  );
  t.equal(late.length, 0, 'end is the last request of every session');
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
  await api.ok('/metric', { session_id: id, name: 'c', type: 'counter', value: 0, delta: 3 }); // a total still to send
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
  t.same(ops.slice(-3).map((o) => o.kind), ['metric', 'event', 'crash'], "the counter's final total, then the event, then the crash, last");
  t.match(ops.at(-3)!.body, { name: 'c', type: 'counter', value: 3 });
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
  // The launcher registered the session with its own pid: the session's parent is gone.
  t.match(events.at(-2)?.body, { name: 'parent_process_crashed', group: 'datacat.daemon', category: 'critical', data: { parent_pid: Number } }, 'the session got parent_process_crashed upstream');
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

t.test('after a SIGKILL, an active session that gets no op again is still watched: hung, parent crash, pending counter', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const dataDir = t.testdir();
  const args = ['--data-dir', dataDir, '--server-url', upstream.url, '--heartbeat-timeout-seconds', '2', '--batch-interval-seconds', '1'];
  const app = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  t.teardown(() => app.kill('SIGKILL'));
  const first = await spawnDaemon(t, args);
  const silent = await first.api.registerOnServer('silent', '1');
  const orphan = await first.api.registerOnServer('orphan', '1', { parent_pid: app.pid });
  await first.api.ok('/metric', { session_id: silent, name: 'c', type: 'counter', value: 0, delta: 5 });
  await first.kill('SIGKILL'); // before the counter's interval came round
  app.kill('SIGKILL');
  const second = await spawnDaemon(t, args);
  t.teardown(() => second.kill('SIGTERM'));
  // No op for either session from now on: the daemon must find them itself.
  // On a timeout, say where it stands: the session as the daemon sees it, and its queue.
  const whereItStands = async (): Promise<unknown> => ({
    session: (await second.api.get(`/session?session_id=${silent}`)).body,
    queue: (await second.api.get(`/queue?session_id=${silent}`)).body,
    upstream: (await second.api.get('/health')).body.upstream,
  });
  await until(() => daemonEvents(upstream, 'application_appears_hung').some((r) => r.sessionId === silent), 'hung event for the silent session', 15_000, whereItStands);
  await until(() => upstream.applied({ kind: 'crash', sessionId: orphan }).length === 1, 'crash op for the orphan', 15_000);
  t.ok(daemonEvents(upstream, 'parent_process_crashed').some((r) => r.sessionId === orphan), 'parent_process_crashed before it');
  await until(() => upstream.applied({ kind: 'metric', sessionId: silent }).some((r) => r.body.type === 'counter' && r.body.value === 5), 'the acked counter total upstream', 15_000);
  t.equal((await second.api.get(`/session?session_id=${silent}`)).body.hung, true);
});

t.test('reads keep every acked event and metric across a SIGKILL right after the answers', async (t) => {
  const dataDir = t.testdir();
  const args = ['--data-dir', dataDir, '--server-url', 'http://127.0.0.1:9'];
  const first = await spawnDaemon(t, args);
  const id = await first.api.register('reads', '1');
  for (let i = 0; i < 30; i++) await first.api.ok('/event', { session_id: id, name: `e${i}`, data: { i } });
  await first.api.ok('/metric', { session_id: id, name: 'g', value: 1.5 });
  await first.api.ok('/state', { session_id: id, state: { last: 29 } });
  await first.kill('SIGKILL'); // within ACTIVITY_PERSIST_MS of the last change
  const second = await spawnDaemon(t, args);
  t.teardown(() => second.kill('SIGTERM'));
  const view = (await second.api.get(`/session?session_id=${id}`)).body;
  t.same(view.events.map((e: any) => e.name), Array.from({ length: 30 }, (_, i) => `e${i}`), 'every event, once, in order');
  t.same(view.metrics.map((m: any) => m.name), ['g']);
  t.same(view.state, { last: 29 });
  t.ok(Date.parse(view.updated_at) >= Date.parse(view.created_at), 'updated_at caught up');
});

t.test('a fractional batch_interval_seconds is kept: 0.5 s means aggregates go up every 0.5 s', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { api } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url, batch_interval_seconds: 0.5 });
  const id = await api.registerOnServer();
  const until2s = Date.now() + 2600;
  while (Date.now() < until2s) {
    await api.ok('/metric', { session_id: id, name: 'c', type: 'counter', value: 0, delta: 1 });
    await new Promise((r) => setTimeout(r, 40));
  }
  const sent = upstream.applied({ kind: 'metric', sessionId: id }).map((r) => r.at);
  const gaps = sent.slice(1).map((at, i) => at - sent[i]!).sort((a, b) => a - b);
  const median = gaps[Math.floor(gaps.length / 2)]!;
  t.ok(sent.length >= 4, `${sent.length} totals in 2.6 s`);
  t.ok(median >= 350 && median <= 700, `about every 500 ms (median gap ${median} ms; it was 1000 ms, the tick rounded it up)`);
});

t.test('a hung session that crashes or ends is no longer hung: only active sessions are watched, and /health counts them so', async (t) => {
  const { api } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9', heartbeat_timeout_seconds: 1 });
  const app = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.teardown(() => void app.kill());
  const crashing = await api.register('crashing', '1', { parent_pid: app.pid });
  const ending = await api.register('ending', '1');
  await until(async () => (await api.get('/health')).body.sessions_by_status.hung === 2, 'both hung', 5000);
  app.kill('SIGKILL');
  await until(async () => (await api.get(`/session?session_id=${crashing}`)).body.crashed === true, 'marked crashed', 5000);
  await api.ok('/end', { session_id: ending });
  for (const id of [crashing, ending]) t.equal((await api.get(`/session?session_id=${id}`)).body.hung, false, `${id}: not hung once it is over`);
  t.same((await api.get('/health')).body.sessions_by_status, { active: 0, hung: 0, inactive: 2 });
});
