/**
 * The TypeScript client (src/client) against the in-process fake daemon: the API, what goes on
 * the wire, batching, the in-flight window, backpressure, flush/close, errors and remaps.
 * Reconnects and resends are in client-reconnect.test.ts.
 */
import t from 'tap';
import { connect, DataCatError, type Client, type ClientOptions } from '../src/client/index.js';
import { sleep, startFakeWsDaemon, until, type FakeWsDaemon, type FakeWsDaemonOptions } from './support/fake-ws-daemon.js';

/** The assertions helpers need (a subtest has them all). */
type Tap = typeof t;

async function setup(
  t: Pick<Tap, 'teardown'>,
  fakeOptions: FakeWsDaemonOptions = {},
  clientOptions: Partial<ClientOptions> = {},
): Promise<{ fake: FakeWsDaemon; client: Client; errors: DataCatError[] }> {
  const fake = await startFakeWsDaemon(fakeOptions);
  const client = connect({ url: fake.url, ...clientOptions });
  const errors: DataCatError[] = [];
  client.on('error', (e) => errors.push(e));
  t.teardown(async () => {
    await client.close({ timeoutMs: 1000 }).catch(() => undefined);
    await fake.close();
  });
  return { fake, client, errors };
}

/** Ops of one kind the fake persisted for this client. */
function persisted(fake: FakeWsDaemon, client: Client, k?: string): Array<Record<string, unknown>> {
  return fake
    .client(client.clientId)
    .persisted.filter((p) => k === undefined || p.k === k)
    .map((p) => p.op);
}

