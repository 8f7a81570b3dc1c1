/**
 * HTTP compatibility with what DataCat's own clients send, and HTTP edge cases that used to go
 * unanswered: event `level` kept, string stack traces as lists of lines, the bare Infinity /
 * NaN tokens Python's json.dumps writes, parse errors on a connection with an answer in flight,
 * and requests that arrive while the daemon is shutting down.
 */
import t from 'tap';
import { Agent, request as httpRequest } from 'node:http';
import { connect as connectTcp, createServer as createTcpServer, type Socket } from 'node:net';
import { Packr } from 'msgpackr';
import { startFakeUpstream } from './support/fake-upstream.js';
import { spawnDaemon, startTestDaemon, until } from './support/daemon-harness.js';
import { RawWs } from './support/raw-ws.js';

/** Session ops as the upstream applied them, by kind. */
const opsOf = (upstream: Awaited<ReturnType<typeof startFakeUpstream>>, serverId: string, kind: string): any[] =>
  (upstream.sessions.get(serverId)?.ops ?? []).filter((o) => o.kind === kind).map((o) => o.body);

t.test('event level is kept beside category, over HTTP and WebSocket (ops and batch frames)', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { api, url } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url });
  const id = await api.registerOnServer();
  // What DataCat's Python client sends: the logger name as category, the level beside it.
  await api.ok('/event', { session_id: id, name: 'both', category: 'app.net', level: 'warning' });
  await api.ok('/event', { session_id: id, name: 'level-only', level: 'error' });
  await api.ok('/event', { session_id: id, name: 'null-level', category: 'c', level: null });
  const bad = await api.post('/event', { session_id: id, name: 'x', level: 3 });
  t.same([bad.status, bad.body.error], [400, 'invalid_field'], 'a level that is not a string is refused');
  t.match(bad.body.details, /level must be a string/);
  const long = await api.post('/event', { session_id: id, name: 'x', level: 'l'.repeat(300) });
  t.same([long.status, long.body.error], [400, 'too_long'], 'level is bounded like the other names');

  const c = await RawWs.open(url, 'level-ws');
  t.teardown(() => c.close());
  await c.welcome();
  c.send({ t: 'ops', ops: [{ q: 1, k: 'event', session_id: id, name: 'ws-op', category: 'ws.logger', level: 'info' }] });
  await c.acked(1);
  const batch = new Packr({ useRecords: true }).pack([{ k: 'event', name: 'ws-batch', category: 'ws.batch', level: 'critical' }]);
  c.send({ t: 'batch', session_id: id, q: 2, n: 1, ops: batch });
  const acks = await c.acked(2);
  t.same(acks.flatMap((a) => a.errors ?? []), [], 'both WebSocket events accepted');

  const want = [
    { name: 'both', category: 'app.net', level: 'warning' },
    { name: 'level-only', category: 'error', level: 'error' }, // the fallback stays
    { name: 'null-level', category: 'c' },
    { name: 'ws-op', category: 'ws.logger', level: 'info' },
    { name: 'ws-batch', category: 'ws.batch', level: 'critical' },
  ];
  const pick = (e: any) => Object.fromEntries(['name', 'category', 'level'].filter((k) => e[k] !== undefined).map((k) => [k, e[k]]));
  const view = (await api.get(`/session?session_id=${id}`)).body;
  t.same(view.events.map(pick), want, 'GET /session shows level');
  await api.ok('/flush?wait=1', {});
  await until(() => opsOf(upstream, id, 'event').length === want.length, 'events upstream');
  t.same(opsOf(upstream, id, 'event').map(pick), want, 'the upstream receives level too');
});

t.test('a string stacktrace becomes a list of lines, stored and sent upstream; lists stay lists', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { api, url } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url });
  const id = await api.registerOnServer();
  const trace = 'Traceback (most recent call last):\n  File "app.py", line 3, in <module>\n    main()\nValueError: bad\n';
  const lines = ['Traceback (most recent call last):', '  File "app.py", line 3, in <module>', '    main()', 'ValueError: bad'];
  await api.ok('/event', { session_id: id, name: 'string', stacktrace: trace });
  await api.ok('/event', { session_id: id, name: 'no-trailing-newline', stacktrace: 'one\ntwo' });
  await api.ok('/event', { session_id: id, name: 'list', stacktrace: ['a', 'b\n'] });
  for (const wrong of [5, { a: 1 }, ['a', 1]]) {
    const res = await api.post('/event', { session_id: id, name: 'x', stacktrace: wrong });
    t.same([res.status, res.body.error], [400, 'invalid_field'], `stacktrace ${JSON.stringify(wrong)} refused`);
  }
  // The same over a WebSocket batch (decoded and validated again when it is sent upstream).
  const c = await RawWs.open(url, 'trace-ws');
  t.teardown(() => c.close());
  await c.welcome();
  c.send({ t: 'batch', session_id: id, q: 1, n: 1, ops: new Packr({ useRecords: true }).pack([{ k: 'event', name: 'ws', stacktrace: 'x\ny\n' }]) });
  await c.acked(1);

  const want = [lines, ['one', 'two'], ['a', 'b\n'], ['x', 'y']];
  const view = (await api.get(`/session?session_id=${id}`)).body;
  t.same(view.events.map((e: any) => e.stacktrace), want, 'GET /session shows lists');
  await api.ok('/flush?wait=1', {});
  await until(() => opsOf(upstream, id, 'event').length === want.length, 'events upstream');
  t.same(opsOf(upstream, id, 'event').map((e) => e.stacktrace), want, 'the upstream receives lists');
});

