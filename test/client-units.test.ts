/** Pure pieces of src/client: backoff, the queue, the op buffer's ack/welcome bookkeeping, URLs, exception fields. */
import t from 'tap';
import { Backoff } from '../src/client/backoff.js';
import { exceptionFields } from '../src/client/exception.js';
import { OpBuffer, type OpFrame, type Settle } from '../src/client/op-buffer.js';
import { Queue } from '../src/client/queue.js';
import { buildWsUrl } from '../src/client/url.js';
import type { DataCatError } from '../src/client/errors.js';
import type { OpBody } from '../src/client/wire.js';

t.test('backoff: exponential from base, equal jitter, capped, reset', async (t) => {
  const low = new Backoff({ baseMs: 100, maxMs: 5000, random: () => 0 });
  t.same([1, 2, 3, 4, 5, 6, 7, 8].map(() => low.next()), [50, 100, 200, 400, 800, 1600, 2500, 2500], 'the low end: half of each step, capped');
  const high = new Backoff({ baseMs: 100, maxMs: 5000, random: () => 0.999999 });
  t.same([1, 2, 3, 4, 5, 6, 7, 8].map(() => high.next()), [100, 200, 400, 800, 1600, 3200, 5000, 5000], 'the high end: each step, capped');
  t.equal(high.attempts, 8);
  high.reset();
  t.equal(high.next(), 100, 'reset: from the base again');
  const long = new Backoff({ baseMs: 100, maxMs: 5000 });
  for (let i = 0; i < 2000; i++) long.next();
  const d = long.next();
  t.ok(d >= 2500 && d <= 5000, 'never Infinity after many attempts');
  t.throws(() => new Backoff({ baseMs: 0, maxMs: 10 }), RangeError);
  t.throws(() => new Backoff({ baseMs: 100, maxMs: 10 }), RangeError);
});

t.test('queue: FIFO with take, prepend, drain and compaction', async (t) => {
  const q = new Queue<number>();
  for (let i = 0; i < 5000; i++) q.push(i);
  t.equal(q.shift(), 0);
  t.same(q.take(3), [1, 2, 3]);
  const got: Array<number | undefined> = [];
  for (let i = 4; i < 3000; i++) got.push(q.shift());
  t.same(got, Array.from({ length: 2996 }, (_, i) => i + 4), 'in order across compactions');
  t.equal(q.length, 2000);
  q.prepend([-2, -1]);
  t.equal(q.peek(), -2);
  t.equal(q.length, 2002);
  const all = q.drain();
  t.equal(all.length, 2002);
  t.same(all.slice(0, 3), [-2, -1, 3000]);
  t.equal(q.length, 0);
  t.equal(q.shift(), undefined);
  t.same(q.take(10), []);
});

/** Queues an op: a session op of `s` by default; a register has no session. */
function enq(b: OpBuffer, k: OpBody['k'] = 'event', settle?: Settle, sessionId: string | undefined = k === 'register' ? undefined : 's'): void {
  b.enqueue({ k }, sessionId, settle);
}

/** Takes and "sends" frames; returns them. */
function send(b: OpBuffer, max: number, perFrame = 1000): OpFrame[] {
  const frames = b.take(max, perFrame);
  for (const f of frames) b.markSent(f.ops);
  return frames;
}

const seqs = (frames: OpFrame[]): number[] => frames.flatMap((f) => f.ops.map((o) => o.seq));
/** A frame as [kind, session, first q, last q]. */
const shape = (f: OpFrame): [string, string | undefined, number, number] => [f.kind, f.kind === 'batch' ? f.sessionId : undefined, f.ops[0]!.seq, f.ops.at(-1)!.seq];

