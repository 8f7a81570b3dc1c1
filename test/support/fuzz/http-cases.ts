/**
 * HTTP cases: one request (or, for `lifecycle`, a short sequence), with the status and `error`
 * code README.md "Errors" gives for what was done to it. Never a 5xx.
 */
import type { Rng } from './prng.js';
import { HTTP_STATUS, LIMITS, type ErrorCode } from './limits.js';
import { ENDED, CRASHED, HTTP_KINDS, LIVE_SESSIONS, afterEnd, live, opCase, validOp } from './op-cases.js';
import { toJson } from './json.js';
import { nameStr, str } from './values.js';

export interface HttpExpect {
  status: number;
  /** The `error` code of the answer; absent for a 200. */
  error?: ErrorCode;
}

export interface HttpCase {
  mutation: string;
  method: string;
  path: string;
  /** Query parameters; values may be session placeholders (`<live:N>`, `<ended>`, `<new>`). */
  query?: Array<[string, string]>;
  /** The body: JSON (serialized by the driver after resolving ids), text, or bytes. */
  body?: { json: unknown } | { text: string } | { bytes: Buffer };
  /** Pad the final body with spaces to exactly this many bytes (after ids are resolved). */
  padTo?: number;
  /** Send without content-length (chunked). */
  chunked?: boolean;
  expect: HttpExpect;
  note: string;
  /** `lifecycle`: requests run in order; `<new>` is the session the first one registered. */
  steps?: HttpCase[];
}

const POST_PATHS = ['/register', '/state', '/event', '/metric', '/heartbeat', '/pause_heartbeat', '/resume_heartbeat', '/end', '/flush', '/queue/replay'];
const GET_PATHS = ['/session', '/sessions', '/health', '/queue', '/metrics'];
const ok: HttpExpect = { status: 200 };
const refused = (error: ErrorCode): HttpExpect => ({ status: HTTP_STATUS[error], error });
const liveId = (rng: Rng): string => live(rng.int(LIVE_SESSIONS));

/** A valid body for POST /<kind> to a live session, as JSON text. */
function validBodyText(rng: Rng): { kind: string; text: string } {
  const kind = rng.pick(['state', 'event', 'metric', 'heartbeat']);
  return { kind, text: toJson(validOp(rng, kind, 'http', liveId(rng))) };
}

interface HttpMutation {
  name: string;
  weight: number;
  make(rng: Rng): Omit<HttpCase, 'mutation'>;
}

