import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import { Pool, errors as undiciErrors } from 'undici';
import type { UpstreamOp } from '../outbox/chunk.js';
import { parseRetryAfter } from '../actors/backoff.js';

const gzip = promisify(gzipCb);

/**
 * What one upstream request came to, classified as CONTRACT §3 prescribes:
 * - `ok`: 2xx.
 * - `retry`: network error, timeout, 5xx, 408, 429; `scope` says whether the whole upstream is
 *   unavailable (the sync actor pauses every session) or only this request failed (only its
 *   session backs off). `inDoubt` marks failures after the request may have reached the server.
 * - `dead`: any other answer; the op becomes a dead letter with `reason`.
 */
export type Outcome =
  | { kind: 'ok'; status: number; body: unknown }
  | { kind: 'retry'; scope: 'upstream' | 'request'; reason: string; retryAfterMs?: number; inDoubt: boolean; status?: number; timedOut?: boolean }
  | { kind: 'dead'; reason: string; status: number };

export interface UpstreamOptions {
  server_url: string;
  api_key: string | null;
  enable_compression: boolean;
  tls_insecure_skip_verify: boolean;
  upstream_timeout_ms: number;
  sync_concurrency: number;
}

/** Errors that mean the request never left: nothing can have been applied upstream. */
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

/**
 * The DataCat server's REST API (CONTRACT §3) over keep-alive HTTP (undici's Pool: one origin,
 * up to `sync_concurrency` reused connections). Knows paths, bodies, headers and how to
 * classify answers; knows nothing of queues or retries.
 */
export class UpstreamClient {
  private readonly pool: Pool;
  /** /register's creates: a few connections of their own, so they never queue behind the drain. */
  private readonly urgentPool: Pool;
  private readonly basePath: string;
  private readonly headers: Record<string, string>;

  constructor(private readonly options: UpstreamOptions) {
    const url = new URL(options.server_url);
    this.basePath = url.pathname.replace(/\/$/, '');
    const poolOptions = {
      keepAliveTimeout: 30_000,
      headersTimeout: options.upstream_timeout_ms,
      bodyTimeout: options.upstream_timeout_ms,
      connect: { timeout: Math.min(options.upstream_timeout_ms, 10_000), rejectUnauthorized: !options.tls_insecure_skip_verify },
    };
    this.pool = new Pool(url.origin, { ...poolOptions, connections: options.sync_concurrency + 1 });
    this.urgentPool = new Pool(url.origin, { ...poolOptions, connections: 4 });
    this.headers = { 'content-type': 'application/json', 'user-agent': 'datacat-daemon' };
    if (options.api_key) this.headers['authorization'] = `Bearer ${options.api_key}`;
    if (options.enable_compression) this.headers['content-encoding'] = 'gzip';
  }

  /**
   * Creates a session; on success `sessionId` is the server's id (`session_id`, or `id`). A 2xx
   * without a usable id is a dead letter: retrying would create yet another session upstream.
   * `urgent` (for /register) uses its own connections and bounds the whole call by `timeoutMs`.
   */
  async createSession(
    body: Record<string, unknown>,
    opts: { timeoutMs?: number; urgent?: boolean } = {},
  ): Promise<Exclude<Outcome, { kind: 'ok' }> | (Extract<Outcome, { kind: 'ok' }> & { sessionId: string })> {
    const outcome = await this.post('/api/sessions', body, opts);
    if (outcome.kind !== 'ok') return outcome;
    const answer = outcome.body as { session_id?: unknown; id?: unknown } | null;
    const given = answer?.session_id ?? answer?.id;
    // A server with integer ids answers a number: it is the same id in the paths it expects.
    const id = typeof given === 'number' && Number.isSafeInteger(given) && given >= 0 ? String(given) : given;
    if (typeof id !== 'string' || id.length === 0 || id.length > 1024)
      return { kind: 'dead', reason: `create answered ${outcome.status} without a usable session_id: ${JSON.stringify(outcome.body).slice(0, 200)}`, status: outcome.status };
    return { ...outcome, sessionId: id };
  }

