import t from 'tap';
import type { Db } from '../dist/src/outbox/store.js';
import { clientMarkKey } from '../dist/src/outbox/keys.js';
import { unpack } from '../dist/src/protocol/codec.js';
import { startTestDaemon, until } from './support/daemon-harness.js';
import { RawWs } from './support/raw-ws.js';

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
  // Drop the actors, so the session is loaded from its snapshot again: the daemon reloads its
  // active sessions once the failure is over, and while that read fails, at their next op.
  disk.state.failing = true;
  daemon.pool.control(0, { t: 'die' });
  await until(() => daemon.pool.restarts === 1 && daemon.pool.alive === 2, 'the worker was replaced');

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
  // The reload of the active sessions after it is held while it reads the snapshot, and e2's
  // round waits behind it.
  let release!: () => void;
  disk.state.hold = new Promise<void>((r) => (release = r));
  daemon.pool.control(0, { t: 'die' });
  await until(() => daemon.pool.restarts === 1 && daemon.pool.alive === 2, 'the worker was replaced');
  await until(() => disk.state.held > 0, 'a round is loading the session');
  const during = api.post('/event', { session_id: id, name: 'e2' });
  await new Promise((r) => setTimeout(r, 50)); // e2's round is formed, behind the loading one
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

t.test('a WebSocket register refused in a worker failure is not named in the next welcome, nor stored', async (t) => {
  // The register's round waits in a busy worker while the other dies, and a new connection of
  // the same client id waits for it to settle: its welcome must not name a session that was
  // never persisted (its id is unknown to the daemon), and the mark must not store it.
  const { api, url, daemon } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9', workers: 2 });
  await api.register('a', '1');
  const slot = daemon.pool.slotOf(daemon.commits.counters.sessions + 1); // where the register's session goes
  const first = await RawWs.open(url, 'c');
  await first.welcome();
  daemon.pool.control(slot, { t: 'stall', ms: 1500 });
  first.send({ t: 'ops', ops: [{ q: 1, k: 'register', product: 'p', version: '1' }] });
  await new Promise((r) => setTimeout(r, 100)); // its round is posted to the busy worker
  const replacing = RawWs.open(url, 'c');
  await new Promise((r) => setTimeout(r, 50)); // the new connection waits for the register to settle
  daemon.pool.control(1 - slot, { t: 'die' });
  const second = await replacing;
  const welcome = await second.welcome();
  t.equal(welcome.acked, 0, 'the register was refused');
  t.same(welcome.registered, [], 'and its session is not named: it does not exist');

  const id = (await (async () => {
    second.send({ t: 'ops', ops: [{ q: 1, k: 'register', product: 'p', version: '1' }] });
    const ack = await second.acked(1);
    return ack.find((f) => f.registered)!.registered;
  })())[0][1];
  t.equal((await api.get(`/session?session_id=${id}`)).status, 200, 'the resent register made a session');
  const stored = unpack((await daemon.db.get(clientMarkKey('c')))!) as { hwm: number; regs: Array<[number, string]> };
  t.same(stored, { hwm: 1, regs: [[1, id]] }, 'the stored mark names only the session that exists');
});