t.test("Python's bare Infinity / -Infinity / NaN tokens", async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { api } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url });
  const id = await api.registerOnServer();
  const S = JSON.stringify(id);
  // Exactly what json.dumps writes for DataCat's histogram with buckets=[0.1, float('inf')].
  const histogram = `{"session_id": ${S}, "name": "h", "type": "histogram", "value": 0.5, "metadata": {"buckets": [0.1, Infinity]}}`;
  const h = await api.post('/metric', undefined, histogram);
  t.same([h.status, h.body], [200, { status: 'ok' }], 'a histogram with an Infinity bucket bound is accepted');
  const h2 = await api.post('/metric', undefined, `{"session_id": ${S}, "name": "h", "type": "histogram", "value": 0.05, "metadata": {"buckets": [0.1, Infinity]}}`);
  t.equal(h2.status, 200);

  for (const [token, what] of [
    ['NaN', 'NaN'],
    ['Infinity', 'Infinity'],
    ['-Infinity', '-Infinity'],
  ]) {
    const res = await api.post('/metric', undefined, `{"session_id": ${S}, "name": "g", "value": ${token}}`);
    t.same([res.status, res.body.error], [400, 'invalid_field'], `a metric value ${what} is refused as invalid_field, not 500`);
    t.match(res.body.details, /value must be a finite number/);
  }
  // Outside number fields the tokens arrive as strings; inside strings nothing changes.
  const event = `{"session_id": ${S}, "name": "e", "message": "x: NaN, \\"Infinity\\"", "data": {"ratio": NaN, "top": Infinity, "low": -Infinity, "list": [NaN]}}`;
  t.equal((await api.post('/event', undefined, event)).status, 200);
  const ev = (await api.get(`/session?session_id=${id}`)).body.events.at(-1);
  t.equal(ev.message, 'x: NaN, "Infinity"', 'text inside strings is left alone');
  t.same(ev.data, { ratio: 'nan', top: 'inf', low: '-inf', list: ['nan'] });
  // Still broken JSON: the original parse error.
  for (const raw of [`{"session_id": ${S}, "name": "e", "data": {"v": NaN}`, `{"a": NaNx}`, `{"a": Infinit}`, `{"a": 1 NaN}`]) {
    const res = await api.post('/event', undefined, raw);
    t.same([res.status, res.body.error], [400, 'bad_request'], `${raw} is still bad_request`);
    t.match(res.body.details, /not valid JSON/);
  }

  await api.ok('/end', { session_id: id });
  await until(() => upstream.sessions.get(id)?.ended === true, 'end upstream');
  const histograms = opsOf(upstream, id, 'metric').filter((m) => m.type === 'histogram');
  t.equal(histograms.length, 1, 'one histogram snapshot before the end');
  t.same(histograms[0].metadata.buckets, [{ le: 0.1, count: 1 }, { le: '+Inf', count: 1 }], 'the bucket bounds, +Inf last (0.05 in the first, 0.5 past it)');
  t.equal(histograms[0].metadata.count, 2);
});

t.test('the token scanner: only bare tokens outside strings, only on the failure path', async (t) => {
  const { nonFiniteTokensAsStrings } = await import('../dist/src/protocol/json-tokens.js');
  t.equal(nonFiniteTokensAsStrings('{"a": 1}'), null, 'nothing to replace');
  t.equal(nonFiniteTokensAsStrings('{"a": "NaN"}'), null, 'a token inside a string is text');
  t.equal(nonFiniteTokensAsStrings('[NaN,Infinity,-Infinity]'), '["nan","inf","-inf"]');
  t.equal(nonFiniteTokensAsStrings('{"a\\"": NaN}'), '{"a\\"": "nan"}', 'escaped quotes do not end a string');
  t.equal(nonFiniteTokensAsStrings('{"a": xNaN}'), null, 'not a value position');
  t.equal(nonFiniteTokensAsStrings('{"a": NaNa}'), null, 'not a whole token');
  // What it costs, on the failure path only: a 4 MiB body with one NaN at the end.
  const big = `{"data": {"s": "${'x'.repeat(4 * 1024 * 1024 - 40)}", "v": NaN}}`;
  const start = process.hrtime.bigint();
  const fixed = nonFiniteTokensAsStrings(big)!;
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  t.ok(JSON.parse(fixed).data.v === 'nan');
  t.comment(`scanned ${(big.length / 1048576).toFixed(1)} MiB in ${ms.toFixed(1)} ms`);
});

