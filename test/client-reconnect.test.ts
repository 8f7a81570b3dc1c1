/**
 * The client's reconnect path against the fake daemon: resend after forced disconnects with
 * exactly-once delivery, register answers recovered from the welcome, daemon restarts, backoff
 * while the daemon is down, dead-peer detection, replaced connections and auth.
 */
import t from 'tap';
import { connect, type Client, type DataCatError } from '../src/client/index.js';
import { sleep, startFakeWsDaemon, until, type FakeWsDaemon } from './support/fake-ws-daemon.js';

/** The assertions helpers need (a subtest has them all). */
type Tap = typeof t;

function collectErrors(client: Client): DataCatError[] {
  const errors: DataCatError[] = [];
  client.on('error', (e) => errors.push(e));
  return errors;
}

/** Persisted ops of a client id are numbered strictly increasing, and the events carry data.i = 0..n-1 exactly once, in order. */
function checkExactlyOnce(t: Pick<Tap, 'ok' | 'same' | 'equal'>, fake: FakeWsDaemon, clientId: string, n: number): void {
  const persisted = fake.client(clientId).persisted;
  const qs = persisted.map((p) => p.q);
  t.ok(
    qs.every((q, i) => i === 0 || q > qs[i - 1]!),
    'persisted in strictly increasing q order',
  );
  t.same(qs, Array.from({ length: qs.length }, (_, i) => qs[0]! + i), 'no gaps in the numbering');
  const is = persisted.filter((p) => p.k === 'event').map((p) => (p.op['data'] as { i: number }).i);
  t.equal(is.length, n, `${n} events persisted`);
  t.ok(
    is.every((v, i) => v === i),
    'every event exactly once, in the order logged',
  );
}

t.test('forced disconnects mid-stream: resend in order, exactly once, no gaps', async (t) => {
  const fake = await startFakeWsDaemon({ ackDelayMs: 2 });
  t.teardown(() => fake.close());
  const client = connect({ url: fake.url, maxInflightOps: 2000, maxOpsPerFrame: 250, reconnectBaseMs: 5, reconnectMaxMs: 40 });
  t.teardown(() => client.close({ timeoutMs: 1000 }).catch(() => undefined));
  const errors = collectErrors(client);
  const session = await client.register({ product: 'p', version: '1' });

  // Five drops, each after a different number of persisted ops (so mid-frame, with ops persisted
  // but unacked and frames still in flight), in different ways: cut, "cannot persist", shutdown,
  // internal error, cut.
  const plan: Array<[number, number | null]> = [
    [1500, null],
    [2333, 1013],
    [777, 1001],
    [3001, 1011],
    [1234, null],
  ];
  const welcomes: Array<{ acked: number; resent: number }> = [];
  const disconnects: number[] = [];
  client.on('disconnected', (e) => disconnects.push(e.code));
  client.on('connected', (e) => {
    welcomes.push({ acked: e.acked, resent: e.resent });
    const next = plan.shift();
    if (next) [fake.dropAfterOps, fake.dropCode] = next;
  });
  const next = plan.shift()!;
  [fake.dropAfterOps, fake.dropCode] = next;

  const N = 30_000;
  for (let i = 0; i < N; i++) {
    if (!session.logEvent('e', { data: { i } })) await client.waitForCapacity();
  }
  await client.flush();
  t.same(disconnects, [1006, 1013, 1001, 1011, 1006], 'five forced disconnects');
  t.equal(welcomes.length, 5, 'reconnected after each');
  t.ok(
    welcomes.every((w, i) => i === 0 || w.acked >= welcomes[i - 1]!.acked),
    'the high-water mark only grows',
  );
  t.ok(client.stats.opsResent > 0, `unacked ops were resent (${client.stats.opsResent})`);
  checkExactlyOnce(t, fake, client.clientId, N);
  t.equal(fake.skippedDuplicates, 0, 'nothing the welcome covered was resent');
  t.same(
    errors.map((e) => e.code),
    ['frame_rejected'],
    'only the 1011 close is reported as an error (1006/1013/1001 are plain disconnects)',
  );
});

