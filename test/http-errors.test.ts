import t from 'tap';
import { startTestDaemon, JsonClient } from './support/daemon-harness.js';

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
  await api.ok('/end', { session_id: id });
  const ended = await api.post('/event', { session_id: id, name: 'late' });
  t.equal(ended.status, 400, 'an op after end is refused');
  t.equal(ended.body.error, 'session_ended');
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