t.test('register, every op kind with DataCat wire names, getDetails, end, close', async (t) => {
  const { fake, client, errors } = await setup(t);
  const connected: unknown[] = [];
  client.on('connected', (e) => connected.push(e));
  t.match(client.clientId, /^[0-9a-f-]{36}$/, 'a random UUID client id');

  const session = await client.register({ product: 'game', version: '1.2', parentPid: 42, hostname: 'h', machineId: 'm' });
  t.match(session.id, /^local-session-\d+-\d+$/, 'the id from the ack');
  t.same(connected, [{ clientId: client.clientId, acked: 0, resent: 0, version: 'fake-0' }], 'connected event');
  t.match(fake.upgrades[0]!.url, new RegExp(`^/ws\\?client_id=${client.clientId}$`), '/ws?client_id= appended to the url');

  t.equal(session.updateState({ level: 1, player: { hp: 10 } }), true, 'high-rate methods return true below the high-water mark');
  session.logEvent('boot', {
    category: 'info',
    group: 'g',
    labels: ['a'],
    message: 'hello',
    data: { x: 1 },
    stacktrace: ['l1'],
    exceptionType: 'T',
    exceptionMsg: 'M',
    sourceFile: 'f.ts',
    sourceLine: 3,
    sourceFunction: 'fn',
  });
  session.logMetric('raw', 2.5, { type: 'counter', tags: ['t'], count: 2, unit: 'u', metadata: { a: 1 }, delta: 1 });
  session.logGauge('fps', 59.5, { unit: 'fps', tags: ['gpu'] });
  session.logCounter('kills');
  session.logCounter('coins', 5, { tags: ['gold'] });
  session.logHistogram('latency', 0.2, { unit: 'seconds', buckets: [0.1, 0.5, Infinity], metadata: { src: 'net' } });
  session.logTimer('load', 1.25, { count: 1, tags: ['disk'] });
  session.heartbeat();
  session.pauseHeartbeatMonitoring();
  session.resumeHeartbeatMonitoring();
  session.logException(new TypeError('bad thing'), { data: { retry: true } });

  const details = await session.getDetails();
  t.equal(details.id, session.id);
  t.same(details.state, { level: 1, player: { hp: 10 } }, 'getDetails sees every op logged before it');
  t.equal(details.events.length, 2);
  t.equal(details.metrics.length, 6);

  const [register] = persisted(fake, client, 'register');
  t.same(register, { q: 1, k: 'register', product: 'game', version: '1.2', parent_pid: 42, hostname: 'h', machine_id: 'm' });
  const [boot, exc] = persisted(fake, client, 'event');
  t.same(boot, {
    q: 3,
    k: 'event',
    session_id: session.id,
    name: 'boot',
    category: 'info',
    group: 'g',
    labels: ['a'],
    message: 'hello',
    data: { x: 1 },
    stacktrace: ['l1'],
    exception_type: 'T',
    exception_msg: 'M',
    source_file: 'f.ts',
    source_line: 3,
    source_function: 'fn',
  });
  t.match(exc, {
    name: 'exception',
    category: 'error',
    message: 'bad thing',
    exception_type: 'TypeError',
    exception_msg: 'bad thing',
    data: { retry: true },
    source_file: /client\.test\.ts$/,
    source_line: Number,
  });
  t.match((exc!['stacktrace'] as string[])[0], /^TypeError: bad thing/, 'stack lines, header first');
  const metrics = persisted(fake, client, 'metric').map(({ q: _q, k: _k, session_id: _s, ...rest }) => rest);
  t.same(metrics, [
    { name: 'raw', value: 2.5, type: 'counter', delta: 1, count: 2, unit: 'u', tags: ['t'], metadata: { a: 1 } },
    { name: 'fps', value: 59.5, type: 'gauge', unit: 'fps', tags: ['gpu'] },
    { name: 'kills', value: 0, type: 'counter', delta: 1 },
    { name: 'coins', value: 0, type: 'counter', delta: 5, tags: ['gold'] },
    { name: 'latency', value: 0.2, type: 'histogram', unit: 'seconds', metadata: { src: 'net', buckets: [0.1, 0.5, 'inf'] } },
    { name: 'load', value: 1.25, type: 'timer', count: 1, unit: 'seconds', tags: ['disk'] },
  ]);
  t.same(
    persisted(fake, client).map((o) => o['k']),
    ['register', 'state', 'event', 'metric', 'metric', 'metric', 'metric', 'metric', 'metric', 'heartbeat', 'pause_heartbeat', 'resume_heartbeat', 'event'],
    'in the order logged',
  );
  t.same(
    persisted(fake, client).map((o) => o['q']),
    Array.from({ length: 13 }, (_, i) => i + 1),
    'numbered 1, 2, 3... without gaps',
  );

  await session.end();
  t.equal(fake.session(session.id)!.active, false, 'end resolves once the end op is acked');
  t.equal(session.ended, true);
  t.throws(() => session.logEvent('late'), { code: 'session_ended' }, 'ops after end throw');
  t.equal(await session.end(), undefined, 'end again: the same settled promise');

  await client.close();
  t.equal(fake.closes.at(-1)!.code, 1000, 'closed cleanly (1000)');
  t.throws(() => session.heartbeat(), { name: 'DataCatError' }, 'methods throw after close');
  await t.rejects(client.register({ product: 'p', version: '1' }), { code: 'closed' });
  await t.rejects(client.flush(), { code: 'closed' });
  t.same(errors, [], 'no errors');
  t.equal(client.stats.errors, 0);
});

