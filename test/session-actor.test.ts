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
  t.same(parts, ['core', 'state'], 'core (created, ended) and state persisted with the turn; activity later');
  t.same(ops.map((o) => o.k), ['create', 'state', 'event', 'metric', 'end'], 'the no-op state update is dropped');
  t.same(ops[2], { k: 'event', t: 1003, b: { name: 'e', data: { k: 1 } } }, 'receive time stamped, session_id not sent');
  t.same(ops[3]!.b, { name: 'm', type: 'gauge', value: 2, tags: ['t'] });
  t.equal(a.snapshot.active, false);
  t.equal(a.snapshot.ended_at, 1005);
  t.throws(() => a.apply('event', { name: 'late' }, 1006), ProtocolError, 'no ops after end');
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
