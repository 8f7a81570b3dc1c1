import t from 'tap';
import type { Db } from '../dist/src/outbox/store.js';
import { startTestDaemon, until } from './support/daemon-harness.js';

/** Wraps the store so that snapshot reads (getMany) fail while `failing` is set (a bad sector, EIO). */
function flakyReads() {
  const state = { failing: false, refused: 0, hold: null as Promise<void> | null, held: 0 };
  const wrap = (db: Db): Db =>
    new Proxy(db, {
      get(target, prop) {
        if (prop === 'getMany')
          return async (...args: unknown[]) => {
            if (state.hold) {
              state.held++;
              await state.hold;
            }
            if (state.failing) {
              state.refused++;
              throw new Error('simulated: read failed (EIO)');
            }
            return (target.getMany as (...a: unknown[]) => unknown)(...args);
          };
        const v = Reflect.get(target, prop);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
  return { state, wrap };
}

t.test('a snapshot read that fails refuses the round, and the session loads at its next op', async (t) => {
  const disk = flakyReads();
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9', workers: 2 }, { wrapDb: disk.wrap });
  const id = await api.register('a', '1');
  await api.ok('/state', { session_id: id, state: { v: 1 } });
  // Drop the actors, so the next op of the session loads its snapshot.
  daemon.pool.control(0, { t: 'die' });
  await until(() => daemon.pool.restarts === 1 && daemon.pool.alive === 2, 'the worker was replaced');

  disk.state.failing = true;
  const refused = await api.post('/state', { session_id: id, state: { v: 2 } });
  t.equal(refused.status, 503, 'refused while the snapshot cannot be read');
  t.ok(disk.state.refused > 0, 'the read failed');
  disk.state.failing = false;

  const again = await api.post('/state', { session_id: id, state: { v: 3 } });
  t.equal(again.status, 200, `taken once the disk reads again: ${JSON.stringify(again.body)}`);
  t.same((await api.get(`/session?session_id=${id}`)).body.state, { v: 3 });
  t.equal(daemon.health().queue.depth, 1 + 2, 'the create and two state updates');
});

t.test('a worker failure while a round loads a snapshot: the reload after it still catches up from the outbox', async (t) => {
  // A snapshot may be behind the outbox (activity is persisted lazily); after a worker failure the
  // first load of a session catches its recent lists up from its newest chunks. A round that was
  // loading the session when the failure came is refused: it must not count the session as caught up.
  const disk = flakyReads();
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9', workers: 2 }, { wrapDb: disk.wrap });
  const id = await api.register('a', '1');
  await api.ok('/event', { session_id: id, name: 'e1' });
  // At once (within ACTIVITY_PERSIST_MS): e1 is in the outbox, not in the snapshot's recent events.
  daemon.pool.control(0, { t: 'die' });
  await until(() => daemon.pool.restarts === 1 && daemon.pool.alive === 2, 'the worker was replaced');

  let release!: () => void;
  disk.state.hold = new Promise<void>((r) => (release = r));
  const during = api.post('/event', { session_id: id, name: 'e2' });
  await until(() => disk.state.held > 0, 'the round is loading the session');
  daemon.pool.control(1, { t: 'die' });
  await until(() => daemon.pool.restarts === 2 && daemon.pool.alive === 2, 'the other worker was replaced');
  disk.state.hold = null;
  release();
  t.equal((await during).status, 503, 'the round loading during the failure is refused');

  await api.ok('/event', { session_id: id, name: 'e3' });
  const view = (await api.get(`/session?session_id=${id}`)).body;
  t.same(
    view.events.map((e: { name: string }) => e.name),
    ['e1', 'e3'],
    'the acked events are all in the session view',
  );
  t.equal(daemon.health().queue.depth, 1 + 2);
});

t.test('an op that arrives as its idle session is passivated: the session stays usable', async (t) => {
  // passivateIdle takes the session out of the resident set and queues its passivation for the
  // next round; an op that arrives in the same loop turn joins that round and loads it again.
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9', workers: 2 });
  const id = await api.register('a', '1');
  await api.ok('/end', { session_id: id });
  const sn = daemon.directory.resolve(id)!;
  t.ok(daemon.rounds.isResident(sn));
  t.equal(daemon.rounds.passivateIdle(0), 1, 'the ended session is passivated');
  const [again] = await daemon.ingest.submit([{ kind: 'end', session_id: id, body: {} }], Date.now());
  t.equal(again, null, 'ending it again changes nothing and is no mistake');
  t.equal((await api.post('/heartbeat', { session_id: id })).status, 200, 'a late heartbeat neither');
  t.equal((await api.post('/end', { session_id: id })).status, 200);
});

t.test('a snapshot read failing as the daemon reloads its active sessions at start: they load at their next op', async (t) => {
  const dataDir = t.testdir();
  const first = await startTestDaemon(t, dataDir, { server_url: 'http://127.0.0.1:9', workers: 2 });
  const ids = [await first.api.register('a', '1'), await first.api.register('b', '1')];
  await first.close();

  const disk = flakyReads();
  disk.state.failing = true; // the start reloads every active session: those reads fail
  const { api } = await startTestDaemon(t, dataDir, { server_url: 'http://127.0.0.1:9', workers: 2 }, { wrapDb: disk.wrap });
  await until(() => disk.state.refused > 0, 'the reload at start was refused');
  disk.state.failing = false;
  for (const id of ids) {
    const res = await api.post('/event', { session_id: id, name: 'after' });
    t.equal(res.status, 200, `${id} takes ops: ${JSON.stringify(res.body)}`);
  }
});