  /** Sends one queued op under the session's server id. */
  send(serverId: string, op: UpstreamOp): Promise<Outcome> {
    const base = `/api/sessions/${encodeURIComponent(serverId)}`;
    const timestamp = new Date(op.t).toISOString();
    switch (op.k) {
      case 'state':
        return this.post(`${base}/state`, { timestamp, state: op.b['state'] });
      case 'event':
        return this.post(`${base}/events`, { timestamp, ...op.b });
      case 'metric':
        return this.post(`${base}/metrics`, { timestamp, ...op.b });
      case 'end':
        return this.post(`${base}/end`, {});
      case 'crash':
        return this.post(`${base}/crash`, { reason: op.b['reason'] });
      case 'create':
        throw new Error('create goes through createSession');
    }
  }

  heartbeat(serverId: string): Promise<Outcome> {
    return this.post(`/api/sessions/${encodeURIComponent(serverId)}/heartbeat`, {});
  }

  /** Any HTTP answer from the server's health endpoint means it is reachable. */
  async probe(): Promise<Outcome> {
    return this.request('GET', '/health', undefined);
  }

  /** Shutdown: aborts requests in flight (their ops stay queued and are sent after a restart). */
  async close(): Promise<void> {
    await Promise.all([this.pool.destroy(), this.urgentPool.destroy()]);
  }

  private async post(path: string, body: unknown, opts: { timeoutMs?: number; urgent?: boolean } = {}): Promise<Outcome> {
    let payload: Buffer = Buffer.from(JSON.stringify(body));
    if (this.options.enable_compression) payload = await gzip(payload);
    return this.request('POST', path, payload, opts);
  }

  /** Told of every request: seconds it took and its outcome (for the upstream metrics). */
  onRequest: ((seconds: number, outcome: Outcome['kind']) => void) | null = null;

  private async request(method: 'GET' | 'POST', path: string, body: Buffer | undefined, opts: { timeoutMs?: number; urgent?: boolean } = {}): Promise<Outcome> {
    const started = performance.now();
    const outcome = await this.attempt(method, path, body, opts);
    this.onRequest?.((performance.now() - started) / 1000, outcome.kind);
    return outcome;
  }

  private async attempt(method: 'GET' | 'POST', path: string, body: Buffer | undefined, opts: { timeoutMs?: number; urgent?: boolean }): Promise<Outcome> {
    const signal = opts.timeoutMs !== undefined ? AbortSignal.timeout(opts.timeoutMs) : undefined;
    try {
      const res = await (opts.urgent ? this.urgentPool : this.pool).request({
        method,
        path: this.basePath + path,
        headers: body ? this.headers : { 'user-agent': 'datacat-daemon', ...(this.options.api_key ? { authorization: this.headers['authorization']! } : {}) },
        body,
        signal,
      });
      const text = await res.body.text();
      const status = res.statusCode;
      if (status >= 200 && status < 300) return { kind: 'ok', status, body: parseJson(text) };
      const reason = `HTTP ${status}${text ? `: ${text.slice(0, 300)}` : ''}`;
      const retryAfterMs = parseRetryAfter(res.headers['retry-after']);
      // The whole upstream is unavailable (or asks everyone to slow down): pause every session.
      if (status === 429 || status === 502 || status === 503 || status === 504)
        return { kind: 'retry', scope: 'upstream', reason, retryAfterMs, inDoubt: false, status };
      if (status >= 500 || status === 408) return { kind: 'retry', scope: 'request', reason, retryAfterMs, inDoubt: status !== 408, status };
      // A redirect means server_url is wrong (http vs https, a moved host): every op would get
      // it, so wait as for an unavailable upstream, with the answer in /health's last_error.
      if (status < 400) return { kind: 'retry', scope: 'upstream', reason: `${reason} (check server_url)`, retryAfterMs, inDoubt: false, status };
      return { kind: 'dead', reason, status };
    } catch (err) {
      const timedOut = signal?.aborted === true;
      const reason = timedOut ? `timeout after ${opts.timeoutMs} ms` : describeError(err);
      return { kind: 'retry', scope: 'upstream', reason, inDoubt: timedOut || !NOT_SENT.has(errorCode(err)), timedOut };
    }
  }
}

function parseJson(text: string): unknown {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function errorCode(err: unknown): string {
  const e = err as { code?: string; cause?: { code?: string } };
  return e?.code ?? e?.cause?.code ?? '';
}

function describeError(err: unknown): string {
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError) return `timeout: ${err.message}`;
  const code = errorCode(err);
  const message = err instanceof Error ? err.message : String(err);
  return code && !message.includes(code) ? `${code} ${message}` : message;
}
