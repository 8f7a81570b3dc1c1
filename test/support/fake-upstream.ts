/**
 * In-process fake DataCat upstream server for the daemon's tests.
 *
 * Why a fake instead of mocks: the daemon's sync path must be exercised over
 * real sockets (keep-alive reuse, gzip bodies, resets, refused connections,
 * in-doubt answers), so this is a real `node:http` server that records every
 * request and lets tests inject faults per request.
 *
 * Support code only: tap does not run this file (see .taprc `include`).
 */
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';

/** What a request does, derived from method + path (so tests can filter without parsing URLs). */
export type OpKind =
  | 'create'
  | 'state'
  | 'event'
  | 'metric'
  | 'heartbeat'
  | 'end'
  | 'crash'
  | 'read'
  | 'other';

/** One received request, as the fake saw it. Kept for every request so tests can assert on retries and order. */
export interface ReceivedRequest {
  /** Arrival number (1-based, assigned when the headers arrive); `requests` is kept sorted by it. */
  seq: number;
  method: string;
  /** URL pathname, without the query string. */
  path: string;
  kind: OpKind;
  /** Session id taken from the path (`/api/sessions/{id}/...`), or null. */
  sessionId: string | null;
  /**
   * Parsed JSON body exactly as received (after content decoding). `null` for an empty
   * body, `undefined` when the body was never read (reset 'before-body'), the raw text
   * when it was not valid JSON.
   */
  body: any;
  /** Request headers (a copy), e.g. to assert on `authorization` or `content-encoding`. */
  headers: IncomingHttpHeaders;
  /** Date.now() when the headers arrived. */
  at: number;
  /**
   * 'applied'  — handled normally (state mutated for mutating ops; includes dropAnswer and reads),
   * 'faulted'  — an injected fault answered/killed it and state was NOT touched,
   * 'rejected' — the fake's own validation refused it (404 / 400).
   */
  outcome: 'applied' | 'faulted' | 'rejected';
  /** HTTP status that was sent, or null when the socket was destroyed instead of answering. */
  status: number | null;
}

/** Applied state of one upstream session: what a real server would have persisted. */
export interface UpstreamSession {
  id: string;
  /** Body of the create request, as received. */
  create: any;
  /** Applied non-create ops in apply order (state/event/metric/heartbeat/end/crash). */
  ops: Array<{ kind: OpKind; body: any; at: number }>;
  ended: boolean;
  crashed: boolean;
}

/** The view of a request that fault predicates get. */
export interface FaultMatchInput {
  method: string;
  path: string;
  kind: OpKind;
  sessionId: string | null;
  /** Parsed body; always `undefined` for 'before-body' reset rules (decided before the body is read). */
  body: any;
}

/**
 * A fault injection rule. Exactly one action (status / delayMs / reset / dropAnswer) must be set.
 *
 * Ordering: rules are checked in insertion order and the first match wins, with one
 * exception forced by physics: `reset: 'before-body'` rules are decided as soon as the
 * headers arrive (their `match` sees `body: undefined`), so they take precedence over rules
 * that need the body.
 */
export interface FaultRule {
  /** Which requests the rule applies to (default: all requests). A throwing predicate counts as "no match". */
  match?: (req: FaultMatchInput) => boolean;
  /** Apply to the first N matching requests, then the rule expires (default: unlimited). */
  times?: number;
  /** Answer this status with body `{error: "injected <status>"}` (request not applied). */
  status?: number;
  /** Retry-After header value (seconds or HTTP date); only together with `status`. */
  retryAfter?: number | string;
  /** Handle the request normally, but only after this delay ("slow upstream"). */
  delayMs?: number;
  /** Destroy the socket (TCP RST) before or after reading the body; the request is not applied. */
  reset?: 'before-body' | 'after-body';
  /** Apply the request (state mutated, outcome 'applied'), then destroy the socket without answering (in-doubt). */
  dropAnswer?: boolean;
}

export interface FakeUpstream {
  /** Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash). Stable across down()/up(). */
  readonly url: string;
  readonly port: number;
  /** Every request in arrival (seq) order, including faulted and rejected ones. Same array instance for the fake's lifetime. */
  readonly requests: ReceivedRequest[];
  /** Applied state, keyed by server id (`srv-<n>`). Same Map instance for the fake's lifetime. */
  readonly sessions: Map<string, UpstreamSession>;
  /** Requests with outcome 'applied', optionally filtered by kind and/or session id. */
  applied(filter?: { kind?: OpKind; sessionId?: string }): ReceivedRequest[];
  /** Add a fault rule; returns a function that removes it (idempotent). */
  addFault(rule: FaultRule): () => void;
  clearFaults(): void;
  /** Stop listening AND destroy open (keep-alive) sockets, so clients get ECONNREFUSED / ECONNRESET. */
  down(): Promise<void>;
  /** Listen again on the same port. No-op when already up. */
  up(): Promise<void>;
  /** Poll `pred` every ~10 ms; reject with a descriptive Error after `timeoutMs` (default 10000). */
  waitFor(pred: () => boolean, timeoutMs?: number, what?: string): Promise<void>;
  /** Forget requests, sessions and faults, and restart id (`srv-1`) and seq numbering. Keeps listening state. */
  reset(): void;
  /** down() for good; up() afterwards throws. */
  close(): Promise<void>;
}