t.test('batching: ops of one turn travel together; frames respect maxOpsPerFrame and the welcome limit', async (t) => {
  const { fake, client } = await setup(t, { maxOpsPerFrame: 300 });
  const session = await client.register({ product: 'p', version: '1' });
  const framesBefore = fake.frames.length;
  for (let i = 0; i < 10; i++) session.logEvent('small', { data: { i } });
  await client.flush();
  t.equal(fake.frames.length - framesBefore, 1, '10 ops in one turn → one frame');
  t.equal(fake.frames.at(-1)!.kind, 'batch', "a session's ops go in a batch frame");

  const start = fake.frames.length;
  for (let i = 0; i < 5000; i++) session.logCounter('c');
  await client.flush();
  const frames = fake.frames.slice(start);
  t.equal(frames.length, Math.ceil(5000 / 300), '5000 ops → 17 frames: min(1000, the welcome max_ops_per_frame=300) per frame');
  t.ok(frames.every((f) => f.ops <= 300), 'no frame above the welcome limit');
  const qs = fake.received.map((r) => r.q);
  t.ok(
    qs.every((q, i) => i === 0 || q === qs[i - 1]! + 1),
    'strictly increasing numbers, no gaps',
  );
  t.equal(client.stats.framesSent, fake.frames.length);

  // An explicit maxOpsPerFrame below the welcome's limit wins.
  const small = connect({ url: fake.url, maxOpsPerFrame: 50 });
  t.teardown(() => small.close());
  const s2 = await small.register({ product: 'p', version: '1' });
  const before = fake.frames.length;
  for (let i = 0; i < 500; i++) s2.heartbeat();
  await small.flush();
  t.equal(fake.frames.length - before, 10, '500 ops, 50 per frame');
});

t.test('batch frames: ops of interleaved sessions go as one batch per session per turn, each in the order logged', async (t) => {
  const { fake, client, errors } = await setup(t);
  const sessions = await Promise.all([0, 1, 2, 3, 4].map(() => client.register({ product: 'p', version: '1' })));
  t.ok(
    fake.frames.every((f) => f.kind === 'ops'),
    'registers go in ops frames',
  );
  const start = fake.frames.length;
  const firstReceived = fake.received.length;
  for (let i = 0; i < 40; i++) for (const s of sessions) s.logEvent('e', { data: { i } });
  // A register in the same turn: an ops frame beside the batches.
  const late = client.register({ product: 'p', version: '2' });
  await client.flush();
  await late;
  const frames = fake.frames.slice(start);
  t.same(
    frames.map((f) => [f.kind, f.sessionId, f.ops]),
    [...sessions.map((s) => ['batch', s.id, 40]), ['ops', undefined, 1]],
    'five batches of 40 (one per session, in order of first appearance), then the register',
  );
  t.ok(
    frames.every((f, i) => i === 0 || f.firstQ === frames[i - 1]!.lastQ + 1),
    'each batch numbered contiguously, after the one before',
  );
  const got = fake.received.slice(firstReceived);
  t.ok(
    got.filter((r) => r.frame === 'batch').every((r) => !('q' in r.raw) && !('session_id' in r.raw) && Object.keys(r.raw)[0] === 'k'),
    'ops inside a batch carry neither q nor session_id; k first',
  );
  for (const s of sessions) {
    t.same(
      fake.session(s.id)!.events.map((e) => (e['data'] as { i: number }).i),
      Array.from({ length: 40 }, (_, i) => i),
      `session ${s.id}: every event once, in the order logged`,
    );
  }
  t.same(errors, []);

  // More than a frame's worth in one synchronous loop: full frames go out while logging, and
  // every batch stays within the limit and holds one session's ops in order.
  const small = connect({ url: fake.url, maxOpsPerFrame: 300 });
  t.teardown(() => small.close());
  const three = await Promise.all([0, 1, 2].map(() => small.register({ product: 'p', version: '1' })));
  const from = fake.frames.length;
  for (let i = 0; i < 2000; i++) for (const s of three) s.logCounter('c', i);
  await small.flush();
  const batches = fake.frames.slice(from);
  t.ok(
    batches.every((f) => f.kind === 'batch' && f.ops <= 300),
    `${batches.length} batches, none above 300 ops`,
  );
  t.equal(
    batches.reduce((n, f) => n + f.ops, 0),
    6000,
  );
  // A round goes out when one session has 300 waiting: 300 + 299 + 299 ops; 2000 per session → 7 rounds.
  t.ok(batches.length <= 21 && batches.filter((f) => f.ops >= 299).length >= 18, `full batches: frames go out while logging once one session has a full one (${batches.length})`);
  for (const s of three) {
    t.same(
      fake.session(s.id)!.metrics.map((m) => m['delta']),
      Array.from({ length: 2000 }, (_, i) => i),
      `session ${s.id}: in order`,
    );
  }
  const qs = fake.received.filter((r) => r.clientId === small.clientId).map((r) => r.q);
  t.same(qs, Array.from({ length: 3 + 6000 }, (_, i) => i + 1), 'numbers on the wire: increasing, no gaps');
});

