import t from 'tap';
import { startTestDaemon, JsonClient } from './support/daemon-harness.js';
import { connect as connectTcp } from 'node:net';

t.test('every error answers JSON {error, details} with the CONTRACT §2 status', async (t) => {
  const { api, url } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9', max_body_bytes: 2048, max_depth: 8 });
  const id = await api.register();
  const cases: Array<[string, () => Promise<{ status: number; body: any }>, number, string]> = [
    ['malformed JSON', () => api.post('/event', undefined, '{"session_id": '), 400, 'bad_request'],
    ['not an object', () => api.post('/event', [1, 2]), 400, 'bad_request'],
    ['empty body', () => api.post('/state', undefined), 400, 'bad_request'],
    ['missing field', () => api.post('/event', { session_id: id }), 400, 'invalid_field'],
    ['wrong type', () => api.post('/metric', { session_id: id, name: 'x', value: 'fast' }), 400, 'invalid_field'],
    ['wrong metric type', () => api.post('/metric', { session_id: id, name: 'x', value: 1, type: 'meter' }), 400, 'invalid_field'],
    ['state not an object', () => api.post('/state', { session_id: id, state: [1] }), 400, 'invalid_field'],
    ['register without product', () => api.post('/register', { version: '1' }), 400, 'invalid_field'],
    ['too deep', () => api.post('/state', { session_id: id, state: nest(20) }), 400, 'too_deep'],
    ['name too long', () => api.post('/event', { session_id: id, name: 'n'.repeat(300) }), 400, 'too_long'],
    ['unknown session', () => api.post('/event', { session_id: 'nope', name: 'x' }), 404, 'unknown_session'],
    ['unknown session read', () => api.get('/session?session_id=nope'), 404, 'unknown_session'],
    ['read without id', () => api.get('/session'), 400, 'invalid_field'],
    ['unknown path', () => api.get('/nowhere'), 404, 'not_found'],
    ['wrong method', () => api.get('/event'), 405, 'method_not_allowed'],
    ['wrong method on a GET route', () => api.post('/sessions', {}), 405, 'method_not_allowed'],
    ['body over max_body_bytes', () => api.post('/event', { session_id: id, name: 'x', message: 'm'.repeat(4000) }), 413, 'payload_too_large'],
  ];
  for (const [what, call, status, code] of cases) {
    const res = await call();
    t.equal(res.status, status, `${what}: ${status}`);
    t.equal(res.body?.error, code, `${what}: error ${code}`);
    t.type(res.body?.details, 'string', `${what}: details say what to fix`);
  }
  const wrongMethod = await fetch(url + '/event');
  t.equal(wrongMethod.headers.get('allow'), 'POST', '405 names the allowed method');
  const getOnly = await fetch(url + '/sessions', { method: 'PUT' });
  t.equal(getOnly.headers.get('allow'), 'GET, HEAD', 'a GET route also takes HEAD');
  const head = await fetch(url + '/health', { method: 'HEAD' });
  t.equal(head.status, 200, 'HEAD /health');
  t.equal(head.headers.get('content-type'), 'application/json');
  t.equal(await head.text(), '', 'no body');
  await api.ok('/end', { session_id: id });
  const ended = await api.post('/event', { session_id: id, name: 'late' });
  t.equal(ended.status, 400, 'an event after end is refused');
  t.equal(ended.body.error, 'session_ended');
  t.equal((await api.post('/end', { session_id: id })).status, 200, 'ending again is not an error (an exit handler may end it twice)');
  t.equal((await api.post('/heartbeat', { session_id: id })).status, 200, 'nor is a heartbeat racing the end');
  t.equal((await api.post('/state', { session_id: id, state: { a: 1 } })).status, 400, 'but state is refused');
  t.equal((await api.get('/health')).status, 200, 'the daemon is fine after all that');
});

t.test('auth_token: 401 without or with a wrong token; /health stays open', async (t) => {
  const { url } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9', auth_token: 's3cret' });
  const anon = new JsonClient(url);
  const wrong = new JsonClient(url, { authorization: 'Bearer nope' });
  const right = new JsonClient(url, { authorization: 'Bearer s3cret' });
  t.equal((await anon.post('/register', { product: 'p', version: '1' })).status, 401);
  t.equal((await wrong.post('/register', { product: 'p', version: '1' })).body.error, 'unauthorized');
  t.equal((await anon.get('/sessions')).status, 401);
  t.equal((await anon.get('/health')).status, 200);
  t.equal((await right.post('/register', { product: 'p', version: '1' })).status, 200);
  const lower = new JsonClient(url, { authorization: 'bearer s3cret' });
  t.equal((await lower.post('/register', { product: 'p', version: '1' })).status, 200, 'the scheme name is case-insensitive');
  const refused = await anon.post('/register', { product: 'p', version: '1' });
  t.equal(refused.headers.get('www-authenticate'), 'Bearer realm="datacat-daemon"', 'a 401 says which scheme it wants');
});

