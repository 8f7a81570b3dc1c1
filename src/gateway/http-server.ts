import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { ProtocolError, HTTP_STATUS, errorBody } from '../protocol/errors.js';
import { nonFiniteTokensAsStrings } from '../protocol/json-tokens.js';
import type { AuthCheck } from './auth.js';

export interface RequestContext {
  query: URLSearchParams;
  /** Parsed JSON body (POST), or undefined when empty. */
  body: unknown;
  /** Receive time, ms since the epoch: the daemon time stamped on ops. */
  rt: number;
}

export interface Route {
  method: 'GET' | 'POST';
  /** Routes marked public skip the auth_token check (/health only). */
  public?: boolean;
  /** Returns the JSON answer (200); throws ProtocolError for an error answer. */
  handle(ctx: RequestContext): Promise<unknown> | unknown;
}

export interface HttpServerOptions {
  host: string;
  port: number;
  max_body_bytes: number;
  auth: AuthCheck;
  routes: ReadonlyMap<string, Route>;
  /** Seconds a client should wait after a 503 (queue full, recovering). */
  retryAfterSeconds: () => number;
}

/**
 * The daemon's one port: DataCat's HTTP JSON API and the admin endpoints (the WebSocket upgrade
 * attaches to the same server). It parses, checks the limits and the token, and turns every
 * failure into CONTRACT §2's `{error, details}` with the right status. It holds no session logic.
 */
export class HttpGateway {
  readonly server: Server;
  /** Set by close(): requests that arrive from then on are refused (503 shutting_down). */
  private closing = false;