export interface StartFakeUpstreamOptions {
  /** Port to listen on (default: a free one chosen by the OS). */
  port?: number;
  /** Reserve a port but do not listen until up() — for starting a daemon while its upstream is down. */
  startDown?: boolean;
}

/** Loopback only: tests never need the fake to be reachable from outside. */
const HOST = '127.0.0.1';

/** Internal rule state: `remaining` counts down from `times`. */
interface ActiveRule {
  rule: FaultRule;
  remaining: number;
}

/** A request parked by a `delayMs` fault; tracked so down()/close()/reset() can cancel it. */
interface PendingDelay {
  timer: NodeJS.Timeout;
  cancel: () => void;
}

const SESSION_OP_KINDS: Record<string, OpKind> = {
  state: 'state',
  events: 'event',
  metrics: 'metric',
  heartbeat: 'heartbeat',
  end: 'end',
  crash: 'crash',
};

/** Route a request by method + pathname. `known` is false for paths the API does not have (→ 404). */
function classify(method: string, path: string): { kind: OpKind; sessionId: string | null; known: boolean } {
  const parts = path.split('/').filter((p) => p !== '');
  if (parts[0] === 'api' && parts[1] === 'sessions') {
    if (parts.length === 2 && method === 'POST') return { kind: 'create', sessionId: null, known: true };
    if (parts.length >= 3) {
      let sessionId = parts[2]!;
      try {
        sessionId = decodeURIComponent(sessionId);
      } catch {
        // malformed %-escape: keep the raw segment (it will simply be an unknown session)
      }
      if (parts.length === 3 && method === 'GET') return { kind: 'read', sessionId, known: true };
      if (parts.length === 4 && method === 'POST') {
        const kind = SESSION_OP_KINDS[parts[3]!];
        if (kind) return { kind, sessionId, known: true };
      }
      // Still report the session id so fault predicates/tests can see it.
      return { kind: 'other', sessionId, known: false };
    }
  }
  if (method === 'GET' && parts.length === 3 && parts[0] === 'api' && parts[1] === 'data' && parts[2] === 'sessions') {
    return { kind: 'read', sessionId: null, known: true };
  }
  return { kind: 'other', sessionId: null, known: false };
}

/** Undo Content-Encoding. Throws on corrupt data or an unsupported encoding (→ 400). */
function decodeBody(raw: Buffer, encoding: string | undefined): Buffer {
  const enc = (encoding ?? 'identity').trim().toLowerCase();
  if (enc === '' || enc === 'identity') return raw;
  if (enc === 'gzip' || enc === 'x-gzip') return gunzipSync(raw);
  if (enc === 'deflate') return inflateSync(raw);
  if (enc === 'br') return brotliDecompressSync(raw);
  throw new Error(`unsupported content-encoding ${enc}`);
}

function ruleAction(rule: FaultRule): string[] {
  const actions: string[] = [];
  if (rule.status !== undefined) actions.push('status');
  if (rule.delayMs !== undefined) actions.push('delayMs');
  if (rule.reset !== undefined) actions.push('reset');
  if (rule.dropAnswer) actions.push('dropAnswer');
  return actions;
}

/** A predicate bug in a test should not crash the server; it simply does not match. */
function safeMatch(rule: FaultRule, input: FaultMatchInput): boolean {
  if (!rule.match) return true;
  try {
    return rule.match(input) === true;
  } catch {
    return false;
  }
}

