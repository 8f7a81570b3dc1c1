/** Regression tests for disagreements found between the WebSocket gateway and docs/protocol.md. */
import t from 'tap';
import { startFakeUpstream } from './support/fake-upstream.js';
import { startTestDaemon, until } from './support/daemon-harness.js';
import { connect } from 'node:net';
import { Packr } from 'msgpackr';
import { RawWs, registerRaw } from './support/raw-ws.js';

t.test('a connection replaced while it waits for its welcome is closed with 4000, not left open', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  // The register holds the client id's mark until register_timeout_ms: connections that arrive
  // meanwhile wait for it before their welcome.
  upstream.addFault({ match: (r) => r.kind === 'create', delayMs: 1500 });
  const { url, api } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url, register_timeout_ms: 800 });
  const a = await RawWs.open(url, 'triplet');
  await a.welcome();
  a.send({ t: 'ops', ops: [{ q: 1, k: 'register', product: 'p', version: '1' }] });
  const b = await RawWs.open(url, 'triplet'); // replaces a, waits for the register
  t.teardown(() => b.ws.terminate());
  // Sent while b waits: ws reads it only once b is resumed to be closed, and refuses it (1009)
  // with an 'error' event on a socket that has no WsConnection (and its listener) yet.
  b.sendRaw(Buffer.alloc(5 * 1024 * 1024, 0x90));
  const c = await RawWs.open(url, 'triplet'); // replaces b before b was ever welcomed
  t.teardown(() => c.close());
  const welcome = await c.welcome();
  t.equal(welcome.acked, 1, 'c is told the final mark');
  t.equal((await a.waitClosed()).code, 4000, 'a was replaced');
  t.equal((await b.waitClosed()).code, 4000, 'b was replaced too, and told so');
  t.notOk(b.frames.some((f) => f.t === 'welcome'), 'b was never welcomed');
  t.equal((await api.get('/health')).status, 200, 'the daemon is still up');
});

t.test('a batch numbered past 2^53 - 1 is refused at the envelope (1008), the mark stays exact', async (t) => {
  const { url } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9' });
  const c = await RawWs.open(url, 'edge-of-q');
  await c.welcome();
  const sid = await registerRaw(c, 1);
  // q itself is valid, but its ops would be numbered 2^53 - 1, 2^53, 2^53 + 1 (which rounds to 2^53).
  c.send({ t: 'batch', session_id: sid, q: Number.MAX_SAFE_INTEGER, n: 3, ops: new Packr().pack([{ k: 'heartbeat' }, { k: 'heartbeat' }, { k: 'heartbeat' }]) });
  t.equal((await c.waitClosed()).code, 1008);
  t.notOk(c.frames.some((f) => f.t === 'ack' && f.acked > Number.MAX_SAFE_INTEGER), 'no ack past 2^53 - 1');
  const again = await RawWs.open(url, 'edge-of-q');
  t.teardown(() => again.close());
  t.equal((await again.welcome()).acked, 1, 'nothing of it was taken');
  // The largest valid batch still goes through.
  again.send({ t: 'batch', session_id: sid, q: Number.MAX_SAFE_INTEGER - 1, n: 2, ops: new Packr().pack([{ k: 'heartbeat' }, { k: 'heartbeat' }]) });
  t.equal((await again.acked(Number.MAX_SAFE_INTEGER)).at(-1).acked, Number.MAX_SAFE_INTEGER);
});