/** Sends `bytes` on a fresh connection (without half-closing it) and collects what comes back until the daemon closes it. */
function rawExchange(port: number, bytes: string, timeoutMs = 5000): Promise<{ text: string; closedBy: 'server' | 'timeout' }> {
  return new Promise((resolve, reject) => {
    const socket = connectTcp(port, '127.0.0.1', () => socket.write(bytes));
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ text, closedBy: 'timeout' });
    }, timeoutMs);
    socket.on('data', (d) => (text += d));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ text, closedBy: 'server' });
    });
    socket.on('error', reject);
  });
}

/** Splits a byte stream into HTTP/1.1 responses (each with a content-length). */
function responses(text: string): Array<{ status: number; headers: Record<string, string>; body: any }> {
  const out: Array<{ status: number; headers: Record<string, string>; body: any }> = [];
  let rest = text;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) throw new Error(`incomplete response: ${JSON.stringify(rest.slice(0, 200))}`);
    const [statusLine, ...lines] = rest.slice(0, end).split('\r\n');
    const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
    const length = Number(headers['content-length']);
    const body = rest.slice(end + 4, end + 4 + length);
    out.push({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine!)![1]), headers, body: JSON.parse(body) });
    rest = rest.slice(end + 4 + length);
  }
  return out;
}

t.test('parse errors get a JSON answer even with a request in flight; answers owed go out first', async (t) => {
  const { api, url } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9' });
  const port = Number(new URL(url).port);
  const id = await api.register();

  // (a) A chunked body with a bad chunk size: no answer had been written for this request.
  const chunked = await rawExchange(port, 'POST /state HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n');
  t.equal(chunked.closedBy, 'server', 'the daemon closes the connection');
  const [a, ...moreA] = responses(chunked.text);
  t.equal(a?.status, 400, 'a bad chunk size gets a 400');
  t.equal(a?.body.error, 'bad_request');
  t.match(a?.body.details, /could not be parsed as HTTP/);
  t.equal(a?.headers['connection'], 'close');
  t.same(moreA, [], 'one answer');

  // (b) A valid request with its exact Content-Length, then garbage on the same connection.
  const body = JSON.stringify({ session_id: id, state: { b: 1 } });
  const valid = `POST /state HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  const garbage = await rawExchange(port, `${valid}GARBAGE\r\n\r\n`);
  t.equal(garbage.closedBy, 'server');
  const answers = responses(garbage.text);
  t.same(answers.map((r) => r.status), [200, 400], 'the 200 of the valid request, then a 400 for the garbage');
  t.same(answers[0]?.body, { status: 'ok' });
  t.equal(answers[1]?.body.error, 'bad_request');
  t.equal(answers[1]?.headers['connection'], 'close');
  t.same((await api.get(`/session?session_id=${id}`)).body.state, { b: 1 }, 'the valid request was persisted (and said so)');

  // Pipelined: two valid requests, then garbage; both answers come, in order, before the 400.
  const second = JSON.stringify({ session_id: id, state: { c: 2 } });
  const pipelined = await rawExchange(
    port,
    `${valid}POST /state HTTP/1.1\r\nHost: x\r\nContent-Length: ${Buffer.byteLength(second)}\r\n\r\n${second}GARBAGE\r\n\r\n`,
  );
  t.same(responses(pipelined.text).map((r) => r.status), [200, 200, 400], 'pipelined answers first, then the 400');
  t.same((await api.get(`/session?session_id=${id}`)).body.state, { b: 1, c: 2 });

  // An idle connection whose next request is garbage: as before, a 400 and a close.
  const idle = await rawExchange(port, 'GARBAGE\r\n\r\n');
  t.same(responses(idle.text).map((r) => [r.status, r.body.error]), [[400, 'bad_request']]);
  t.equal((await api.get('/health')).status, 200, 'still serving');
});

t.test('shutdown: a request that arrives on an existing connection gets 503 shutting_down; one in progress gets its answer', async (t) => {
  const { api, url, daemon } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9' });
  const port = Number(new URL(url).port);
  const id = await api.register();
  const open = (): Promise<{ socket: Socket; text: () => string; closed: Promise<void> }> =>
    new Promise((resolve) => {
      let text = '';
      const socket = connectTcp(port, '127.0.0.1', () => resolve({ socket, text: () => text, closed }));
      const closed = new Promise<void>((r) => socket.on('close', () => r()));
      socket.on('data', (d) => (text += d));
      socket.on('error', () => undefined);
    });
  const body = JSON.stringify({ session_id: id, state: { during: 'shutdown' } });
  const head = `POST /state HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
  // One connection is in the middle of a request (headers read, body on its way): in progress.
  const inProgress = await open();
  inProgress.socket.write(head + body.slice(0, 10));
  // Another has sent part of its request line only: the request arrives after shutdown began.
  const arriving = await open();
  arriving.socket.write('POST /sta');
  // Let the daemon read both (a round trip on a third connection comes after them).
  await new Promise((r) => setTimeout(r, 50));
  t.equal((await api.get('/health')).status, 200);

  const closing = daemon.http.close();
  inProgress.socket.write(body.slice(10));
  arriving.socket.write(head.slice('POST /sta'.length) + body);
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('the daemon kept the connections open')), 5000).unref());
  await Promise.race([Promise.all([inProgress.closed, arriving.closed]), timeout]);

  const [done] = responses(inProgress.text());
  t.equal(done?.status, 200, 'the request in progress gets its real answer');
  t.equal(done?.headers['connection'], 'close', '…and the connection is closed after it');
  const [refused, ...more] = responses(arriving.text());
  t.equal(refused?.status, 503);
  t.equal(refused?.body.error, 'shutting_down');
  t.type(refused?.body.details, 'string');
  t.equal(refused?.headers['connection'], 'close');
  t.equal(refused?.headers['retry-after'], '1');
  t.same(more, []);
  await closing;
  t.equal(daemon.health().queue.depth, 2, 'create + the one state op in progress: the refused one was not persisted');
});