t.test('resends of ops the daemon already has are skipped by its high-water mark, never persisted twice', async (t) => {
  // The welcome understates `acked` (say, a daemon that answers from an older mark): the client
  // resends what it has not seen acked, and the daemon's mark filters the duplicates.
  const fake = await startFakeWsDaemon();
  t.teardown(() => fake.close());
  const client = connect({ url: fake.url, reconnectBaseMs: 5, reconnectMaxMs: 20 });
  t.teardown(() => client.close({ timeoutMs: 1000 }).catch(() => undefined));
  const session = await client.register({ product: 'p', version: '1' });
  fake.holdAcks();
  for (let i = 0; i < 100; i++) session.logEvent('e', { data: { i } });
  await until(() => fake.client(client.clientId).persisted.length === 101, 'all persisted, none acked');
  fake.staleWelcomeBy = 50;
  fake.dropConnections();
  fake.releaseAcks();
  const resent = await new Promise<number>((resolve) => client.once('connected', (e) => resolve(e.resent)));
  t.equal(resent, 50, 'the client resends what the welcome does not cover');
  await client.flush();
  t.equal(fake.skippedDuplicates, 50, 'the daemon skipped every resent duplicate');
  checkExactlyOnce(t, fake, client.clientId, 100);
});

/** Per session: the events carry data.i = 0..n-1 exactly once, in order; the client's numbers are strictly increasing without gaps. */
function checkPerSession(t: Pick<Tap, 'ok' | 'same' | 'equal'>, fake: FakeWsDaemon, clientId: string, sessionIds: string[], n: number): void {
  const persisted = fake.client(clientId).persisted;
  const qs = persisted.map((p) => p.q);
  t.same(qs, Array.from({ length: qs.length }, (_, i) => qs[0]! + i), 'persisted in strictly increasing q order, no gaps');
  for (const id of sessionIds) {
    const is = persisted.filter((p) => p.k === 'event' && p.op['session_id'] === id).map((p) => (p.op['data'] as { i: number }).i);
    t.equal(is.length, n, `${id}: ${n} events persisted`);
    t.ok(
      is.every((v, i) => v === i),
      `${id}: every event exactly once, in the order logged`,
    );
  }
}

t.test('batches of interleaved sessions across forced disconnects: resent with their numbers, exactly once, in order per session', async (t) => {
  const fake = await startFakeWsDaemon({ ackDelayMs: 2 });
  t.teardown(() => fake.close());
  const client = connect({ url: fake.url, maxInflightOps: 2000, maxOpsPerFrame: 250, reconnectBaseMs: 5, reconnectMaxMs: 40 });
  t.teardown(() => client.close({ timeoutMs: 1000 }).catch(() => undefined));
  const errors = collectErrors(client);
  const sessions = await Promise.all([0, 1, 2, 3].map(() => client.register({ product: 'p', version: '1' })));
  const plan: Array<[number, number | null]> = [
    [1700, null],
    [2333, 1013],
    [777, null],
    [3001, 1001],
    [1234, null],
  ];
  let welcomes = 0;
  const resentTotal: number[] = [];
  client.on('connected', (e) => {
    welcomes++;
    resentTotal.push(e.resent);
    const next = plan.shift();
    if (next) [fake.dropAfterOps, fake.dropCode] = next;
  });
  [fake.dropAfterOps, fake.dropCode] = plan.shift()!;

  const N = 6000;
  for (let i = 0; i < N; i++) {
    for (const s of sessions) if (!s.logEvent('e', { data: { i } })) await client.waitForCapacity();
  }
  await client.flush();
  t.equal(welcomes, 5, 'reconnected after each of the five drops');
  t.ok(client.stats.opsResent > 0, `unacked ops were resent (${client.stats.opsResent})`);
  checkPerSession(
    t,
    fake,
    client.clientId,
    sessions.map((s) => s.id),
    N,
  );
  t.equal(fake.skippedDuplicates, 0, 'nothing the welcome covered was resent');
  const opsFrames = fake.frames.filter((f) => f.kind === 'ops');
  t.same(
    opsFrames.map((f) => [f.firstQ, f.lastQ]),
    [[1, 4]],
    'only the registers went in an ops frame; everything else, resends included, in batches',
  );
  // Resent batches: numbers already used on an earlier connection, and each batch still one session's contiguous run.
  const firstSeen = new Map<number, { conn: number; op: string }>();
  let resentOps = 0;
  for (const r of fake.received) {
    const seen = firstSeen.get(r.q);
    if (!seen) firstSeen.set(r.q, { conn: r.conn, op: JSON.stringify(r.op) });
    else {
      resentOps++;
      t.equal(JSON.stringify(r.op), seen.op, `q ${r.q} resent with the same content`);
    }
  }
  t.equal(resentOps, 0, 'with exact welcomes, no op the daemon read was sent again');
  t.same(errors, [], 'no errors (1006/1013/1001 are plain disconnects)');
});