t.test('a per-op error inside a batch names the right seq and op', async (t) => {
  const { fake, client, errors } = await setup(t, {
    refuse: (op) => (op.op['name'] === 'bad' ? ['invalid_field', 'name "bad" is refused by the test'] : null),
  });
  const [a, b, c] = await Promise.all([0, 1, 2].map(() => client.register({ product: 'p', version: '1' })));
  // One turn: a gets q 4-6, b gets q 7-9, c gets q 10-11.
  a!.logEvent('ok', { data: { n: 0 } });
  b!.logEvent('ok', { data: { n: 1 } });
  c!.logEvent('ok', { data: { n: 2 } });
  b!.logEvent('bad', { data: { n: 3 } });
  a!.logEvent('bad', { data: { n: 4 } });
  c!.logEvent('ok', { data: { n: 5 } });
  b!.logEvent('ok', { data: { n: 6 } });
  a!.logEvent('ok', { data: { n: 7 } });
  await client.flush();
  t.same(
    fake.frames.slice(-3).map((f) => [f.sessionId, f.firstQ, f.lastQ]),
    [
      [a!.id, 4, 6],
      [b!.id, 7, 9],
      [c!.id, 10, 11],
    ],
  );
  t.match(errors, [
    { code: 'invalid_field', seq: 5, op: { q: 5, k: 'event', session_id: a!.id, name: 'bad', data: { n: 4 } } },
    { code: 'invalid_field', seq: 8, op: { q: 8, k: 'event', session_id: b!.id, name: 'bad', data: { n: 3 } } },
  ]);
  t.equal(errors.length, 2);
  t.same(
    fake.session(a!.id)!.events.map((e) => (e['data'] as { n: number }).n),
    [0, 7],
  );
  t.same(
    fake.session(b!.id)!.events.map((e) => (e['data'] as { n: number }).n),
    [1, 6],
    'the ops around a refused one in its batch are persisted',
  );
  t.equal(client.stats.opsRefused, 2);
  t.equal(client.stats.opsAcked, 3 + 6);

  // An end refused inside a batch rejects its promise with the seq; ending an ended session is not refused.
  const ended = await client.register({ product: 'p', version: '1' });
  await ended.end();
  const again = client.attach(ended.id);
  again.logEvent('late');
  await again.end();
  t.match(errors.at(-1), { code: 'session_ended', op: { k: 'event', name: 'late', session_id: ended.id } });
  const nobody = client.attach('local-session-1-999');
  await t.rejects(nobody.end(), { code: 'unknown_session', seq: Number });
});

t.test('sequence numbers start after the persisted high-water mark of the client id; nothing is sent before the welcome', async (t) => {
  const { fake } = await setup(t);
  fake.client('producer-7').hwm = 1000; // a previous life of this producer
  fake.holdWelcome();
  const client = connect({ url: fake.url, clientId: 'producer-7' });
  t.teardown(() => client.close({ timeoutMs: 500 }).catch(() => undefined));
  const registering = client.register({ product: 'p', version: '1' });
  await until(() => fake.live.size === 2, 'the connection (beside the one setup() made)');
  await sleep(50);
  t.equal(fake.received.length, 0, 'no op before the welcome');
  fake.releaseWelcome();
  const session = await registering;
  session.logEvent('e');
  await client.flush();
  t.same(
    fake.received.map((r) => r.q),
    [1001, 1002],
    'numbered after acked (docs/protocol.md, "Resending", step 3)',
  );
});

