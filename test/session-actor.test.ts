import t from 'tap';
import { SessionActor } from '../src/actors/session-actor.js';
import { ProtocolError } from '../src/protocol/errors.js';

const settings = { recent_events_limit: 3, recent_metrics_limit: 2, heartbeat_timeout_seconds: 60, batch_interval_seconds: 5, watched_parent_pid: null };
const reg = { product: 'p', version: '1', hostname: 'h', machine_id: 'm', parent_pid: null, local_id: 'local-session-1-1', server_id: null };

t.test('a local session queues its create first, then its ops, then end', async (t) => {
  const a = SessionActor.register(1, reg, 1000, settings);
  a.apply('state', { state: { a: 1 } }, 1001);
  a.apply('state', { state: { a: 1 } }, 1002);
  a.apply('event', { name: 'e', data: { k: 1 } }, 1003);
  a.apply('metric', { name: 'm', value: 2, type: 'gauge', tags: ['t'] }, 1004);
  a.apply('end', {}, 1005);
  const { ops, parts } = a.endTurn(1005);
  t.same(parts, ['core', 'state', 'activity'], 'core (created, ended), state and, since it ended, activity persisted with the turn');
  t.same(ops.map((o) => o.k), ['create', 'state', 'event', 'metric', 'end'], 'the no-op state update is dropped');
  t.same(ops[2], { k: 'event', t: 1003, b: { name: 'e', data: { k: 1 } } }, 'receive time stamped, session_id not sent');
  t.same(ops[3]!.b, { name: 'm', type: 'gauge', value: 2, tags: ['t'] });
  t.equal(a.snapshot.active, false);
  t.equal(a.snapshot.ended_at, 1005);
  t.throws(() => a.apply('event', { name: 'late' }, 1006), ProtocolError, 'no data after end');
  a.apply('end', {}, 1007);
  a.apply('heartbeat', {}, 1007);
  a.apply('crash', { reason: 'late' }, 1007);
  t.same(a.endTurn(1007), { ops: [], parts: [] }, 'ending again, a late heartbeat or crash: accepted, nothing changes');
  t.equal(a.snapshot.crashed, false, 'an ended session is never marked crashed');
});

t.test('a session created online queues no create; recent items are bounded', async (t) => {
  const a = SessionActor.register(2, { ...reg, local_id: null, server_id: 'srv-9' }, 0, settings);
  for (let i = 0; i < 10; i++) a.apply('event', { name: `e${i}` }, i);
  for (let i = 0; i < 10; i++) a.apply('metric', { name: `m${i}`, value: i, type: 'gauge' }, i);
  const { ops, parts } = a.endTurn(10);
  t.equal(ops.length, 20);
  t.notOk(parts.includes('activity'), 'recent items are not due yet');
  t.same(a.endTurn(10, 'all').parts, ['activity'], 'persisted when asked (a read, shutdown)');
  t.same(a.snapshot.events.map((e) => e.b['name']), ['e7', 'e8', 'e9'], 'last 3 events kept');
  t.same(a.snapshot.metrics.map((e) => e.b['name']), ['m8', 'm9']);
  a.apply('event', { name: 'later' }, 20);
  t.notOk(a.endTurn(500).parts.includes('activity'));
  t.ok(a.endTurn(20 + 1000).parts.includes('activity'), 'persisted once due');
});

t.test('heartbeat bookkeeping and crash', async (t) => {
  const a = SessionActor.register(3, reg, 0, settings);
  a.apply('pause_heartbeat', {}, 10);
  t.equal(a.snapshot.heartbeat_paused, true);
  a.apply('heartbeat', {}, 20);
  t.equal(a.snapshot.heartbeat_paused, false, 'a heartbeat resumes the watch');
  t.equal(a.snapshot.last_heartbeat, 20);
  a.endTurn(25);
  a.apply('crash', { reason: 'boom' }, 30);
  const { ops } = a.endTurn(30);
  t.same(ops, [{ k: 'crash', t: 30, b: { reason: 'boom' } }]);
  t.equal(a.snapshot.crashed, true);
  t.equal(a.snapshot.active, false);
});

