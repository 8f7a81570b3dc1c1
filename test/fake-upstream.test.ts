/**
 * Tests for the fake DataCat upstream (test/support/fake-upstream.ts).
 * Real sockets throughout: the daemon's tests depend on the fake's network behaviour.
 */
import t from 'tap';
import { Agent, request as httpRequest } from 'node:http';
import { gzipSync } from 'node:zlib';
import { startFakeUpstream } from './support/fake-upstream.js';
import type { FakeUpstream } from './support/fake-upstream.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
  reusedSocket: boolean;
}

/**
 * Minimal node:http client. Default `agent: false` (fresh connection per request) keeps the
 * socket-fault tests deterministic; pass a keep-alive Agent to test connection reuse.
 */
function call(
  baseUrl: string,
  method: string,
  path: string,
  opts: { body?: unknown; raw?: Buffer | string; headers?: Record<string, string>; agent?: Agent | false } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload =
      opts.raw !== undefined ? opts.raw : opts.body !== undefined ? JSON.stringify(opts.body) : undefined;
    const req = httpRequest(
      `${baseUrl}${path}`,
      {
        method,
        agent: opts.agent ?? false,
        headers: {
          ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) } : {}),
          ...opts.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: text === '' ? null : JSON.parse(text),
            reusedSocket: req.reusedSocket,
          });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** Resolve with the client-side error code (ECONNRESET, ECONNREFUSED, ...) or fail if the call succeeded. */
async function socketError(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return String((err as NodeJS.ErrnoException).code ?? (err as Error).message);
  }
  throw new Error('expected a socket error, but the request succeeded');
}

const SOCKET_ERRORS = ['ECONNRESET', 'EPIPE', 'ECONNREFUSED', 'ECONNABORTED', 'socket hang up'];

const createBody = { product: 'demo', version: '1.2.3', machine_id: 'm-1', hostname: 'box' };

/** A started fake that is closed when the (sub)test ends. */
async function fresh(t: { teardown(fn: () => unknown): void }): Promise<FakeUpstream> {
  const fake = await startFakeUpstream();
  t.teardown(() => fake.close());
  return fake;
}