t.test('the in-flight window: never more than maxInflightOps unacked; sending resumes as acks arrive', async (t) => {
  const { fake, client } = await setup(t, {}, { maxInflightOps: 500, maxOpsPerFrame: 200 });
  const session = await client.register({ product: 'p', version: '1' });
  fake.holdAcks();
  for (let i = 0; i < 3000; i++) session.logEvent('e', { data: { i } });
  await until(() => fake.received.length >= 501, 'a full window');
  await sleep(30);
  t.equal(fake.received.length, 1 + 500, 'exactly one window of ops on the wire while acks are held');
  t.equal(client.unacked, 500);
  t.equal(client.buffered, 2500);
  fake.releaseAcks();
  await client.flush();
  t.equal(fake.client(client.clientId).persisted.length, 3001, 'everything delivered');
  t.ok(fake.maxUnackedSeen <= 500, `the fake never saw more than 500 unacked (saw ${fake.maxUnackedSeen})`);

  // With slow acks the window keeps the pipe full without passing its bound.
  fake.ackDelayMs = 3;
  fake.maxUnackedSeen = 0;
  let maxUnacked = 0;
  for (let i = 0; i < 20_000; i++) {
    if (!session.logCounter('c')) await client.waitForCapacity();
    maxUnacked = Math.max(maxUnacked, client.unacked);
  }
  await client.flush();
  t.ok(maxUnacked <= 500, `the client never held more than the window (max ${maxUnacked})`);
  t.equal(fake.maxUnackedSeen, 500, 'the window was used, and never exceeded');
});

t.test('backpressure: false past highWaterMark; waitForCapacity resolves at the low-water mark', async (t) => {
  const { fake, client } = await setup(t, {}, { highWaterMark: 100 });
  const session = await client.register({ product: 'p', version: '1' });
  fake.holdAcks();
  const results: boolean[] = [];
  for (let i = 0; i < 101; i++) results.push(session.heartbeat());
  t.equal(results.filter(Boolean).length, 100, 'true up to the high-water mark');
  t.equal(results[100], false, 'false once buffered + unacked exceed it');
  t.equal(session.heartbeat(), false, 'still false');
  let resolved = false;
  const waiting = client.waitForCapacity().then(() => (resolved = true));
  await sleep(30);
  t.equal(resolved, false, 'no capacity while nothing is acked');
  fake.releaseAcks();
  await waiting;
  t.ok(client.buffered + client.unacked <= 50, 'resolved at or below highWaterMark / 2');
  await t.resolves(client.waitForCapacity(), 'resolves at once when there is capacity');
});

t.test('flush resolves only when everything queued before it is acked', async (t) => {
  const { fake, client } = await setup(t);
  await t.resolves(client.flush(), 'nothing queued: resolves at once');
  const session = await client.register({ product: 'p', version: '1' });
  fake.holdAcks();
  session.logEvent('a');
  let first = false;
  const f1 = client.flush().then(() => (first = true));
  session.logEvent('b');
  await until(() => fake.received.length === 3, 'ops on the wire');
  await sleep(30);
  t.equal(first, false, 'sent is not enough: flush waits for the ack');
  fake.releaseAcks();
  await f1;
  await client.flush();
  t.equal(fake.client(client.clientId).persisted.length, 3);
});

t.test('close flushes first; with a timeout it gives up, closes, and rejects', async (t) => {
  const { fake, client } = await setup(t);
  const session = await client.register({ product: 'p', version: '1' });
  fake.holdAcks();
  for (let i = 0; i < 10; i++) session.logEvent('e');
  const ending = session.end();
  const closing = client.close();
  await t.rejects(client.register({ product: 'p', version: '1' }), { code: 'closed' }, 'new ops throw as soon as close() is called');
  await sleep(30);
  t.equal(fake.live.size, 1, 'still connected while ops are unacked');
  fake.releaseAcks();
  await closing;
  await ending;
  t.equal(fake.client(client.clientId).persisted.length, 12, 'everything persisted before the close');
  t.equal(client.connected, false);
  t.equal(await client.close(), undefined, 'close again: resolves');

  const c2 = connect({ url: fake.url });
  const s2 = await c2.register({ product: 'p', version: '1' });
  fake.holdAcks();
  s2.logEvent('never acked');
  const otherSession = t.rejects(c2.register({ product: 'p', version: '1' }), { code: 'closed' }, 'what waited on an ack is rejected');
  s2.end(); // not awaited: its rejection must not become an unhandled rejection
  const started = Date.now();
  await t.rejects(c2.close({ timeoutMs: 100 }), { code: 'timeout', message: /3 ops were not acked/ });
  t.ok(Date.now() - started < 1000, 'gave up after the timeout');
  await otherSession;
  await t.rejects(s2.end(), { code: 'closed' });
  await until(() => fake.live.size === 0, 'socket closed');
});