t.test('a resent batch partly covered by the mark: the daemon skips its covered ops by q; exactly once per session', async (t) => {
  const fake = await startFakeWsDaemon();
  t.teardown(() => fake.close());
  const client = connect({ url: fake.url, reconnectBaseMs: 5, reconnectMaxMs: 20 });
  t.teardown(() => client.close({ timeoutMs: 1000 }).catch(() => undefined));
  const [a, b] = await Promise.all([client.register({ product: 'p', version: '1' }), client.register({ product: 'p', version: '1' })]);
  fake.holdAcks();
  for (let i = 0; i < 60; i++) {
    a!.logEvent('e', { data: { i } });
    b!.logEvent('e', { data: { i } });
  }
  // a: q 3-62, b: q 63-122
  await until(() => fake.client(client.clientId).persisted.length === 122, 'all persisted, none acked');
  fake.staleWelcomeBy = 90; // the welcome says 32: a's batch is resent from 33, b's whole
  fake.dropConnections();
  fake.releaseAcks();
  const resent = await new Promise<number>((resolve) => client.once('connected', (e) => resolve(e.resent)));
  t.equal(resent, 90);
  await client.flush();
  t.equal(fake.skippedDuplicates, 90, 'every resent op skipped by the mark');
  const again = fake.frames.filter((f) => f.conn === 2);
  t.same(
    again.map((f) => [f.kind, f.sessionId, f.firstQ, f.lastQ]),
    [
      ['batch', a!.id, 33, 62],
      ['batch', b!.id, 63, 122],
    ],
    'resent as batches: the rest of the first, and the second whole',
  );
  checkPerSession(t, fake, client.clientId, [a!.id, b!.id], 60);
});

t.test("a register whose ack was lost: the session id comes from the welcome's registered", async (t) => {
  const fake = await startFakeWsDaemon();
  t.teardown(() => fake.close());
  const client = connect({ url: fake.url, reconnectBaseMs: 5, reconnectMaxMs: 20 });
  t.teardown(() => client.close({ timeoutMs: 1000 }).catch(() => undefined));
  const welcomes: number[] = [];
  client.on('connected', (e) => welcomes.push(e.acked));
  await until(() => fake.live.size === 1, 'connected');
  fake.dropAfterOps = 1; // persist the register, then cut before the ack goes out
  const session = await client.register({ product: 'p', version: '1' });
  t.same(welcomes, [0, 1], 'reconnected; the welcome covers the register');
  t.equal(fake.store.sessions.size, 1, 'registered once');
  t.equal(session.id, [...fake.store.sessions.keys()][0], 'the id the daemon gave');
  t.equal(fake.received.filter((r) => r.k === 'register').length, 1, 'not resent');
  session.logEvent('works');
  await client.flush();
  t.equal(fake.session(session.id)!.events.length, 1);

  // A daemon that no longer remembers the registration: the outcome is unknown, and said so.
  const forgetful = await startFakeWsDaemon({ rememberRegistrations: 0 });
  t.teardown(() => forgetful.close());
  const c2 = connect({ url: forgetful.url, reconnectBaseMs: 5, reconnectMaxMs: 20 });
  t.teardown(() => c2.close({ timeoutMs: 1000 }).catch(() => undefined));
  await until(() => forgetful.live.size === 1, 'connected');
  forgetful.dropAfterOps = 1;
  await t.rejects(c2.register({ product: 'p', version: '1' }), { code: 'outcome_unknown', seq: 1 });
});

