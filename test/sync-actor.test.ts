import t from 'tap';
import type { UpstreamOp } from '../dist/src/outbox/chunk.js';
import { startFakeUpstream } from './support/fake-upstream.js';
import { syncRig } from './support/sync-rig.js';
import { startTestDaemon, until } from './support/daemon-harness.js';


const create = (t = 1): UpstreamOp => ({ k: 'create', t, b: { product: 'p', version: '1' } });
const state = (i: number): UpstreamOp => ({ k: 'state', t: 2 + i, b: { state: { i } } });

t.test('a commit announced while startup scans the queue does not start a second lane', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { commits, sync, queue } = await syncRig(t, upstream);
  await queue(1, [create(), ...[0, 1, 2, 3, 4].map(state)]);
  const started = sync.start(); // its first LevelDB read is in flight...
  sync.notify(1, Date.now()); // ...when a round commits for the same session
  await started;
  await until(() => commits.counters.depth === 0, 'drained');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(upstream.applied({ kind: 'create' }).length, 1, 'one create');
  t.same(upstream.applied({ kind: 'state' }).map((r) => r.body.state.i), [0, 1, 2, 3, 4], 'each op once, in order');
  t.equal(commits.counters.depth, 0);
});

t.test('a lane that never reaches the upstream does not keep the probe: sync resumes', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { commits, sync, queue } = await syncRig(t, upstream);
  await queue(1, [state(0), state(1)]); // its create is gone (dead-lettered before): no server id
  await queue(2, [create(), state(9)]);
  sync.link.upstreamFailed('ECONNREFUSED (simulated)');
  await sync.start();
  await until(() => commits.counters.depth === 0, 'both sessions consumed', 5000);
  t.equal(commits.counters.dead, 2, "session 1's ops are dead letters (never created upstream)");
  t.equal(upstream.applied({ kind: 'state' }).length, 1, 'session 2 delivered');
  t.equal(sync.link.state, 'up');
});

t.test('a create answered 2xx without a session id is a dead letter, not retried forever', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { commits, sync, queue } = await syncRig(t, upstream);
  upstream.addFault({ match: (r) => r.kind === 'create', status: 200, times: 1 });
  await queue(1, [create(), state(0)]);
  await sync.start();
  await until(() => commits.counters.depth === 0, 'consumed');
  await new Promise((r) => setTimeout(r, 300));
  t.equal(upstream.requests.filter((r) => r.kind === 'create').length, 1, 'one create attempt');
  t.equal(commits.counters.dead, 2, 'the create and the op that needed it');
});

t.test('a redirect is retried as an unavailable upstream, not dead-lettered', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { commits, sync, queue } = await syncRig(t, upstream);
  upstream.addFault({ match: (r) => r.kind === 'state', status: 301, times: 2 });
  await queue(1, [create(), state(0)]);
  await sync.start();
  await until(() => commits.counters.depth === 0, 'delivered after the redirects stop');
  t.equal(commits.counters.dead, 0);
  t.equal(upstream.applied({ kind: 'state' }).length, 1);
});

t.test('a slow create: /register answers a local id within register_timeout_ms, and the other sessions keep syncing', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url, register_timeout_ms: 300 });
  const fast = await api.register('fast', '1');
  t.match(fast, /^srv-/);
  upstream.addFault({ match: (r) => r.kind === 'create', delayMs: 1500, times: 1 });
  const started = Date.now();
  const slow = await api.register('slow', '1');
  const took = Date.now() - started;
  t.match(slow, /^local-session-/, 'a local id');
  t.ok(took < 1000, `answered in ${took} ms`);
  await api.ok('/event', { session_id: fast, name: 'still-syncing' });
  await until(() => upstream.applied({ kind: 'event' }).length === 1, 'the other session still syncs');
  t.equal(daemon.health().upstream.next_retry_at, null, 'the upstream was not declared down');
});

t.test('a chunk that does not decode neither stops startup nor holds up other sessions', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { commits, directory, sync, queue } = await syncRig(t, upstream);
  directory.add(1, { local_id: 'local-session-1-1', server_id: null });
  await commits.submit({ chunks: [{ sn: 1, count: 1, value: new Uint8Array([0xc1]) }] }); // 0xc1: never valid MessagePack
  await queue(2, [create(), state(7)]);
  await sync.start();
  t.pass('startup went on past the broken chunk');
  await until(() => upstream.applied({ kind: 'state' }).length === 1, 'session 2 delivered', 5000);
  // The server has it before the daemon has written that down: wait for the write, then look.
  await until(() => commits.counters.depth <= 1, 'its consumption written', 5000);
  await new Promise((r) => setTimeout(r, 200));
  t.equal(commits.counters.depth, 1, 'the broken chunk stays queued (its lane retries with backoff), nothing else');
});