t.test("close() ends the connection with a 'disconnected' event, as every other end of one does", async (t) => {
  const { client } = await setup(t);
  const events: string[] = [];
  client.on('connected', () => events.push('connected'));
  client.on('disconnected', (e) => events.push(`disconnected ${e.code} ${e.reason}`));
  await client.register({ product: 'p', version: '1' });
  await client.close();
  await client.close();
  t.same(events, ['connected', 'disconnected 1000 client closed'], 'one of each, in order, and none for the second close()');
});

t.test('close() answers the reads asked for before it: getDetails() then close() does not reject with "closed"', async (t) => {
  const { fake, client } = await setup(t, { ackDelayMs: 5 });
  const session = await client.register({ product: 'p', version: '1' });
  session.logEvent('a');
  const details = session.getDetails(); // waits for the flush of 'a', as close() does
  await client.close();
  t.equal((await details).events.length, 1, 'answered, and saw the op logged before it');

  // Nothing to flush: the read is sent at once, and close() must not cut it off either.
  const c2 = connect({ url: fake.url });
  const s2 = await c2.register({ product: 'p', version: '1' });
  const d2 = s2.getDetails();
  await c2.close();
  t.equal((await d2).local_id, s2.id);

  // With a timeout that runs out, a read still waiting rejects with the close.
  const c3 = connect({ url: fake.url });
  const s3 = await c3.register({ product: 'p', version: '1' });
  fake.holdAcks();
  s3.logEvent('never acked');
  const d3 = s3.getDetails();
  await t.rejects(c3.close({ timeoutMs: 50 }), { code: 'timeout' });
  await t.rejects(d3, { code: 'closed' });
  fake.releaseAcks();
});

t.test('close({ timeoutMs }) past what a Node timer can wait is refused, not a 1 ms timeout that drops the unacked ops', async (t) => {
  const { fake, client } = await setup(t);
  const session = await client.register({ product: 'p', version: '1' });
  fake.holdAcks();
  session.logEvent('waits for its ack');
  for (const timeoutMs of [2 ** 31, -1, Number.NaN]) {
    await t.rejects(client.close({ timeoutMs }), RangeError, `timeoutMs ${timeoutMs}`);
  }
  t.equal(client.buffered + client.unacked, 1, 'nothing was dropped');
  session.logEvent('the client is still open');
  const closing = client.close({ timeoutMs: Infinity }); // Infinity: no bound, as with no timeoutMs
  fake.releaseAcks();
  await closing;
  t.equal(fake.client(client.clientId).persisted.length, 3, 'everything persisted');
});