t.test('an actor loaded from a snapshot behind its outbox takes back what was queued after it, once', async (t) => {
  const { decodeSnapshot, encodePart } = await import('../src/actors/session-snapshot.js');
  const { encodeChunk } = await import('../src/outbox/chunk.js');
  const wide = { ...settings, recent_events_limit: 10, recent_metrics_limit: 10 };
  const a = SessionActor.register(3, reg, 10, wide);
  const chunks: Uint8Array[] = [];
  const turn = (now: number, fn: () => void, activity: 'due' | 'all' = 'due') => {
    fn();
    const { ops, parts } = a.endTurn(now, activity);
    if (ops.length) chunks.push(encodeChunk(ops));
    return parts;
  };
  turn(10, () => a.apply('event', { name: 'e1' }, 10));
  // Two events in the same millisecond, the activity persisted between them (a read asked for it).
  turn(20, () => a.apply('event', { name: 'e2' }, 20));
  t.ok(turn(20, () => a.apply('metric', { name: 'm1', value: 1, type: 'gauge' }, 20), 'all').includes('activity'));
  const persisted = encodePart(a.snapshot, 'activity');
  const core = encodePart(a.snapshot, 'core');
  turn(20, () => a.apply('event', { name: 'e3' }, 20));
  turn(30, () => a.apply('metric', { name: 'c', value: 0, delta: 2, type: 'counter' }, 30)); // aggregated: not queued
  turn(40, () => a.apply('metric', { name: 'm2', value: 2, type: 'gauge' }, 40));
  a.tick(6000, () => true); // the counter's periodic total: queued, but not a recent metric
  chunks.push(encodeChunk(a.endTurn(6000).ops));

  // The process dies: a new actor from the persisted parts, and every chunk still in the outbox.
  const b = new SessionActor(decodeSnapshot(core, undefined, undefined, persisted), wide);
  t.same(b.snapshot.events.map((e) => e.b['name']), ['e1', 'e2']);
  b.recoverActivity(chunks, 7000);
  t.same(b.snapshot.events.map((e) => e.b['name']), ['e1', 'e2', 'e3'], 'e3 taken back, e2 (same millisecond) not twice');
  t.same(b.snapshot.metrics.map((m) => m.b['name']), ['m1', 'm2'], 'the counter total is not a recent metric');
  t.equal(b.snapshot.updated_at, 6000, 'updated_at caught up with the newest queued op');
  t.ok(b.endTurn(8000).parts.includes('activity'), 'and persisted again in due time');
  b.recoverActivity(chunks, 9000);
  t.same(b.snapshot.events.map((e) => e.b['name']), ['e1', 'e2', 'e3'], 'a second catch-up adds nothing');
});

t.test('the duty tick divides batch_interval_seconds, at most 10 a second', async (t) => {
  const { dutyTickMs } = await import('../src/actors/session-actor.js');
  t.equal(dutyTickMs(5), 1000);
  t.equal(dutyTickMs(0.5), 500);
  t.equal(dutyTickMs(2), 1000);
  t.equal(Math.round(dutyTickMs(2.5)), 833, '3 ticks per interval');
  t.equal(dutyTickMs(0.01), 100, 'never more than 10 a second');
  // Aggregates go up on the tick nearest the interval, not a tick late when a tick came early.
  const a = SessionActor.register(4, reg, 0, { ...settings, batch_interval_seconds: 0.5 });
  a.apply('metric', { name: 'c', value: 0, delta: 1, type: 'counter' }, 10);
  a.tick(499, () => true);
  t.same(a.endTurn(499).ops.filter((o) => o.k === 'metric').length, 1, 'flushed at 499 ms of a 500 ms interval');
});