const MUTATIONS: HttpMutation[] = [
  {
    name: 'op',
    weight: 70,
    make(rng) {
      const c = opCase(rng, 'http');
      const expect = 'ok' in c.expect ? ok : refused(c.expect.code);
      return { method: 'POST', path: `/${c.kind}`, body: { json: c.op }, expect, note: `${c.mutation}: ${c.note}` };
    },
  },
  {
    name: 'malformed_json',
    weight: 5,
    make(rng) {
      const { kind, text } = validBodyText(rng);
      const cut = rng.int(text.length); // a proper prefix of a JSON object is never JSON
      return { method: 'POST', path: `/${kind}`, body: { text: text.slice(0, cut) }, expect: refused('bad_request'), note: `JSON cut at ${cut} of ${text.length}` };
    },
  },
  {
    name: 'random_bytes',
    weight: 3,
    make(rng) {
      const bytes = rng.bytes(rng.logRange(1, 4000));
      if (/^\s*\{/.test(bytes.toString('latin1'))) bytes[0] = 0xff; // never a JSON object
      return { method: 'POST', path: rng.pick(POST_PATHS.slice(0, 8)), body: { bytes }, expect: refused('bad_request'), note: `${bytes.length} random bytes` };
    },
  },
  {
    name: 'trailing_garbage',
    weight: 2,
    make(rng) {
      const { kind, text } = validBodyText(rng);
      const tail = rng.pick(['}', 'x', ',{}', '{}', '\u0000', ' 1', ']']);
      return { method: 'POST', path: `/${kind}`, body: { text: text + tail }, expect: refused('bad_request'), note: `valid JSON followed by ${JSON.stringify(tail)}` };
    },
  },
  {
    name: 'json_not_object',
    weight: 2,
    make(rng) {
      const text = rng.pick(['null', '[]', '"event"', '1', 'true', '[{"session_id":"<live:0>","name":"x"}]', '1e999', '""']);
      return { method: 'POST', path: rng.pick(POST_PATHS.slice(0, 8)), body: { text }, expect: refused('bad_request'), note: `body ${text}` };
    },
  },
  {
    name: 'empty_body',
    weight: 1,
    make(rng) {
      return { method: 'POST', path: rng.pick(POST_PATHS.slice(0, 8)), body: { text: '' }, expect: refused('bad_request'), note: 'no body' };
    },
  },
  {
    name: 'body_at_limit',
    weight: 1,
    make(rng) {
      const { kind, text } = validBodyText(rng);
      return { method: 'POST', path: `/${kind}`, body: { text }, padTo: LIMITS.max_body_bytes, chunked: rng.chance(0.3), expect: ok, note: `a valid body padded to exactly max_body_bytes` };
    },
  },
  {
    name: 'body_over_limit',
    weight: 2,
    make(rng) {
      const { kind, text } = validBodyText(rng);
      const size = rng.chance(0.4) ? LIMITS.max_body_bytes + 1 : rng.range(LIMITS.max_body_bytes + 1, 4 * LIMITS.max_body_bytes);
      const chunked = rng.chance(0.3);
      return { method: 'POST', path: `/${kind}`, body: { text }, padTo: size, chunked, expect: refused('payload_too_large'), note: `a ${size}-byte body${chunked ? ', chunked' : ''}` };
    },
  },
  {
    name: 'unknown_path',
    weight: 2,
    make(rng) {
      const path = rng.pick(['/events', '/State', '/state/', '//state', '/api/sessions', '/ws', '/health/', '/', '/%73tate', '/session/', '/register.json', `/${str(rng, 6, 'ascii')}`, '/queue/replay/x']);
      const method = rng.pick(['GET', 'POST']);
      return { method, path, body: method === 'POST' ? { text: '{}' } : undefined, expect: refused('not_found'), note: `no endpoint ${method} ${path}` };
    },
  },
  {
    name: 'wrong_method',
    weight: 2,
    make(rng) {
      const post = rng.chance(0.5);
      const path = rng.pick(post ? POST_PATHS : GET_PATHS);
      const method = rng.pick(post ? ['GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] : ['POST', 'PUT', 'DELETE', 'PATCH']);
      return { method, path, body: method === 'GET' || method === 'OPTIONS' ? undefined : { text: '{}' }, expect: refused('method_not_allowed'), note: `${method} ${path}` };
    },
  },
  {
    name: 'read_unknown_session',
    weight: 2,
    make(rng) {
      const id = rng.pick([`local-session-${rng.u32()}-${rng.int(99)}`, `srv-${rng.u32()}`, nameStr(rng), '<live:99>', ' ']);
      const path = rng.pick(['/session', '/queue']);
      return { method: 'GET', path, query: [['session_id', id]], expect: refused('unknown_session'), note: `GET ${path} for a session that does not exist` };
    },
  },
  {
    name: 'read_without_id',
    weight: 1,
    make(rng) {
      return { method: 'GET', path: '/session', query: rng.chance(0.5) ? [['session_id', '']] : [], expect: refused('invalid_field'), note: 'GET /session without session_id' };
    },
  },
  {
    name: 'bad_queue_limit',
    weight: 1,
    make(rng) {
      const limit = rng.pick(['0', '10001', '-1', '1.5', 'abc', 'NaN', 'Infinity', ' ', '1e9']);
      return { method: 'GET', path: '/queue', query: [['limit', limit]], expect: refused('invalid_field'), note: `GET /queue?limit=${limit}` };
    },
  },
  {
    name: 'valid_read',
    weight: 2,
    make(rng) {
      switch (rng.int(8)) {
        case 0:
          return { method: 'GET', path: '/health', expect: ok, note: 'GET /health' };
        case 1:
          return { method: 'GET', path: '/queue', query: [['session_id', liveId(rng)], ['limit', String(rng.range(1, 5))]], expect: ok, note: 'GET /queue for a live session' };
        case 2:
          return { method: 'GET', path: '/queue', query: [['dead', '1'], ['limit', '1']], expect: ok, note: 'GET /queue?dead=1' };
        default:
          return { method: 'GET', path: '/session', query: [['session_id', rng.pick([liveId(rng), ENDED, CRASHED])]], expect: ok, note: 'GET /session' };
      }
    },
  },
  {
    name: 'lifecycle',
    weight: 0.3,
    make(rng) {
      const product = nameStr(rng);
      const late = rng.pick(HTTP_KINDS.filter((k) => k !== 'register'));
      const lateExpect = afterEnd(late);
      const steps: HttpCase[] = [
        { mutation: 'lifecycle', method: 'POST', path: '/register', body: { json: { product, version: '1' } }, expect: ok, note: 'register' },
        { mutation: 'lifecycle', method: 'POST', path: '/event', body: { json: { session_id: '<new>', name: 'start' } }, expect: ok, note: 'an event' },
        { mutation: 'lifecycle', method: 'POST', path: '/end', body: { json: { session_id: '<new>' } }, expect: ok, note: 'end' },
        { mutation: 'lifecycle', method: 'POST', path: `/${late}`, body: { json: { session_id: '<new>', name: 'late', value: 1, state: { level: 1 } } }, expect: 'ok' in lateExpect ? ok : refused(lateExpect.code), note: `${late} after end` },
        { mutation: 'lifecycle', method: 'GET', path: '/session', query: [['session_id', '<new>']], expect: ok, note: 'read the ended session' },
      ];
      return { method: 'POST', path: '/register', expect: ok, note: 'register, event, end, an op after end, read', steps };
    },
  },
  {
    name: 'flush',
    weight: 0.2,
    make() {
      return { method: 'POST', path: '/flush', body: { text: '{}' }, expect: ok, note: 'POST /flush (upstream down: resets the backoff)' };
    },
  },
];

const TABLE: Array<[number, HttpMutation]> = MUTATIONS.map((m) => [m.weight, m]);

export function httpCase(rng: Rng): HttpCase {
  const m = rng.weighted(TABLE);
  return { mutation: m.name, ...m.make(rng) };
}