t.test('per-op errors: an error event with seq, code and op; the other ops go through; no listener does not crash', async (t) => {
  const { fake, client, errors } = await setup(t, {
    refuse: (op) => (op.op['name'] === 'bad' ? ['invalid_field', 'name "bad" is refused by the test'] : null),
  });
  const session = await client.register({ product: 'p', version: '1' });
  session.logEvent('good');
  session.logEvent('bad', { data: { n: 1 } });
  session.logEvent('good');
  await client.flush();
  t.equal(errors.length, 1);
  const [err] = errors;
  t.ok(err instanceof DataCatError);
  t.match(err, { code: 'invalid_field', seq: 3, message: /refused by the test/, op: { q: 3, k: 'event', name: 'bad', data: { n: 1 } } });
  t.equal(persisted(fake, client, 'event').length, 2, 'the ops around it are persisted');
  t.equal(client.stats.opsRefused, 1);
  t.equal(client.stats.errors, 1);

  // Refused ops with a promise reject it instead.
  const ghost = client.attach('no-such-session');
  await t.rejects(ghost.end(), { code: 'unknown_session', seq: Number });
  await t.rejects(client.register({ product: 1 as unknown as string, version: '1' }), { code: 'invalid_field' });

  // No 'error' listener: EventEmitter would throw from inside a socket callback; the client counts instead.
  const quiet = connect({ url: fake.url });
  t.teardown(() => quiet.close());
  const qs = await quiet.register({ product: 'p', version: '1' });
  qs.logEvent('bad');
  qs.logEvent('bad');
  await quiet.flush();
  t.equal(quiet.stats.errors, 2, 'errors counted');
  t.equal(quiet.listenerCount('error'), 0);
});

t.test('remap: an event, and the session learns its server id (both ids keep working)', async (t) => {
  const { fake, client } = await setup(t);
  const session = await client.register({ product: 'p', version: '1' });
  const remaps: unknown[] = [];
  client.on('remap', (e) => remaps.push(e));
  fake.remap(session.id, 'server-abc');
  await until(() => remaps.length === 1, 'the remap event');
  t.same(remaps, [{ localId: session.id, serverId: 'server-abc' }]);
  t.equal(session.serverId, 'server-abc');
  t.match(session.id, /^local-session-/, 'ops keep using the id they were given');
  session.logEvent('after');
  const details = await session.getDetails();
  t.equal(details.server_id, 'server-abc');
  t.equal(details.events.length, 1);
});

t.test('attach: a session registered elsewhere; getDetails of an unknown one rejects with the daemon error code', async (t) => {
  const { fake, client } = await setup(t);
  await t.rejects(client.attach('nope').getDetails(), { code: 'unknown_session' });
  const registered = await client.register({ product: 'p', version: '1' });
  const other = connect({ url: fake.url });
  t.teardown(() => other.close());
  const attached = other.attach(registered.id);
  t.equal(attached.id, registered.id);
  attached.updateState({ from: 'another client' });
  t.same((await attached.getDetails()).state, { from: 'another client' });
});

t.test('timer and time measure with performance.now and log through logTimer', async (t) => {
  const { fake, client } = await setup(t);
  const session = await client.register({ product: 'p', version: '1' });
  const timer = session.timer('load', { tags: ['disk'] });
  await sleep(60);
  const seconds = timer.stop();
  t.ok(seconds >= 0.055 && seconds < 1, `about 0.06 s (${seconds})`);
  t.equal(timer.stop(), seconds, 'stop again: the same value, logged once');

  const ms = session.timer('render', { unit: 'milliseconds' });
  await sleep(30);
  const msValue = ms.stop();
  t.ok(msValue >= 25 && msValue < 1000, `milliseconds multiply by 1000 (${msValue})`);

  const out = await session.time('work', async () => {
    await sleep(20);
    return 42;
  });
  t.equal(out, 42, 'time() returns what fn returns');
  await t.rejects(
    session.time('failing', async () => {
      await sleep(5);
      throw new Error('boom');
    }),
    { message: 'boom' },
    'and rethrows what it throws',
  );
  await client.flush();
  const timers = persisted(fake, client, 'metric');
  t.same(
    timers.map((m) => [m['name'], m['type'], m['unit']]),
    [
      ['load', 'timer', 'seconds'],
      ['render', 'timer', 'milliseconds'],
      ['work', 'timer', 'seconds'],
      ['failing', 'timer', 'seconds'],
    ],
  );
  t.equal(timers[0]!['value'], seconds);
  t.same(timers[0]!['tags'], ['disk']);
  t.equal(timers[1]!['value'], msValue);
  t.ok((timers[2]!['value'] as number) >= 0.015, 'time() measured the awaited work');
});

