import { ProtocolError } from '../protocol/errors.js';
import type { Limits } from '../protocol/limits.js';
import { validateOp } from '../protocol/validate.js';
import type { Op, OpKind, SessionOp } from '../protocol/ops.js';
import { OK, type Route, type RequestContext } from './http-server.js';
import type { Ingest } from './ingest.js';
import type { SessionReads } from './session-reads.js';

/** What the routes need from the daemon; kept narrow so the HTTP layer holds no logic of its own. */
export interface RouteServices {
  ingest: Ingest;
  reads: SessionReads;
  limits: Limits;
  health(): unknown;
  flush(wait: boolean): Promise<{ depth: number }>;
}

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

  routes.set('/flush', {
    method: 'POST',
    async handle({ query }) {
      const { depth } = await s.flush(query.get('wait') === '1' || query.get('wait') === 'true');
      return { status: 'ok', depth };
    },
  });

  return routes;
}