/** RST rather than FIN, so clients see ECONNRESET-like errors (falls back to destroy on old runtimes). */
function hardReset(socket: Socket): void {
  if (typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy();
  else socket.destroy();
}

export async function startFakeUpstream(opts: StartFakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const requests: ReceivedRequest[] = [];
  const sessions = new Map<string, UpstreamSession>();
  let rules: ActiveRule[] = [];
  let nextSessionNo = 1;
  let nextSeq = 1;
  /** Bumped by reset(): in-flight requests from before a reset must not write into the new state. */
  let epoch = 0;
  let closed = false;

  let server: Server | null = null;
  const sockets = new Set<Socket>();
  const pendingDelays = new Set<PendingDelay>();

  /** Insert keeping seq order: records are completed out of order (delays, async body reads). */
  function record(rec: ReceivedRequest, recEpoch: number): void {
    if (recEpoch !== epoch) return;
    let i = requests.length;
    while (i > 0 && requests[i - 1]!.seq > rec.seq) i--;
    requests.splice(i, 0, rec);
  }

  /** First matching rule of this phase (insertion order), consuming one of its `times`. */
  function takeRule(input: FaultMatchInput, phase: 'headers' | 'body'): FaultRule | null {
    for (const active of rules) {
      const isBeforeBody = active.rule.reset === 'before-body';
      if ((phase === 'headers') !== isBeforeBody) continue;
      if (active.remaining <= 0) continue;
      if (!safeMatch(active.rule, input)) continue;
      active.remaining--;
      if (active.remaining <= 0) rules = rules.filter((r) => r !== active);
      return active.rule;
    }
    return null;
  }

  function send(res: ServerResponse, status: number, payload: unknown, extraHeaders: Record<string, string> = {}): void {
    const text = JSON.stringify(payload);
    if (res.destroyed || res.headersSent) return;
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      ...extraHeaders,
    });
    res.end(text);
  }

  /**
   * The real API: validate, mutate state, compute the answer. Pure with respect to the
   * socket so dropAnswer can apply without answering.
   */
  function apply(
    kind: OpKind,
    sessionId: string | null,
    known: boolean,
    body: any,
    at: number,
  ): { outcome: 'applied' | 'rejected'; status: number; payload: unknown } {
    if (!known) return { outcome: 'rejected', status: 404, payload: { error: 'not found' } };
    if (kind === 'create') {
      const id = `srv-${nextSessionNo++}`;
      sessions.set(id, { id, create: body, ops: [], ended: false, crashed: false });
      return { outcome: 'applied', status: 201, payload: { session_id: id, id } };
    }
    if (kind === 'read' && sessionId === null) {
      return { outcome: 'applied', status: 200, payload: [...sessions.values()] };
    }
    const session = sessionId === null ? undefined : sessions.get(sessionId);
    if (!session) return { outcome: 'rejected', status: 404, payload: { error: 'session not found' } };
    if (kind === 'read') return { outcome: 'applied', status: 200, payload: session };
    session.ops.push({ kind, body, at });
    if (kind === 'end') session.ended = true;
    if (kind === 'crash') session.crashed = true;
    return { outcome: 'applied', status: 200, payload: { status: 'ok' } };
  }

  function onRequest(req: IncomingMessage, res: ServerResponse): void {
    const seq = nextSeq++;
    const at = Date.now();
    const reqEpoch = epoch;
    const method = (req.method ?? 'GET').toUpperCase();
    const path = (req.url ?? '/').split('?')[0] || '/';
    const headers: IncomingHttpHeaders = { ...req.headers };
    const { kind, sessionId, known } = classify(method, path);
    const base = { seq, method, path, kind, sessionId, headers, at };

    // Phase 1 (headers only): 'before-body' resets never read the body.
    const early = takeRule({ method, path, kind, sessionId, body: undefined }, 'headers');
    if (early) {
      record({ ...base, body: undefined, outcome: 'faulted', status: null }, reqEpoch);
      hardReset(req.socket);
      return;
    }

    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    // A client that vanishes mid-body sent no complete request: nothing is recorded.
    req.on('error', () => {});
    req.on('end', () => {
      let body: any = null;
      let badBody: string | null = null;
      try {
        const text = decodeBody(Buffer.concat(chunks), req.headers['content-encoding']).toString('utf8');
        if (text.trim() !== '') {
          try {
            body = JSON.parse(text);
          } catch {
            body = text;
            badBody = 'invalid JSON body';
          }
        }
      } catch (err) {
        badBody = `cannot decode body: ${(err as Error).message}`;
      }

      // Phase 2: everything else, with the parsed body available to predicates.
      const rule = takeRule({ method, path, kind, sessionId, body }, 'body');

      if (rule?.status !== undefined) {
        const extra: Record<string, string> = {};
        if (rule.retryAfter !== undefined) extra['retry-after'] = String(rule.retryAfter);
        record({ ...base, body, outcome: 'faulted', status: rule.status }, reqEpoch);
        send(res, rule.status, { error: `injected ${rule.status}` }, extra);
        return;
      }
      if (rule?.reset === 'after-body') {
        record({ ...base, body, outcome: 'faulted', status: null }, reqEpoch);
        hardReset(req.socket);
        return;
      }

      const handle = (): void => {
        if (reqEpoch !== epoch) return; // reset() happened meanwhile: this request belongs to a forgotten world
        const result =
          badBody !== null && known
            ? { outcome: 'rejected' as const, status: 400, payload: { error: badBody } }
            : apply(kind, sessionId, known, body, at);
        if (rule?.dropAnswer) {
          record({ ...base, body, outcome: result.outcome, status: null }, reqEpoch);
          req.socket.destroy();
          return;
        }
        record({ ...base, body, outcome: result.outcome, status: result.status }, reqEpoch);
        send(res, result.status, result.payload);
      };

      if (rule?.delayMs !== undefined) {
        const pending: PendingDelay = {
          timer: setTimeout(() => {
            pendingDelays.delete(pending);
            handle();
          }, rule.delayMs),
          // Cancelled by down()/close(): the "server died" before answering, nothing applied.
          cancel: () => record({ ...base, body, outcome: 'faulted', status: null }, reqEpoch),
        };
        pendingDelays.add(pending);
        return;
      }
      handle();
    });
  }

  function cancelDelays(recordThem: boolean): void {
    for (const p of pendingDelays) {
      clearTimeout(p.timer);
      if (recordThem) p.cancel();
    }
    pendingDelays.clear();
  }

  async function listenOn(p: number): Promise<Server> {
    const srv = createServer(onRequest);
    // Clients reuse connections; keep them open long enough for a test's burst of requests.
    srv.keepAliveTimeout = 5000;
    srv.on('connection', (s: Socket) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    // Socket-level errors (our own resets, client aborts) are expected; never crash the test process.
    srv.on('clientError', (_err, s) => s.destroy());
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(p, HOST, () => {
        srv.off('error', reject);
        resolve();
      });
    });
    return srv;
  }

  let port: number;
  if (opts.startDown) {
    // Reserve a concrete port now so the daemon under test can be configured with the URL up front.
    const probe = await listenOn(opts.port ?? 0);
    port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
  } else {
    server = await listenOn(opts.port ?? 0);
    port = (server.address() as AddressInfo).port;
  }
  const url = `http://${HOST}:${port}`;

  async function down(): Promise<void> {
    cancelDelays(true);
    const srv = server;
    server = null;
    if (!srv) return;
    const closedP = new Promise<void>((resolve) => srv.close(() => resolve()));
    // close() alone waits for keep-alive sockets to idle out; kill them so clients notice now.
    srv.closeAllConnections();
    for (const s of sockets) s.destroy();
    sockets.clear();
    await closedP;
  }

  const fake: FakeUpstream = {
    url,
    port,
    requests,
    sessions,
    applied(filter = {}) {
      return requests.filter(
        (r) =>
          r.outcome === 'applied' &&
          (filter.kind === undefined || r.kind === filter.kind) &&
          (filter.sessionId === undefined || r.sessionId === filter.sessionId),
      );
    },
    addFault(rule) {
      const actions = ruleAction(rule);
      if (actions.length !== 1) {
        throw new Error(`FaultRule needs exactly one action (status/delayMs/reset/dropAnswer), got [${actions.join(', ')}]`);
      }
      if (rule.retryAfter !== undefined && rule.status === undefined) {
        throw new Error('FaultRule.retryAfter only makes sense with status');
      }
      const active: ActiveRule = { rule, remaining: rule.times ?? Infinity };
      rules.push(active);
      return () => {
        rules = rules.filter((r) => r !== active);
      };
    },
    clearFaults() {
      rules = [];
    },
    down,
    async up() {
      if (closed) throw new Error('fake upstream is closed');
      if (server) return;
      server = await listenOn(port);
    },
    waitFor(pred, timeoutMs = 10_000, what = 'condition') {
      return new Promise<void>((resolve, reject) => {
        const deadline = Date.now() + timeoutMs;
        const tick = (): void => {
          let ok: boolean;
          try {
            ok = pred();
          } catch (err) {
            reject(err);
            return;
          }
          if (ok) return resolve();
          if (Date.now() >= deadline) {
            const nApplied = requests.filter((r) => r.outcome === 'applied').length;
            reject(
              new Error(
                `fake upstream: timed out after ${timeoutMs}ms waiting for ${what} ` +
                  `(${requests.length} requests received, ${nApplied} applied, ${sessions.size} sessions)`,
              ),
            );
            return;
          }
          setTimeout(tick, 10);
        };
        tick();
      });
    },
    reset() {
      epoch++;
      cancelDelays(false);
      requests.length = 0;
      sessions.clear();
      rules = [];
      nextSessionNo = 1;
      nextSeq = 1;
    },
    async close() {
      closed = true;
      await down();
    },
  };
  return fake;
}