t.test("time(): fn's outcome is kept when the timer op cannot be logged any more (client closed meanwhile)", async (t) => {
  const { fake } = await setup(t);
  const client = connect({ url: fake.url });
  const session = await client.register({ product: 'p', version: '1' });
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const ok = session.time('work', async () => {
    await gate;
    return 42;
  });
  const failing = session.time('failing', async () => {
    await gate;
    throw new Error('boom');
  });
  const closing = client.close();
  release();
  t.equal(await ok, 42, 'the return value, not a "closed" error');
  await t.rejects(failing, { message: 'boom' }, "fn's own error, not a \"closed\" error");
  await closing;

  const c2 = connect({ url: fake.url });
  t.teardown(() => c2.close({ timeoutMs: 1000 }).catch(() => undefined));
  const s2 = await c2.register({ product: 'p', version: '1' });
  t.equal(await s2.time('ends', () => s2.end().then(() => 'ended')), 'ended', 'the session ended inside fn');
});

t.test('an op larger than max_frame_bytes is refused locally; frames are split to fit', async (t) => {
  const { fake, client, errors } = await setup(t, { maxFrameBytes: 4096 });
  const session = await client.register({ product: 'p', version: '1' });
  for (let i = 0; i < 40; i++) session.logEvent('e', { message: 'x'.repeat(300), data: { i } });
  session.logEvent('huge', { message: 'y'.repeat(10_000) });
  session.logEvent('after');
  await client.flush();
  t.ok(fake.frames.every((f) => f.bytes <= 4096), 'every frame within max_frame_bytes');
  t.ok(
    fake.frames.slice(1).every((f) => f.kind === 'batch' && f.sessionId === session.id),
    'split batches are batches',
  );
  t.equal(fake.closes.length, 0, 'the daemon never had to close the socket');
  t.equal(errors.length, 1);
  t.match(errors[0], { code: 'payload_too_large', op: { name: 'huge' }, seq: Number });
  t.same(
    persisted(fake, client, 'event').map((o) => o['name']),
    [...Array(40).fill('e'), 'after'],
    'the rest delivered, in order',
  );
});

t.test('options are checked; url forms', async (t) => {
  t.throws(() => connect({ url: 'ws://127.0.0.1:1', clientId: 'bad id!' }), TypeError);
  t.throws(() => connect({ url: 'ftp://x' }), TypeError);
  t.throws(() => connect({ url: 'ws://127.0.0.1:1', maxInflightOps: 0 }), RangeError);
  t.throws(() => connect({ url: 'ws://127.0.0.1:1', highWaterMark: 10, lowWaterMark: 20 }), RangeError);
  const { fake } = await setup(t);
  const viaHttp = connect({ url: `http://127.0.0.1:${fake.port}/ws`, clientId: 'my-id', authToken: 'tok' });
  await new Promise((r) => viaHttp.once('connected', r));
  t.equal(fake.upgrades.at(-1)!.url, '/ws?client_id=my-id');
  t.equal(fake.upgrades.at(-1)!.authorization, 'Bearer tok', 'the token goes in the Authorization header');
  await viaHttp.close();
});

t.test("register sends this process's pid as parent_pid unless told otherwise", async (t) => {
  const fake = await startFakeWsDaemon();
  t.teardown(() => fake.close());
  const client = connect({ url: fake.url });
  t.teardown(() => client.close({ timeoutMs: 500 }).catch(() => undefined));
  await client.register({ product: 'p', version: '1' });
  await client.register({ product: 'p', version: '1', parentPid: null });
  await client.flush();
  const registers = persisted(fake, client, 'register');
  t.equal(registers[0]!['parent_pid'], process.pid, 'by default: this process, as the Python client sends os.getpid()');
  t.notOk('parent_pid' in registers[1]!, 'null: none');
});