t.test('op buffer: numbering at take time, cumulative acks, errors, registered ids', async (t) => {
  const refused: DataCatError[] = [];
  const b = new OpBuffer((e) => refused.push(e));
  const outcomes: Array<[string, unknown]> = [];
  enq(b, 'register', (err, id) => outcomes.push(['reg', err?.code ?? id]));
  enq(b);
  enq(b);
  enq(b, 'end', (err) => outcomes.push(['end', err?.code ?? 'ok']));
  t.equal(b.outstanding, 4);
  t.equal(b.seq, 1, 'nothing numbered yet');
  const frames = send(b, 3);
  t.same(frames.map(shape), [
    ['ops', undefined, 1, 1],
    ['batch', 's', 2, 3],
  ], 'the register in an ops frame, the session ops in a batch');
  t.equal(b.unackedCount, 3);
  t.equal(b.queuedCount, 1);
  t.equal(b.ack(2, [], [[1, 'sid-1']]), 2);
  t.same(outcomes, [['reg', 'sid-1']]);
  t.equal(b.oldestOutstanding, 3);
  send(b, 10);
  t.equal(b.ack(4, [[3, 'too_long', 'x'], [4, 'session_ended', 'y']]), 2);
  t.match(refused, [{ code: 'too_long', seq: 3, op: { q: 3, k: 'event', session_id: 's' } }], 'an op without a callback: reported to the refused hook, as an ops-frame op');
  t.same(outcomes[1], ['end', 'session_ended'], 'an op with a callback: its callback gets the error');
  t.equal(b.oldestOutstanding, 5, 'past lastEnqueued: everything settled');
  t.equal(b.lastEnqueued, 4);
  t.equal(b.persistedCount, 2);
  t.equal(b.refusedCount, 2);
  b.ack(4, [[null, 'invalid_field', 'no q']]);
  t.match(refused.at(-1), { code: 'invalid_field', seq: undefined }, 'errors without a seq are reported too');
});

t.test('op buffer: ops taken together are grouped per session, numbered contiguously per group, split at perFrame', async (t) => {
  const b = new OpBuffer(() => undefined);
  const order: string[] = [];
  // Interleaved: a, b, register, a, c, b, a, register, c ...
  const plan: Array<[OpBody['k'], string | undefined]> = [
    ['event', 'a'],
    ['event', 'b'],
    ['register', undefined],
    ['metric', 'a'],
    ['event', 'c'],
    ['state', 'b'],
    ['heartbeat', 'a'],
    ['register', undefined],
    ['end', 'c'],
  ];
  for (const [k, sid] of plan) {
    order.push(`${sid}:${k}`);
    b.enqueue({ k, tag: order.length }, sid);
  }
  const frames = b.take(100, 1000);
  t.same(frames.map(shape), [
    ['batch', 'a', 1, 3],
    ['batch', 'b', 4, 5],
    ['ops', undefined, 6, 7],
    ['batch', 'c', 8, 9],
  ], 'one frame per session, in order of first appearance; registers together in an ops frame');
  t.same(
    frames.map((f) => f.ops.map((o) => o.body['tag'])),
    [[1, 4, 7], [2, 6], [3, 8], [5, 9]],
    "each session's ops in the order logged",
  );
  t.ok(frames.every((f) => f.ops.every((o) => o.batched === (f.kind === 'batch'))), 'each op knows the kind of frame it went in');

  const big = new OpBuffer(() => undefined);
  for (let i = 0; i < 25; i++) big.enqueue({ k: 'event', i }, i % 2 ? 'odd' : 'even');
  t.same(big.take(100, 5).map(shape), [
    ['batch', 'even', 1, 5],
    ['batch', 'even', 6, 10],
    ['batch', 'even', 11, 13],
    ['batch', 'odd', 14, 18],
    ['batch', 'odd', 19, 23],
    ['batch', 'odd', 24, 25],
  ], 'a group larger than perFrame: several batches of contiguous numbers');
});