t.test('an ops frame far past max_ops_per_frame closes the socket instead of being answered op by op', async (t) => {
  const { url, daemon } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9', max_ops_per_frame: 50 });
  const c = await RawWs.open(url, 'overrun');
  t.teardown(() => c.close());
  await c.welcome();
  const sid = await registerRaw(c, 1);
  // Just past the limit: the excess is refused op by op (docs/protocol.md, "ops").
  c.send({ t: 'ops', ops: Array.from({ length: 100 }, (_, i) => ({ q: 2 + i, k: 'heartbeat', session_id: sid })) });
  const acks = await c.acked(101);
  t.equal(acks.flatMap((a) => a.errors ?? []).filter((e: any[]) => e[1] === 'too_many_ops').length, 50);
  // 101 nils: 101 bytes that would each cost a ~80-byte refusal (no usable q).
  c.send({ t: 'ops', ops: Array.from({ length: 101 }, () => null) });
  const closed = await c.waitClosed();
  t.equal(closed.code, 1008);
  t.match(closed.reason, /max_ops_per_frame/);
  t.notOk(c.frames.some((f) => f.t === 'ack' && f.errors?.some((e: any[]) => e[0] === null)), 'no op-by-op refusals');
  t.equal(daemon.health().queue.depth, 1, 'only the create is queued');
});

t.test('fields an op does not use: a bin is accepted, an extension type is refused (ops and batch alike)', async (t) => {
  const { url } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9' });
  const c = await RawWs.open(url, 'unused-fields');
  t.teardown(() => c.close());
  await c.welcome();
  const sid = await registerRaw(c, 1);
  c.send({
    t: 'ops',
    ops: [
      { q: 2, k: 'heartbeat', session_id: sid, extra: new Uint8Array([1, 2]) },
      { q: 3, k: 'event', session_id: sid, name: 'e', extra: new Date(0) },
      { q: 4, k: 'heartbeat', session_id: sid, extra: new Date(0) },
    ],
  });
  c.send({ t: 'batch', session_id: sid, q: 5, n: 2, ops: new Packr().pack([{ k: 'heartbeat', extra: new Uint8Array([1]) }, { k: 'event', name: 'x', extra: new Date(0) }]) });
  const acks = await c.acked(6);
  t.same(
    acks.flatMap((a) => a.errors ?? []).map((e: any[]) => [e[0], e[1]]),
    [
      [3, 'invalid_field'],
      [4, 'invalid_field'],
      [6, 'invalid_field'],
    ],
  );
});

t.test('an upgrade that arrives while the daemon shuts down gets 503 shutting_down (worth retrying), not 400', async (t) => {
  const { url, daemon } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9' });
  // A connection made before the shutdown, its upgrade request sent after it began.
  const socket = connect(Number(new URL(url).port), '127.0.0.1');
  t.teardown(() => socket.destroy());
  await new Promise((resolve) => socket.once('connect', resolve));
  const closed = daemon.close();
  let answer = '';
  socket.on('data', (d: Buffer) => (answer += d.toString()));
  const ended = new Promise((resolve) => socket.once('close', resolve));
  socket.write('GET /ws?client_id=late HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
  await ended;
  await closed;
  t.match(answer, /^HTTP\/1\.1 503 /);
  t.match(answer, /retry-after: \d+/i);
  t.same(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).error, 'shutting_down');
});