t.test('create then state/event/metric/heartbeat/end are applied and recorded in order', async (t) => {
  const fake = await fresh(t);

  // Global fetch (undici, keep-alive) as the daemon would use it.
  const r1 = await fetch(`${fake.url}/api/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(createBody),
  });
  t.equal(r1.status, 201);
  t.same(await r1.json(), { session_id: 'srv-1', id: 'srv-1' });

  const r2 = await fetch(`${fake.url}/api/sessions`, {
    method: 'POST',
    body: JSON.stringify({ ...createBody, machine_id: 'm-2' }),
  });
  t.same(await r2.json(), { session_id: 'srv-2', id: 'srv-2' });

  const ops: Array<[string, unknown]> = [
    ['state', { timestamp: 1, state: { a: 1 } }],
    ['events', { timestamp: 2, name: 'click', data: { x: 1 } }],
    ['metrics', { timestamp: 3, name: 'fps', type: 'gauge', value: 60 }],
    ['heartbeat', {}],
    ['end', {}],
  ];
  for (const [route, body] of ops) {
    const r = await fetch(`${fake.url}/api/sessions/srv-1/${route}`, { method: 'POST', body: JSON.stringify(body) });
    t.equal(r.status, 200, route);
    t.same(await r.json(), { status: 'ok' });
  }

  t.same(
    fake.requests.map((r) => [r.seq, r.kind, r.sessionId, r.outcome, r.status]),
    [
      [1, 'create', null, 'applied', 201],
      [2, 'create', null, 'applied', 201],
      [3, 'state', 'srv-1', 'applied', 200],
      [4, 'event', 'srv-1', 'applied', 200],
      [5, 'metric', 'srv-1', 'applied', 200],
      [6, 'heartbeat', 'srv-1', 'applied', 200],
      [7, 'end', 'srv-1', 'applied', 200],
    ],
  );
  t.same(fake.requests[4]!.body, { timestamp: 3, name: 'fps', type: 'gauge', value: 60 }, 'body kept as received');
  t.equal(fake.applied({ sessionId: 'srv-1' }).length, 5);
  t.equal(fake.applied({ kind: 'create' }).length, 2);

  const s1 = fake.sessions.get('srv-1')!;
  t.same(s1.create, createBody);
  t.same(
    s1.ops.map((o) => o.kind),
    ['state', 'event', 'metric', 'heartbeat', 'end'],
  );
  t.equal(s1.ended, true);
  t.equal(s1.crashed, false);

  // crash on the other session, then the read endpoints
  const rc = await call(fake.url, 'POST', '/api/sessions/srv-2/crash', { body: { reason: 'segfault' } });
  t.equal(rc.status, 200);
  t.equal(fake.sessions.get('srv-2')!.crashed, true);

  const one = await call(fake.url, 'GET', '/api/sessions/srv-1');
  t.equal(one.status, 200);
  t.equal(one.body.id, 'srv-1');
  t.same(one.body.create, createBody);
  t.equal(one.body.ops.length, 5);
  const all = await call(fake.url, 'GET', '/api/data/sessions');
  t.same(
    all.body.map((s: { id: string }) => s.id),
    ['srv-1', 'srv-2'],
  );
  t.equal(fake.applied({ kind: 'read' }).length, 2);
});

t.test('unknown session → 404 rejected; unknown path → 404; bad JSON → 400', async (t) => {
  const fake = await fresh(t);
  const r1 = await call(fake.url, 'POST', '/api/sessions/srv-99/state', { body: { timestamp: 1, state: {} } });
  t.equal(r1.status, 404);
  t.same(r1.body, { error: 'session not found' });
  const r1b = await call(fake.url, 'GET', '/api/sessions/srv-99');
  t.equal(r1b.status, 404);

  const r2 = await call(fake.url, 'POST', '/nope', { body: {} });
  t.equal(r2.status, 404);

  const r3 = await call(fake.url, 'POST', '/api/sessions', { raw: '{"product": ' });
  t.equal(r3.status, 400);
  t.match(r3.body, { error: /invalid JSON/ });

  t.same(
    fake.requests.map((r) => [r.kind, r.sessionId, r.outcome, r.status]),
    [
      ['state', 'srv-99', 'rejected', 404],
      ['read', 'srv-99', 'rejected', 404],
      ['other', null, 'rejected', 404],
      ['create', null, 'rejected', 400],
    ],
  );
  t.equal(fake.sessions.size, 0);
  t.same(fake.applied(), []);
});

t.test('gzip body is decoded; Authorization header recorded', async (t) => {
  const fake = await fresh(t);
  const r = await fetch(`${fake.url}/api/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', authorization: 'Bearer k-123' },
    body: gzipSync(JSON.stringify(createBody)),
  });
  t.equal(r.status, 201);
  const rec = fake.requests[0]!;
  t.same(rec.body, createBody);
  t.equal(rec.headers.authorization, 'Bearer k-123');
  t.equal(rec.headers['content-encoding'], 'gzip');
  t.same(fake.sessions.get('srv-1')!.create, createBody);

  const bad = await call(fake.url, 'POST', '/api/sessions', { raw: 'not gzip', headers: { 'content-encoding': 'gzip' } });
  t.equal(bad.status, 400, 'corrupt gzip → 400');
});