t.test('op buffer: flush bookkeeping stays right when numbering order differs from enqueue order', async (t) => {
  const b = new OpBuffer(() => undefined);
  b.enqueue({ k: 'event' }, 'a'); // n1
  b.enqueue({ k: 'event' }, 'b'); // n2
  b.enqueue({ k: 'event' }, 'a'); // n3
  b.enqueue({ k: 'event' }, 'b'); // n4
  t.same(send(b, 10).map(shape), [
    ['batch', 'a', 1, 2],
    ['batch', 'b', 3, 4],
  ]);
  // q1 = n1, q2 = n3, q3 = n2, q4 = n4
  b.ack(1);
  t.equal(b.oldestOutstanding, 2);
  b.ack(2);
  t.equal(b.oldestOutstanding, 2, 'n3 is settled, n2 is not: a flush of n ≤ 3 must still wait');
  b.ack(3);
  t.equal(b.oldestOutstanding, 4, 'n2 settled: the floor jumps over n3');
  b.ack(4);
  t.equal(b.oldestOutstanding, 5);
  t.equal(b.outstanding, 0);
});

t.test('op buffer: welcome drops what acked covers, resends the rest first with their numbers and frame kinds, numbers new ops after acked', async (t) => {
  const b = new OpBuffer(() => undefined);
  const ids: unknown[] = [];
  enq(b, 'register', (err, id) => ids.push(err?.code ?? id));
  for (let i = 0; i < 5; i++) enq(b);
  b.welcome(0, []);
  send(b, 6);
  enq(b); // new, unnumbered
  // Connection lost; the next welcome says 1..3 are persisted, and names the register.
  t.equal(b.welcome(3, [[1, 'sid-x']]), 3, 'three to resend');
  t.same(ids, ['sid-x'], 'the register answer recovered from registered');
  t.equal(b.unackedCount, 0);
  const again = b.take(10, 1000);
  t.same(seqs(again), [4, 5, 6, 7], 'resends first, original numbers, then the new op');
  t.same(again.map(shape), [
    ['batch', 's', 4, 6],
    ['batch', 's', 7, 7],
  ], 'the rest of the first batch goes as one batch again; the new op in a batch of its own');

  const b2 = new OpBuffer(() => undefined);
  enq(b2);
  t.equal(b2.welcome(1000, []), 0);
  t.same(seqs(b2.take(1, 1000)), [1001], 'a client id with history: new numbers after acked');

  const b3 = new OpBuffer(() => undefined);
  const out: unknown[] = [];
  enq(b3, 'register', (err) => out.push(err?.code));
  send(b3, 1);
  b3.welcome(1, []);
  t.same(out, ['outcome_unknown'], 'a register the welcome covers but does not name');
  const b4 = new OpBuffer(() => undefined);
  const ended: unknown[] = [];
  enq(b4, 'end', (err) => ended.push(err?.code));
  enq(b4);
  send(b4, 2);
  t.equal(b4.abandon({ code: 'closed' } as DataCatError), 2);
  t.same(ended, ['closed']);
  t.equal(b4.outstanding, 0);
});


t.test('op buffer: resends regroup by session and contiguous numbers; ops-frame ops go in ops frames again', async (t) => {
  const b = new OpBuffer(() => undefined);
  enq(b, 'register');
  for (const sid of ['a', 'b', 'a', 'b', 'a', 'c']) b.enqueue({ k: 'event' }, sid);
  send(b, 100, 2);
  // register q1 | a: q2-3, q4 | b: q5-6 | c: q7
  t.equal(b.welcome(0, []), 7, 'nothing acked: everything resent');
  const frames = b.take(100, 2);
  t.same(frames.map(shape), [
    ['ops', undefined, 1, 1],
    ['batch', 'a', 2, 3],
    ['batch', 'a', 4, 4],
    ['batch', 'b', 5, 6],
    ['batch', 'c', 7, 7],
  ], 'the same frames as the first time, within perFrame');
  for (const f of frames) b.markSent(f.ops);
  t.equal(b.welcome(0, []), 7);
  t.same(b.take(100, 1000).map(shape), [
    ['ops', undefined, 1, 1],
    ['batch', 'a', 2, 4],
    ['batch', 'b', 5, 6],
    ['batch', 'c', 7, 7],
  ], 'with a larger perFrame, contiguous ops of one session merge into one batch');
  const cut = new OpBuffer(() => undefined);
  for (let i = 0; i < 6; i++) cut.enqueue({ k: 'event' }, 's');
  send(cut, 6);
  cut.welcome(0, []);
  t.same(cut.take(4, 1000).map(shape), [['batch', 's', 1, 4]], 'a resend cut by the window');
  t.same(cut.take(4, 1000).map(shape), [['batch', 's', 5, 6]], 'goes on from where it was cut');
});