t.test("a failed read of the client's mark at connect closes that socket (1013), it does not crash the daemon", async (t) => {
  let failing = true;
  // LevelDB reads of client marks (keys h!<client id>) fail until `failing` is cleared.
  const wrapDb = (db: any) =>
    new Proxy(db, {
      get(target, prop) {
        if (prop === 'get')
          return async (key: unknown, ...rest: unknown[]) => {
            if (failing && typeof key === 'string' && key.startsWith('h!')) throw new Error('injected read failure');
            return target.get(key, ...rest);
          };
        const v = Reflect.get(target, prop);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
  const { url, api } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9' }, { wrapDb });
  const c = await RawWs.open(url, 'unlucky');
  const closed = await c.waitClosed();
  t.equal(closed.code, 1013, 'told to reconnect');
  t.match(closed.reason, /injected read failure/);
  t.same(c.frames, [], 'no welcome');
  failing = false;
  t.equal((await api.get('/health')).status, 200, 'the daemon is still up');
  const again = await RawWs.open(url, 'unlucky');
  t.teardown(() => again.close());
  t.equal((await again.welcome()).acked, 0, 'the reconnect is welcomed');
});

/** MessagePack for an array [def0, ..., defL] where def0 = [] and def_k = [def_k-1, def_k-1] by msgpackr's id/pointer extensions. */
function sharedReferences(levels: number): Buffer {
  const u32 = (n: number): Buffer => Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
  const parts: Buffer[] = [Buffer.from([0xdc, (levels + 1) >> 8, (levels + 1) & 255]), Buffer.from([0xd6, 0x69]), u32(0), Buffer.from([0x90])];
  for (let k = 1; k <= levels; k++) parts.push(Buffer.from([0xd6, 0x69]), u32(k), Buffer.from([0x92, 0xd6, 0x70]), u32(k - 1), Buffer.from([0xd6, 0x70]), u32(k - 1));
  return Buffer.concat(parts);
}

t.test('msgpackr structured-clone references are not decoded: a tiny frame cannot expand into 2^n values', async (t) => {
  const { url, daemon } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9' });
  const c = await RawWs.open(url, 'laughs');
  await c.welcome();
  const sid = await registerRaw(c, 1);
  const plain = new Packr({ useRecords: false });
  // 18 levels: ~400 bytes that decoded into 2^18 arrays (a 22-level one stalled the daemon 8 s).
  const head = plain.pack({ t: 'ops', ops: [{ q: 2, k: 'event', session_id: sid, name: 'e', data: { d: 0 } }] });
  c.sendRaw(Buffer.concat([head.subarray(0, head.length - 1), sharedReferences(18)])); // d: 0 → d: <the references>
  const closed = await c.waitClosed();
  t.equal(closed.code, 1007, 'not MessagePack the daemon reads');
  // In a batch (decoded in the session's worker) the ops are refused.
  const b = await RawWs.open(url, 'laughs');
  t.teardown(() => b.close());
  await b.welcome();
  const event = plain.pack([{ k: 'event', name: 'e', data: { d: 0 } }]);
  b.send({ t: 'batch', session_id: sid, q: 2, n: 1, ops: Buffer.concat([event.subarray(0, event.length - 1), sharedReferences(18)]) });
  const acks = await b.acked(2);
  t.same(
    acks.flatMap((a) => a.errors ?? []).map((e: any[]) => [e[0], e[1]]),
    [[2, 'bad_request']],
  );
  t.equal(daemon.health().queue.depth, 1, 'only the create is queued');
});

t.test('a client that sends get_session requests and does not read the answers: the daemon stops reading it, holds little', async (t) => {
  const { url, daemon } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9' });
  const c = await RawWs.open(url, 'no-reader');
  t.teardown(() => c.ws.terminate());
  await c.welcome();
  const sid = await registerRaw(c, 1);
  // A session whose view is ~1 MB: 16 recent events of 60 kB.
  c.send({ t: 'ops', ops: Array.from({ length: 16 }, (_, i) => ({ q: 2 + i, k: 'event', session_id: sid, name: 'e', message: 'x'.repeat(60_000) })) });
  await c.acked(17);
  const socket = (c.ws as any)._socket;
  socket.pause(); // the client reads nothing more
  const requests = 40; // 40 MB of answers for ~2 kB of requests
  for (let i = 0; i < requests; i++) c.send({ t: 'get_session', id: i, session_id: sid });
  const conn = [...daemon.ws.connections][0] as any;
  // Settled: reads wait, none runs (the send backlog is past its bound), the socket is not read.
  await until(() => conn.readBacklog?.waiting > 0 && conn.readBacklog.running === 0 && conn.isPaused, 'the daemon stops taking reads', 10_000);
  t.ok(conn.ws.bufferedAmount < 20e6, `the daemon holds a bounded backlog (${(conn.ws.bufferedAmount / 1e6).toFixed(1)} MB), not every answer`);
  socket.resume();
  await until(() => c.frames.filter((f) => f.t === 'session').length === requests, 'every answer', 20_000);
  t.same(
    c.frames
      .filter((f) => f.t === 'session')
      .map((f) => f.id)
      .sort((a, b) => a - b),
    Array.from({ length: requests }, (_, i) => i),
    'every request answered (matched by id: reads may finish in any order)',
  );
  t.equal(daemon.ws.pausedCount(), 0, 'read again once it reads');
});