t.test('status fault with times:2 and retryAfter', async (t) => {
  const fake = await fresh(t);
  fake.addFault({ match: (r) => r.kind === 'create', status: 503, retryAfter: 7, times: 2 });

  const a = await call(fake.url, 'POST', '/api/sessions', { body: createBody });
  const b = await call(fake.url, 'POST', '/api/sessions', { body: createBody });
  const c = await call(fake.url, 'POST', '/api/sessions', { body: createBody });
  t.equal(a.status, 503);
  t.equal(a.headers['retry-after'], '7');
  t.same(a.body, { error: 'injected 503' });
  t.equal(b.status, 503);
  t.equal(b.headers['retry-after'], '7');
  t.equal(c.status, 201);
  t.equal(c.headers['retry-after'], undefined);
  t.same(c.body, { session_id: 'srv-1', id: 'srv-1' }, 'faulted requests do not consume ids');

  t.same(
    fake.requests.map((r) => [r.outcome, r.status]),
    [
      ['faulted', 503],
      ['faulted', 503],
      ['applied', 201],
    ],
  );
  t.same(fake.requests[0]!.body, createBody, 'faulted request body still recorded');
  t.equal(fake.applied().length, 1);

  // HTTP-date Retry-After, the remover, and first-match-wins ordering
  const remove = fake.addFault({ status: 429, retryAfter: 'Wed, 21 Oct 2015 07:28:00 GMT' });
  fake.addFault({ status: 500 });
  const d = await call(fake.url, 'POST', '/api/sessions/srv-1/heartbeat', { body: {} });
  t.equal(d.status, 429);
  t.equal(d.headers['retry-after'], 'Wed, 21 Oct 2015 07:28:00 GMT');
  remove();
  const e = await call(fake.url, 'POST', '/api/sessions/srv-1/heartbeat', { body: {} });
  t.equal(e.status, 500);
  fake.clearFaults();
  const f = await call(fake.url, 'POST', '/api/sessions/srv-1/heartbeat', { body: {} });
  t.equal(f.status, 200);

  t.throws(() => fake.addFault({ status: 500, delayMs: 10 }), /exactly one action/);
  t.throws(() => fake.addFault({}), /exactly one action/);
  t.throws(() => fake.addFault({ delayMs: 5, retryAfter: 1 }), /retryAfter/);
});

t.test('delayMs slows the answer', async (t) => {
  const fake = await fresh(t);
  fake.addFault({ delayMs: 150, times: 1 });
  const t0 = Date.now();
  const r = await call(fake.url, 'POST', '/api/sessions', { body: createBody });
  const elapsed = Date.now() - t0;
  t.equal(r.status, 201);
  t.ok(elapsed >= 140, `elapsed ${elapsed}ms >= ~150ms`);
  t.equal(fake.applied({ kind: 'create' }).length, 1);

  const t1 = Date.now();
  await call(fake.url, 'POST', '/api/sessions', { body: createBody });
  t.ok(Date.now() - t1 < 140, 'rule expired after times:1');
});

t.test('reset before-body / after-body → socket error, nothing applied', async (t) => {
  const fake = await fresh(t);

  fake.addFault({ reset: 'before-body', times: 1 });
  const e1 = await socketError(call(fake.url, 'POST', '/api/sessions', { body: createBody }));
  t.ok(SOCKET_ERRORS.includes(e1), `before-body: client saw ${e1}`);

  fake.addFault({ reset: 'after-body', times: 1, match: (r) => r.body?.product === 'demo' });
  const e2 = await socketError(call(fake.url, 'POST', '/api/sessions', { body: createBody }));
  t.ok(SOCKET_ERRORS.includes(e2), `after-body: client saw ${e2}`);

  t.equal(fake.sessions.size, 0);
  t.same(fake.applied(), []);
  t.same(
    fake.requests.map((r) => [r.kind, r.outcome, r.status, r.body === undefined]),
    [
      ['create', 'faulted', null, true],
      ['create', 'faulted', null, false],
    ],
  );
  t.same(fake.requests[1]!.body, createBody, 'after-body has read the body');

  // Both rules expired: the next create works and gets the first id.
  const ok = await call(fake.url, 'POST', '/api/sessions', { body: createBody });
  t.same(ok.body, { session_id: 'srv-1', id: 'srv-1' });
});

t.test('dropAnswer → socket error, but the op IS applied (in-doubt)', async (t) => {
  const fake = await fresh(t);
  fake.addFault({ dropAnswer: true, times: 1, match: (r) => r.kind === 'create' });
  const e = await socketError(call(fake.url, 'POST', '/api/sessions', { body: createBody }));
  t.ok(SOCKET_ERRORS.includes(e), `client saw ${e}`);
  t.equal(fake.sessions.size, 1);
  t.same(fake.sessions.get('srv-1')!.create, createBody);
  t.match(fake.requests, [{ kind: 'create', outcome: 'applied', status: null }]);
  t.equal(fake.applied({ kind: 'create' }).length, 1);

  // A retry creates a second session — exactly the duplicate the daemon must cope with.
  const retry = await call(fake.url, 'POST', '/api/sessions', { body: createBody });
  t.equal(retry.body.id, 'srv-2');
});

