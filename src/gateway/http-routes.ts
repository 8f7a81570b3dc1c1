import { ProtocolError } from '../protocol/errors.js';
import type { Limits } from '../protocol/limits.js';
import { validateOp } from '../protocol/validate.js';
import { isPlainObject } from '../protocol/values.js';
import type { Op, OpKind, SessionOp } from '../protocol/ops.js';
import { OK, type Route, type RequestContext, type TextAnswer } from './http-server.js';
import type { Ingest } from './ingest.js';
import type { SessionReads } from './session-reads.js';
import type { QueueItem, QueueQuery } from '../outbox/queue-inspector.js';

/** What the routes need from the daemon; kept narrow so the HTTP layer holds no logic of its own. */
export interface RouteServices {
  ingest: Ingest;
  reads: SessionReads;
  limits: Limits;
  health(): unknown;
  flush(wait: boolean): Promise<{ depth: number }>;
  queue(q: QueueQuery): Promise<{ items: QueueItem[]; total: number } | null>;
  replay(): Promise<number>;
  metrics(): Promise<TextAnswer>;
}

const MAX_QUEUE_LIMIT = 10_000;

const OP_PATHS: ReadonlyArray<[string, Exclude<OpKind, 'register'>]> = [
  ['/state', 'state'],
  ['/event', 'event'],
  ['/metric', 'metric'],
  ['/heartbeat', 'heartbeat'],
  ['/pause_heartbeat', 'pause_heartbeat'],
  ['/resume_heartbeat', 'resume_heartbeat'],
  ['/end', 'end'],
];

/** The DataCat daemon API (CONTRACT §2) as a path → route table. */
export function buildRoutes(s: RouteServices): Map<string, Route> {
  const routes = new Map<string, Route>();

  routes.set('/register', {
    method: 'POST',
    async handle({ body, rt }) {
      const op = validateOp('register', body, s.limits) as Extract<Op, { kind: 'register' }>;
      return { session_id: await s.ingest.register(op.body, rt) };
    },
  });

  for (const [path, kind] of OP_PATHS) {
    routes.set(path, {
      method: 'POST',
      async handle({ body, rt }: RequestContext) {
        const op = validateOp(kind, body, s.limits) as SessionOp;
        const [outcome] = await s.ingest.submit([op], rt);
        // Discarded by overflow drop_newest included: that op is not persisted, so it is no 200.
        if (outcome) throw new ProtocolError(outcome.code, outcome.message);
        return OK;
      },
    });
  }

  routes.set('/session', {
    method: 'GET',
    async handle({ query }) {
      const id = query.get('session_id');
      if (!id) throw new ProtocolError('invalid_field', 'session_id is required: GET /session?session_id=<id>');
      const view = await s.reads.get(id);
      if (!view) throw new ProtocolError('unknown_session', `no session has the id "${id.slice(0, 128)}"`);
      return view;
    },
  });

  routes.set('/sessions', { method: 'GET', handle: () => s.reads.list() });

  routes.set('/health', { method: 'GET', public: true, handle: () => s.health() });

  routes.set('/queue', {
    method: 'GET',
    async handle({ query }) {
      const rawLimit = query.get('limit');
      const limit = rawLimit === null || rawLimit === '' ? 100 : Number(rawLimit);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_QUEUE_LIMIT)
        throw new ProtocolError('invalid_field', `limit must be an integer between 1 and ${MAX_QUEUE_LIMIT}`);
      const sessionId = query.get('session_id') || undefined;
      const dead = isYes(query.get('dead'));
      const answer = await s.queue({ sessionId, limit, dead });
      if (!answer) throw new ProtocolError('unknown_session', `no session has the id "${sessionId!.slice(0, 128)}"`);
      return answer;
    },
  });

  routes.set('/queue/replay', {
    method: 'POST',
    async handle({ body }) {
      noBodyExpected(body, '/queue/replay');
      return { status: 'ok', replayed: await s.replay() };
    },
  });

  routes.set('/metrics', {
    method: 'GET',
    handle: () => s.metrics(),
  });

  routes.set('/flush', {
    method: 'POST',
    async handle({ query, body }) {
      noBodyExpected(body, '/flush');
      const { depth } = await s.flush(isYes(query.get('wait')));
      return { status: 'ok', depth };
    },
  });

  return routes;
}

/** A query flag: 1, true or yes (any case). */
function isYes(value: string | null): boolean {
  return value !== null && ['1', 'true', 'yes'].includes(value.toLowerCase());
}

/** Endpoints that take `{}` (or nothing) still refuse a body that is not an object, like the others. */
function noBodyExpected(body: unknown, path: string): void {
  if (body !== undefined && !isPlainObject(body)) throw new ProtocolError('bad_request', `${path} takes {} or no body`);
}