t.test('SIGTERM with busy keep-alive clients: no 200 for a request sent after the shutdown began; exit 0', async (t) => {
  // An upstream that accepts and never answers: the sync actor waits out its grace on close.
  const held: Socket[] = [];
  const silent = createTcpServer((s) => {
    held.push(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => {
    for (const s of held) s.destroy();
    silent.close();
  });
  const upstreamUrl = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
  const d = await spawnDaemon(t, ['--data-dir', t.testdir(), '--server-url', upstreamUrl, '--register-timeout-ms', '50']);
  const id = await d.api.register();

  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const post = (n: number): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const payload = JSON.stringify({ session_id: id, state: { n } });
      const req = httpRequest(`${d.url}/state`, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, body: text }));
      });
      req.on('error', reject);
      req.end(payload);
    });
  const results: Array<{ sentAt: number; status: number | string }> = [];
  let exited = false;
  void d.exited.then(() => (exited = true));
  const loop = (async () => {
    for (let n = 0; !exited; n++) {
      const sentAt = Date.now();
      try {
        results.push({ sentAt, status: (await post(n)).status });
      } catch (err) {
        results.push({ sentAt, status: (err as NodeJS.ErrnoException).code ?? 'error' });
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  })();
  await until(() => results.filter((r) => r.status === 200).length >= 50, 'the keep-alive client is busy');
  const sigAt = Date.now();
  d.proc.kill('SIGTERM');
  const exit = await d.exited;
  await loop;
  t.same(exit, { code: 0, signal: null }, 'the daemon exits 0');
  const after = results.filter((r) => r.sentAt > sigAt + 100);
  const late200 = after.filter((r) => r.status === 200);
  const tally = (list: typeof results) => Object.entries(list.reduce<Record<string, number>>((acc, r) => ((acc[r.status] = (acc[r.status] ?? 0) + 1), acc), {}));
  t.comment(`after SIGTERM: ${JSON.stringify(tally(results.filter((r) => r.sentAt >= sigAt)))}`);
  t.equal(late200.length, 0, 'no request sent more than 100 ms after SIGTERM was answered 200');
  t.ok(after.length > 0, 'the client kept trying during the shutdown');
});

t.test("the TypeScript client's logEvent sends level, and a string stack trace arrives as lines", async (t) => {
  const { connect } = await import('../dist/src/client/index.js');
  const { url } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9' });
  const client = connect({ url: url.replace(/^http/, 'ws') });
  t.teardown(() => client.close());
  const session = await client.register({ product: 'lv', version: '1' });
  session.logEvent('warned', { level: 'warning', category: 'app.db', stacktrace: 'a\nb\n' });
  await client.flush();
  const [event] = (await session.getDetails()).events as any[];
  t.match(event, { name: 'warned', level: 'warning', category: 'app.db', stacktrace: ['a', 'b'] });
});