t.test('websocket url from a base url', async (t) => {
  t.equal(buildWsUrl('ws://127.0.0.1:8079', 'id-1'), 'ws://127.0.0.1:8079/ws?client_id=id-1');
  t.equal(buildWsUrl('ws://127.0.0.1:8079/', 'id-1'), 'ws://127.0.0.1:8079/ws?client_id=id-1');
  t.equal(buildWsUrl('ws://127.0.0.1:8079/ws', 'id-1'), 'ws://127.0.0.1:8079/ws?client_id=id-1');
  t.equal(buildWsUrl('ws://127.0.0.1:8079/ws/', 'id-1'), 'ws://127.0.0.1:8079/ws?client_id=id-1', 'the daemon serves exactly /ws');
  t.equal(buildWsUrl('http://localhost:8079', 'a'), 'ws://localhost:8079/ws?client_id=a');
  t.equal(buildWsUrl('https://example.com/datacat/', 'a'), 'wss://example.com/datacat/ws?client_id=a');
  t.equal(buildWsUrl('ws://h:1/ws?client_id=old&x=1', 'new'), 'ws://h:1/ws?client_id=new&x=1');
  t.throws(() => buildWsUrl('ftp://h', 'a'), TypeError);
});

t.test('exception fields: Errors with stack and location; anything else that can be thrown', async (t) => {
  function thrower(): never {
    throw new RangeError('out of range');
  }
  let err: unknown;
  try {
    thrower();
  } catch (e) {
    err = e;
  }
  const f = exceptionFields(err);
  t.match(f, { exception_type: 'RangeError', exception_msg: 'out of range', source_function: 'thrower', source_file: /client-units\.test\.ts$/, source_line: Number });
  t.match(f.stacktrace![0], /^RangeError: out of range/);
  t.same(exceptionFields('plain string'), { exception_type: 'string', exception_msg: 'plain string' });
  t.same(exceptionFields(null), { exception_type: 'null', exception_msg: 'null' });
  t.same(exceptionFields({ a: 1 }), { exception_type: 'Object', exception_msg: '[object Object]' });
  const hostile = {
    toString() {
      throw new Error('no');
    },
  };
  t.same(exceptionFields(hostile), { exception_type: 'Object', exception_msg: '' }, 'never throws');
  class MyError extends Error {}
  t.equal(exceptionFields(new MyError('x')).exception_type, 'MyError', "a subclass that keeps the name 'Error': its class name (as Python's type(e).__name__)");
  const named = new Error('y');
  named.name = 'AbortError';
  t.equal(exceptionFields(named).exception_type, 'AbortError', 'an explicit name wins');
});

t.test('connect refuses delay options past what a Node timer can wait (2^31-1 ms): they would fire after 1 ms', async (t) => {
  const { connect } = await import('../dist/src/client/index.js');
  for (const key of ['reconnectBaseMs', 'reconnectMaxMs', 'connectTimeoutMs', 'pingIntervalMs'])
    t.throws(() => connect({ url: 'ws://127.0.0.1:9', [key]: 2 ** 31 }), RangeError, key);
});