  constructor(private readonly options: HttpServerOptions) {
    this.server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 60_000 }, (req, res) => void this.serve(req, res));
    this.server.on('clientError', answerParseError);
    // `Expect: 100-continue`: a body declared over max_body_bytes is refused before it is sent.
    // Node would answer 100 Continue to everything, and the client would send it all for a 413.
    this.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
      if (Number(req.headers['content-length'] ?? NaN) > this.options.max_body_bytes) {
        res.setHeader('connection', 'close');
        send(res, 413, errorBody(tooLarge(this.options.max_body_bytes)));
        res.on('finish', () => req.destroy());
        return;
      }
      res.writeContinue();
      void this.serve(req, res);
    });
  }

  /** Listens on host:port; a failure says which setting to change (ListenError). */
  listen(): Promise<AddressInfo> {
    const { host, port } = this.options;
    return new Promise((resolve, reject) => {
      const failed = (err: NodeJS.ErrnoException): void => reject(new ListenError(host, port, err));
      this.server.once('error', failed);
      this.server.listen(port, host, () => {
        this.server.off('error', failed);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /**
   * Stops accepting: no new connections, idle keep-alive sockets are closed, and busy ones get
   * the answer of the request in progress with `connection: close`. A request that still
   * arrives on one (sent before the client saw that answer) gets 503 shutting_down: the daemon
   * close() calls this first, then spends up to a few seconds persisting and stopping the sync,
   * and a busy keep-alive client would otherwise be served (and told "persisted") all along.
   */
  close(): Promise<void> {
    this.closing = true;
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rt = Date.now();
    // The latest answer owed on this connection: a parse error in what follows it waits for it.
    (req.socket as TrackedSocket)[kLatestResponse] = res;
    try {
      if (this.closing) throw new ProtocolError('shutting_down', 'the daemon is shutting down and takes no more requests; retry in a moment');
      // Split path and query by hand: a WHATWG URL per request is measurable at 30 k requests/s.
      const target = req.url ?? '/';
      const q = target.indexOf('?');
      const path = q < 0 ? target : target.slice(0, q);
      const route = this.options.routes.get(path);
      if (!route) throw new ProtocolError('not_found', `no endpoint ${path.slice(0, 200)}; see the API table in README.md`);
      // HEAD is GET without the body (node:http leaves the body out of a HEAD answer).
      if (req.method !== route.method && !(req.method === 'HEAD' && route.method === 'GET')) {
        res.setHeader('allow', route.method === 'GET' ? 'GET, HEAD' : route.method);
        throw new ProtocolError('method_not_allowed', `${path} takes ${route.method}, not ${req.method}`);
      }
      const denied = route.public ? null : this.options.auth.refusal(req);
      if (denied) throw new ProtocolError('unauthorized', denied);
      const body = route.method === 'POST' ? await this.readJson(req) : undefined;
      const answer = await route.handle({ query: new URLSearchParams(q < 0 ? '' : target.slice(q + 1)), body, rt });
      if (this.closing) res.setHeader('connection', 'close'); // shutdown began meanwhile: no next request
      send(res, 200, answer);
    } catch (err) {
      // Already answered (a parse error answered by answerParseError): nothing more to say.
      if (res.headersSent) return;
      const body = errorBody(err);
      const status = err instanceof ProtocolError ? HTTP_STATUS[err.code] : 500;
      if (this.closing) res.setHeader('connection', 'close');
      if (status === 503) res.setHeader('retry-after', String(this.options.retryAfterSeconds()));
      if (status === 401 && this.options.auth.enabled) res.setHeader('www-authenticate', 'Bearer realm="datacat-daemon"'); // RFC 9110 §11.6.1
      // After a 413 the connection is kept only if the rest of the body can be read and thrown
      // away (discardRest); a body declared too long for that gets the answer and a close.
      const discard = status === 413 && canDiscard(req);
      if (status === 413 && !discard) res.setHeader('connection', 'close');
      send(res, status, body);
      if (discard) discardRest(req);
      else if (status === 413) res.on('finish', () => req.destroy());
    }
  }

  private readJson(req: IncomingMessage): Promise<unknown> {
    const limit = this.options.max_body_bytes;
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > limit) return Promise.reject(tooLarge(limit));
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let failed = false;
      req.on('data', (chunk: Buffer) => {
        if (failed) return;
        size += chunk.length;
        if (size > limit) {
          failed = true;
          reject(tooLarge(limit));
          return;
        }
        chunks.push(chunk);
      });
      req.on('end', () => {
        if (failed) return;
        if (size === 0) return resolve(undefined);
        const text = Buffer.concat(chunks, size).toString('utf8');
        try {
          resolve(JSON.parse(text));
        } catch (err) {
          // Only once JSON.parse has failed: Python's bare Infinity / NaN tokens (json-tokens.ts).
          const retry = nonFiniteTokensAsStrings(text);
          if (retry !== null) {
            try {
              return resolve(JSON.parse(retry));
            } catch {
              // Broken for another reason too: JSON.parse's message about the text as sent.
            }
          }
          reject(new ProtocolError('bad_request', `the body is not valid JSON: ${(err as Error).message.slice(0, 200)}`));
        }
      });
      req.on('error', (err) => {
        if (!failed) reject(new ProtocolError('bad_request', `could not read the body: ${err.message}`));
        failed = true;
      });
    });
  }
}

/**
 * After a 413, the rest of the oversized body is read and thrown away, within bounds, before the
 * connection is reused: closing a socket whose peer is still sending makes the kernel reset it,
 * and the client then sees ECONNRESET or EPIPE instead of the 413 (measured: about 1 in 16 of
 * 218 KB chunked bodies, and every declared 4.3–20 MB body from Python's http.client, which sends
 * the whole body before it reads the answer). A body declared longer than DISCARD_MAX_BYTES is
 * answered with a close instead, and one that goes on past it or past DISCARD_MS is cut off.
 */
const DISCARD_MS = 2000;
const DISCARD_MAX_BYTES = 64 << 20;

function canDiscard(req: IncomingMessage): boolean {
  const declared = Number(req.headers['content-length'] ?? NaN);
  return !(declared > DISCARD_MAX_BYTES) && !req.destroyed;
}

function discardRest(req: IncomingMessage): void {
  if (req.complete || req.destroyed) return;
  const most = DISCARD_MAX_BYTES;
  let discarded = 0;
  const cutOff = (): void => void req.destroy();
  const timer = setTimeout(cutOff, DISCARD_MS).unref();
  req.on('data', (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > most) cutOff();
  });
  req.once('close', () => clearTimeout(timer));
  req.resume();
}

function tooLarge(limit: number): ProtocolError {
  return new ProtocolError('payload_too_large', `the body is larger than max_body_bytes=${limit}`);
}

/**
 * The port could not be opened: one line naming the config key to change. `badValue` when the
 * key's value cannot work on this machine (a host that does not resolve or is not one of its
 * addresses), as opposed to a port that is busy right now.
 */
export class ListenError extends Error {
  readonly badValue: boolean;