t.test('a daemon restart (1001, same port, same store): buffered and unacked ops arrive once', async (t) => {
  const first = await startFakeWsDaemon({ ackDelayMs: 1 });
  const client = connect({ url: first.url, reconnectBaseMs: 10, reconnectMaxMs: 50 });
  t.teardown(() => client.close({ timeoutMs: 1000 }).catch(() => undefined));
  const errors = collectErrors(client);
  const session = await client.register({ product: 'p', version: '1' });
  for (let i = 0; i < 500; i++) session.logEvent('e', { data: { i } });
  first.holdAcks();
  for (let i = 500; i < 1000; i++) session.logEvent('e', { data: { i } });
  await until(() => first.client(client.clientId).persisted.length === 1001, 'persisted, not all acked');
  await first.close(1001);
  for (let i = 1000; i < 1500; i++) session.logEvent('e', { data: { i } }); // logged while the daemon is down
  await sleep(80);
  t.equal(client.connected, false);
  const second = await startFakeWsDaemon({ port: first.port, store: first.store });
  t.teardown(() => second.close());
  await client.flush();
  checkExactlyOnce(t, second, client.clientId, 1500);
  t.ok(
    errors.every((e) => e.code === 'connect_failed'),
    'only connection errors while the daemon was down',
  );
});

t.test('while the daemon is down: reconnect attempts back off (exponential, capped); ops wait', async (t) => {
  const probe = await startFakeWsDaemon();
  const port = probe.port;
  await probe.close();
  const client = connect({ url: `ws://127.0.0.1:${port}`, reconnectBaseMs: 10, reconnectMaxMs: 80 });
  t.teardown(() => client.close({ timeoutMs: 1000 }).catch(() => undefined));
  const errors = collectErrors(client);
  const registering = client.register({ product: 'p', version: '1' });
  await sleep(600);
  const attempts = errors.length;
  t.ok(errors.every((e) => e.code === 'connect_failed' && /ECONNREFUSED/.test(e.message)), 'connect_failed errors');
  // 10, 20, 40, 80, 80... (each halved at worst by jitter): 600 ms allow at most ~17 attempts, at least ~7.
  t.ok(attempts >= 5 && attempts <= 20, `backed off: ${attempts} attempts in 600 ms`);
  const fake = await startFakeWsDaemon({ port });
  t.teardown(() => fake.close());
  const session = await registering;
  t.match(session.id, /^local-session-/, 'the register queued while down went through');
});

t.test('a peer that stops answering (half-open connection) is dropped after two silent ping periods', async (t) => {
  const fake = await startFakeWsDaemon();
  t.teardown(() => fake.close());
  const client = connect({ url: fake.url, pingIntervalMs: 40, reconnectBaseMs: 5, reconnectMaxMs: 20 });
  t.teardown(() => client.close({ timeoutMs: 1000 }).catch(() => undefined));
  const errors = collectErrors(client);
  const session = await client.register({ product: 'p', version: '1' });
  fake.freezeConnections();
  for (let i = 0; i < 10; i++) session.logEvent('e', { data: { i } });
  const started = Date.now();
  await client.flush();
  const took = Date.now() - started;
  t.ok(took >= 80 && took < 2000, `noticed after ~3 periods, reconnected, resent (${took} ms)`);
  t.match(errors, [{ code: 'connect_failed', message: /no answer from the daemon/ }]);
  checkExactlyOnce(t, fake, client.clientId, 10);
});