t.test('/flush and /queue/replay take {} or nothing; query flags read 1, true or yes', async (t) => {
  const { api } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9' });
  for (const path of ['/flush', '/queue/replay']) {
    t.equal((await api.post(path, {})).status, 200, `${path} {}`);
    t.equal((await api.post(path, undefined, '')).status, 200, `${path} without a body`);
    for (const raw of ['[1]', '5', 'null']) {
      const res = await api.post(path, undefined, raw);
      t.same([res.status, res.body.error], [400, 'bad_request'], `${path} ${raw}`);
    }
  }
  t.same((await api.post('/flush?wait=YES', {})).body, { status: 'ok', depth: 0 }, 'wait=YES waits (nothing queued here: at once)');
});

t.test('__proto__, constructor and prototype keys are refused and pollute nothing', async (t) => {
  const { api } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9' });
  const id = await api.register();
  const attacks = [
    `{"session_id":"${id}","state":{"__proto__":{"polluted":true}}}`,
    `{"session_id":"${id}","state":{"a":{"__proto__":{"polluted":true}}}}`,
    `{"session_id":"${id}","state":{"constructor":{"prototype":{"polluted":true}}}}`,
    `{"session_id":"${id}","state":{"a":{"prototype":{"polluted":true}}}}`,
  ];
  for (const raw of attacks) {
    const res = await api.post('/state', undefined, raw);
    t.equal(res.status, 400, raw);
    t.equal(res.body.error, 'forbidden_key');
  }
  const event = await api.post('/event', undefined, `{"session_id":"${id}","name":"x","data":{"__proto__":{"polluted":true}}}`);
  t.equal(event.body.error, 'forbidden_key', 'refused in event data too');
  t.equal(({} as any).polluted, undefined, 'Object.prototype untouched in the daemon process');
  const view = (await api.get(`/session?session_id=${id}`)).body;
  t.same(view.state, {}, 'the session state is untouched');
});

function nest(depth: number): Record<string, unknown> {
  let v: Record<string, unknown> = { leaf: 1 };
  for (let i = 0; i < depth; i++) v = { d: v };
  return v;
}

t.test("what Node's HTTP parser refuses is answered as JSON {error, details} too, and the daemon serves on", async (t) => {
  const { url, api } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9' });
  const { port } = new URL(url);
  const raw = (request: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const socket = connectTcp(Number(port), '127.0.0.1', () => socket.end(request));
      let answer = '';
      socket.on('data', (d) => (answer += d));
      socket.on('close', () => resolve(answer));
      socket.on('error', reject);
    });
  const longUrl = await raw(`GET /session?session_id=${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
  t.match(longUrl, /^HTTP\/1\.1 431 /);
  t.match(JSON.parse(longUrl.slice(longUrl.indexOf('\r\n\r\n') + 4)), { error: 'headers_too_large', details: /16 KiB/ });
  const badLength = await raw('POST /event HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}');
  t.match(badLength, /^HTTP\/1\.1 400 /);
  t.match(JSON.parse(badLength.slice(badLength.indexOf('\r\n\r\n') + 4)), { error: 'bad_request', details: /could not be parsed/ });
  t.equal((await api.get('/health')).status, 200, 'still serving');
});

t.test('a body declared over max_body_bytes gets its 413, not a reset; with Expect: 100-continue before it is sent', async (t) => {
  const { url, api } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9' });
  const { port } = new URL(url);
  // Like Python's http.client: the whole body goes out before the answer is read.
  const sendAll = (head: string, body: Buffer | null): Promise<{ answer: string; error: string | null }> =>
    new Promise((resolve) => {
      const socket = connectTcp(Number(port), '127.0.0.1', () => {
        socket.write(head);
        if (body) socket.write(body);
      });
      let answer = '';
      socket.on('data', (d) => {
        answer += d;
        if (answer.includes('}')) socket.end();
      });
      socket.on('error', (err) => resolve({ answer, error: (err as NodeJS.ErrnoException).code ?? err.message }));
      socket.on('close', () => resolve({ answer, error: null }));
    });
  const size = 8 * 1024 * 1024;
  for (let i = 0; i < 3; i++) {
    const got = await sendAll(`POST /state HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${size}\r\n\r\n`, Buffer.alloc(size, 0x20));
    t.equal(got.error, null, 'no reset');
    t.match(got.answer, /^HTTP\/1\.1 413 [^]*"error":"payload_too_large"/);
  }
  const early = await sendAll(`POST /state HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: ${size}\r\n\r\n`, null);
  t.match(early.answer, /^HTTP\/1\.1 413 /, 'answered before the body, with no 100 Continue');
  t.equal((await api.get('/health')).status, 200);
});