  constructor(host: string, port: number, cause: NodeJS.ErrnoException) {
    const detail = `${cause.code ?? 'error'}: ${cause.message}`;
    let message: string;
    let badValue = false;
    switch (cause.code) {
      case 'EADDRINUSE':
        message = `daemon_port ${port} is already in use on ${host} (another daemon?): stop it, or give this one another daemon_port`;
        break;
      case 'EACCES':
        message = `daemon_port ${port} on ${host} needs privileges this process does not have: choose a port above 1023 (${detail})`;
        break;
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
      case 'EAI_FAIL':
        badValue = true;
        message = `host ${JSON.stringify(host)} does not resolve to an address (${detail}): give an address or name of this machine`;
        break;
      case 'EADDRNOTAVAIL':
        badValue = true;
        message = `host ${JSON.stringify(host)} is not an address of this machine (${detail}): give one of its addresses, 127.0.0.1 or 0.0.0.0`;
        break;
      default:
        message = `cannot listen on ${host}:${port} (daemon_port, host): ${detail}`;
    }
    super(message, { cause });
    this.name = 'ListenError';
    this.badValue = badValue;
  }
}

/** An answer that is not JSON (GET /metrics: Prometheus text). */
export class TextAnswer {
  constructor(
    readonly contentType: string,
    readonly text: string,
  ) {}
}

/** The answer of every accepted op, encoded once. */
export const OK = Object.freeze({ status: 'ok' });
const OK_BYTES = Buffer.from(JSON.stringify(OK));

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const text = body instanceof TextAnswer;
  const bytes = body === OK ? OK_BYTES : Buffer.from(text ? body.text : JSON.stringify(body ?? {}));
  res.writeHead(status, { 'content-type': text ? body.contentType : 'application/json', 'content-length': bytes.length });
  res.end(bytes);
}

/** The latest ServerResponse created on a socket (set by serve()), for answerParseError. */
const kLatestResponse = Symbol('datacat.latestResponse');
type TrackedSocket = Duplex & { [kLatestResponse]?: ServerResponse };

/** Sockets whose parse error is answered: llhttp stays in its error state and reports it again on more data. */
const parseErrorAnswered = new WeakSet<Duplex>();

/**
 * A request Node's parser refuses (a malformed header or chunk, a header block past Node's
 * 16 KiB, a bad Content-Length, a request not finished within requestTimeout) gets CONTRACT §2's
 * JSON error too, not Node's default empty answer, and the connection closes (the parser cannot
 * go on). Answers already owed on the connection are not lost on the way:
 * - the error is in the body of the request being served (a bad chunk size), and nothing of its
 *   answer is written yet: that request is answered with the error, through its own response;
 * - the error is in what came after a complete request whose answer is still owed (pipelined
 *   garbage after a valid request, which may be persisted by now): that answer goes out first,
 *   then the error, then the close;
 * - an answer is going out for a request whose body never finished (a 413 discarding the rest):
 *   nothing more can be said on that connection, and it is cut.
 */
function answerParseError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (parseErrorAnswered.has(socket)) return;
  parseErrorAnswered.add(socket);
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const answer = parseErrorAnswer(err);
  const owed = (socket as TrackedSocket)[kLatestResponse];
  if (!owed || owed.writableFinished) {
    socket.end(rawAnswer(answer));
    return;
  }
  if (!owed.req.complete) {
    if (owed.headersSent) {
      socket.destroy();
      return;
    }
    owed.setHeader('connection', 'close');
    send(owed, answer.status, answer.body);
    // The request's body never ends: once the socket is gone, fail its read so serve() returns.
    socket.once('close', () => owed.req.destroy(err));
    return;
  }
  owed.once('finish', () => {
    if (socket.writable) socket.end(rawAnswer(answer)); // not writable: that answer said close
  });
}

function parseErrorAnswer(err: NodeJS.ErrnoException): { status: number; reason: string; body: { error: string; details: string } } {
  if (err.code === 'HPE_HEADER_OVERFLOW')
    return { status: 431, reason: 'Request Header Fields Too Large', body: { error: 'headers_too_large', details: 'the request line and headers are over 16 KiB; send long values in the body' } };
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT')
    return { status: 408, reason: 'Request Timeout', body: { error: 'request_timeout', details: `the request could not be parsed as HTTP: ${err.message}` } };
  return { status: 400, reason: 'Bad Request', body: { error: 'bad_request', details: `the request could not be parsed as HTTP: ${err.message}` } };
}

/** The answer written on the socket itself, when no ServerResponse can carry it. */
function rawAnswer({ status, reason, body }: ReturnType<typeof parseErrorAnswer>): string {
  const text = JSON.stringify(body);
  return `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`;
}