t.test('reads wait for a welcome and survive a reconnect', async (t) => {
  const fake = await startFakeWsDaemon();
  t.teardown(() => fake.close());
  const client = connect({ url: fake.url, reconnectBaseMs: 5, reconnectMaxMs: 20 });
  t.teardown(() => client.close({ timeoutMs: 1000 }).catch(() => undefined));
  const session = await client.register({ product: 'p', version: '1' });
  fake.holdWelcome();
  fake.dropConnections();
  await until(() => fake.live.size === 1 && !client.connected, 'reconnected, not welcomed');
  const details = session.getDetails();
  await sleep(30);
  t.equal(fake.getSessionRequests, 0, 'nothing sent before the welcome');
  fake.releaseWelcome();
  t.equal((await details).local_id, session.id);
});

t.test('another connection with the same client id (4000): the client stops and says why', async (t) => {
  const fake = await startFakeWsDaemon();
  t.teardown(() => fake.close());
  const a = connect({ url: fake.url, clientId: 'shared-id' });
  const errors = collectErrors(a);
  await a.register({ product: 'p', version: '1' });
  const b = connect({ url: fake.url, clientId: 'shared-id' });
  t.teardown(() => b.close());
  await b.register({ product: 'p', version: '1' });
  await until(() => errors.length > 0, 'the replaced error');
  t.match(errors, [{ code: 'replaced', closeCode: 4000 }]);
  t.equal(a.connected, false);
  await t.rejects(a.register({ product: 'p', version: '1' }), { code: 'replaced' }, 'methods fail with the reason');
  await t.resolves(a.close(), 'close resolves');
  await sleep(50);
  t.equal(fake.connectionCount, 2, 'no reconnect fight');
});

t.test('replaced (4000) while close() waits for acks: close() rejects with the reason instead of resolving as if flushed', async (t) => {
  const fake = await startFakeWsDaemon();
  t.teardown(() => fake.close());
  const a = connect({ url: fake.url, clientId: 'shared-while-closing' }); // no 'error' listener: close() is all the app sees
  const session = await a.register({ product: 'p', version: '1' });
  fake.holdAcks();
  session.logEvent('never acked on this connection');
  const closing = a.close();
  await until(() => fake.received.length === 2, 'the event sent');
  const b = connect({ url: fake.url, clientId: 'shared-while-closing' });
  t.teardown(() => b.close({ timeoutMs: 1000 }).catch(() => undefined));
  await t.rejects(closing, { code: 'replaced', closeCode: 4000 });
  t.equal(a.stats.errors, 1, 'counted too');
  await t.rejects(a.close(), { code: 'replaced' }, 'close() again: the same outcome');
  fake.releaseAcks();
});

t.test('auth: the token goes in the Authorization header; a wrong one is reported and retried', async (t) => {
  const fake = await startFakeWsDaemon({ authToken: 's3cret' });
  t.teardown(() => fake.close());
  const bad = connect({ url: fake.url, authToken: 'wrong', reconnectBaseMs: 10, reconnectMaxMs: 20 });
  const errors = collectErrors(bad);
  await until(() => errors.length >= 2, 'two refused attempts');
  t.match(errors[0], { code: 'unauthorized' });
  t.equal(bad.connected, false);
  await bad.close({ timeoutMs: 10 }).catch(() => undefined);

  const good = connect({ url: fake.url, authToken: 's3cret' });
  t.teardown(() => good.close());
  const session = await good.register({ product: 'p', version: '1' });
  t.ok(session.id);
  t.equal(fake.upgrades.at(-1)!.authorization, 'Bearer s3cret');
  t.notMatch(fake.upgrades.at(-1)!.url, /token/, 'not in the URL');
});
