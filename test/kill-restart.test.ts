import t from 'tap';
import { startFakeUpstream } from './support/fake-upstream.js';
import { spawnDaemon, until } from './support/daemon-harness.js';

/**
 * A child daemon whose upstream answers events after `delayMs`, with `sessions` sessions known to
 * the server and 5 acked events each, so that every session has a delivery on its way.
 */
async function slowServerWithEvents(t: Tap.Test, sessions: number, delayMs: number) {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const args = ['--data-dir', t.testdir(), '--server-url', upstream.url];
  const first = await spawnDaemon(t, args);
  const ids: string[] = [];
  for (let i = 0; i < sessions; i++) ids.push(await first.api.registerOnServer('app', '1'));
  upstream.addFault({ match: (r) => r.kind === 'event', delayMs });
  for (const id of ids) for (let i = 0; i < 5; i++) await first.api.ok('/event', { session_id: id, name: 'e', data: { i } });
  return { upstream, args, first };
}

t.test('SIGKILL while offline: after a restart every acked op is delivered once, in order; local ids never repeat', async (t) => {
  const upstream = await startFakeUpstream({ startDown: true });
  t.teardown(() => upstream.close());
  const dataDir = t.testdir();
  const args = ['--data-dir', dataDir, '--server-url', upstream.url, '--retry-base-ms', '50', '--retry-max-ms', '300'];

  const first = await spawnDaemon(t, args);
  const ids = [await first.api.register('app', '1'), await first.api.register('app', '1')];
  // Stream from 8 concurrent producers and kill the daemon mid-stream.
  const acked = new Map<string, number[]>(ids.map((id) => [id, []]));
  let stop = false;
  const producer = async (p: number): Promise<void> => {
    const id = ids[p % 2]!;
    for (let i = 0; !stop; i++) {
      const n = p * 1_000_000 + i;
      try {
        const res = await first.api.post('/event', { session_id: id, name: 'e', data: { n } });
        if (res.status === 200) acked.get(id)!.push(n);
      } catch {
        return; // the daemon is gone
      }
    }
  };
  const producers = Array.from({ length: 8 }, (_, p) => producer(p));
  await until(() => [...acked.values()].reduce((a, l) => a + l.length, 0) >= 300, 'some ops acked');
  await first.kill('SIGKILL');
  stop = true;
  await Promise.all(producers);
  const total = [...acked.values()].reduce((a, l) => a + l.length, 0);
  t.ok(total >= 300, `${total} ops acked before the kill`);

  const second = await spawnDaemon(t, args);
  const third = await second.api.register('app', '1');
  t.match(third, /^local-session-\d+-3$/, 'the local-id counter continues after the kill');
  const health = (await second.api.get('/health')).body;
  t.ok(health.queue.depth >= total + 2, `queue depth ${health.queue.depth} covers every acked op and both creates`);

  await upstream.up();
  await second.api.ok('/flush');
  await until(async () => (await second.api.get('/health')).body.queue.depth === 0, 'drained', 20_000);

  for (const id of ids) {
    const view = (await second.api.get(`/session?session_id=${id}`)).body;
    const delivered = upstream.sessions.get(view.server_id)!.ops.filter((o) => o.kind === 'event').map((o) => o.body.data.n as number);
    const mine = acked.get(id)!;
    const deliveredSet = new Set(delivered);
    t.equal(deliveredSet.size, delivered.length, `${id}: no duplicates (upstream was down during the kill)`);
    t.ok(mine.every((n) => deliveredSet.has(n)), `${id}: all ${mine.length} acked ops delivered`);
    // Per producer, ops are delivered in the order they were acked.
    const byProducer = new Map<number, number[]>();
    for (const n of delivered) {
      const p = Math.floor(n / 1_000_000);
      byProducer.set(p, [...(byProducer.get(p) ?? []), n]);
    }
    t.ok([...byProducer.values()].every((l) => l.every((n, i) => i === 0 || n > l[i - 1]!)), `${id}: per-producer order holds`);
  }
  t.equal(upstream.applied({ kind: 'create' }).length, 3, 'each session created exactly once');
  await second.kill('SIGTERM');
});

t.test('SIGTERM persists what was accepted and exits 0', async (t) => {
  const dataDir = t.testdir();
  const args = ['--data-dir', dataDir, '--server-url', 'http://127.0.0.1:9'];
  const d = await spawnDaemon(t, args);
  const id = await d.api.register();
  await d.api.ok('/state', { session_id: id, state: { phase: 'running' } });
  const exit = await d.kill('SIGTERM');
  t.same(exit, { code: 0, signal: null }, 'exit code 0');
  const again = await spawnDaemon(t, args);
  const view = (await again.api.get(`/session?session_id=${id}`)).body;
  t.same(view.state, { phase: 'running' }, 'the session and its state survive');
  t.equal((await again.api.get('/health')).body.queue.depth, 2, 'create + state still queued');
  await again.kill('SIGTERM');
});

t.test('SIGTERM while requests are on their way upstream: their answers are recorded, nothing goes twice after the restart', async (t) => {
  const { upstream, args, first } = await slowServerWithEvents(t, 8, 600);
  await new Promise((r) => setTimeout(r, 300)); // each session has an event in flight
  const started = Date.now();
  t.same(await first.kill('SIGTERM'), { code: 0, signal: null });
  t.ok(Date.now() - started < 5000, 'exits within a few seconds');
  upstream.clearFaults();
  const again = await spawnDaemon(t, args);
  await again.api.ok('/flush?wait=1', {});
  const events = upstream.applied({ kind: 'event' });
  t.equal(events.length, 40, 'each acked event once: none sent again');
  const health = (await again.api.get('/health')).body;
  t.equal(health.queue.depth, 0);
  t.equal(health.upstream.in_doubt, 0, 'and nothing counted in doubt: every send lease was given back');
  await again.kill('SIGTERM');
});

t.test('SIGKILL while requests are on their way upstream: whatever goes twice after the restart is counted in doubt, and survives the kill', async (t) => {
  const { upstream, args, first } = await slowServerWithEvents(t, 4, 400); // the server applies, then answers late
  await until(() => upstream.requests.filter((r) => r.kind === 'event').length >= 4, 'an event of each session on its way');
  await first.kill('SIGKILL'); // the server still applies what it got; the daemon never hears
  await new Promise((r) => setTimeout(r, 500));
  upstream.clearFaults();
  const again = await spawnDaemon(t, args);
  t.teardown(() => again.kill('SIGTERM'));
  await again.api.ok('/flush?wait=1', {});
  const events = upstream.applied({ kind: 'event' });
  const distinct = new Set(events.map((e) => `${e.sessionId} ${e.body.data.i}`)).size;
  const duplicates = events.length - distinct;
  t.equal(distinct, 20, 'every acked event delivered');
  t.ok(duplicates >= 1, `the kill made duplicates (${duplicates}): the server had applied what was in flight`);
  const inDoubt = (await again.api.get('/health')).body.upstream.in_doubt;
  t.ok(inDoubt >= duplicates, `counted: upstream.in_doubt ${inDoubt} ≥ ${duplicates} duplicates`);
  t.ok(inDoubt <= 4 * 17, `bounded by the send leases of the 4 lanes that were sending (${inDoubt})`);
  t.equal((await again.api.get('/metrics')).body.match(/^datacat_upstream_in_doubt_total (\d+)/m)?.[1], String(inDoubt), '/metrics says the same');
});