t.test('keep-alive connections are reused; down() kills them and refuses; up() on the same port', async (t) => {
  const fake = await fresh(t);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());

  const a = await call(fake.url, 'POST', '/api/sessions', { body: createBody, agent });
  const b = await call(fake.url, 'POST', '/api/sessions/srv-1/heartbeat', { body: {}, agent });
  t.equal(a.status, 201);
  t.equal(b.status, 200);
  t.equal(b.reusedSocket, true, 'second request reused the keep-alive socket');

  await fake.down();
  const e1 = await socketError(call(fake.url, 'POST', '/api/sessions/srv-1/heartbeat', { body: {}, agent }));
  t.ok(SOCKET_ERRORS.includes(e1), `keep-alive client after down(): ${e1}`);
  const e2 = await socketError(call(fake.url, 'POST', '/api/sessions/srv-1/heartbeat', { body: {} }));
  t.equal(e2, 'ECONNREFUSED');
  const e3 = await fetch(`${fake.url}/api/data/sessions`).then(
    () => 'ok',
    (err: Error & { cause?: { code?: string } }) => err.cause?.code ?? err.message,
  );
  t.equal(e3, 'ECONNREFUSED', 'fetch fails with a connection error');
  await fake.down(); // idempotent

  const port = fake.port;
  await fake.up();
  await fake.up(); // idempotent
  t.equal(fake.port, port);
  const c = await call(fake.url, 'POST', '/api/sessions/srv-1/heartbeat', { body: {}, agent });
  t.equal(c.status, 200, 'state survives down/up');
  const d = await fetch(`${fake.url}/api/sessions/srv-1`);
  t.equal(d.status, 200);
  t.equal((await d.json()).ops.length, 2);
});

t.test('startDown → connection refused until up()', async (t) => {
  const fake = await startFakeUpstream({ startDown: true });
  t.teardown(() => fake.close());
  t.ok(fake.port > 0);
  t.equal(fake.url, `http://127.0.0.1:${fake.port}`);
  const e = await socketError(call(fake.url, 'POST', '/api/sessions', { body: createBody }));
  t.equal(e, 'ECONNREFUSED');
  t.same(fake.requests, []);

  await fake.up();
  const r = await call(fake.url, 'POST', '/api/sessions', { body: createBody });
  t.equal(r.status, 201);
});

t.test('waitFor resolves when the predicate holds and rejects on timeout with the message', async (t) => {
  const fake = await fresh(t);
  const pending = fake.waitFor(() => fake.applied({ kind: 'create' }).length === 1, 2000, 'one create');
  await call(fake.url, 'POST', '/api/sessions', { body: createBody });
  await pending;

  await t.rejects(
    fake.waitFor(() => false, 50, 'the impossible'),
    /timed out after 50ms waiting for the impossible/,
  );
  await t.rejects(
    fake.waitFor(() => {
      throw new Error('boom');
    }),
    /boom/,
  );
});

t.test('reset() forgets requests, sessions and faults and restarts numbering', async (t) => {
  const fake = await fresh(t);
  const requests = fake.requests;
  await call(fake.url, 'POST', '/api/sessions', { body: createBody });
  fake.addFault({ status: 500 });
  fake.reset();
  t.equal(fake.requests, requests, 'same array instance');
  t.same(fake.requests, []);
  t.equal(fake.sessions.size, 0);
  const r = await call(fake.url, 'POST', '/api/sessions', { body: createBody });
  t.equal(r.status, 201, 'faults cleared');
  t.same(r.body, { session_id: 'srv-1', id: 'srv-1' });
  t.equal(fake.requests[0]!.seq, 1);

  await fake.close();
  await t.rejects(fake.up(), /closed/);
});
