import WebSocket from 'ws';
import { decodeFrame } from './codec.js';
import { DataCatError } from './errors.js';
import { CLOSE_CODES, type AckFrame, type ErrorFrame, type RemapFrame, type SessionFrame, type WelcomeFrame } from './wire.js';

export interface ConnectionOptions {
  url: string;
  headers: Record<string, string>;
  /** Upgrade and welcome must both arrive within this (ms), or the attempt is given up. */
  connectTimeoutMs: number;
  /** Liveness check period (ms); 0 disables. */
  pingIntervalMs: number;
}

export interface CloseInfo {
  code: number;
  reason: string;
  /** Whether the daemon welcomed this connection before it closed. */
  welcomed: boolean;
  /** Why it closed, when the client knows better than the close code (refused, 401, timeout...). */
  error?: DataCatError;
}

/** What a connection reports to its owner. Called from socket events: they must not throw. */
export interface ConnectionHandlers {
  welcome(frame: WelcomeFrame): void;
  ack(frame: AckFrame): void;
  remap(frame: RemapFrame): void;
  session(frame: SessionFrame): void;
  errorFrame(frame: ErrorFrame): void;
  /** Exactly once, when the socket is gone (or could not be opened). */
  closed(info: CloseInfo): void;
  /** A problem that does not close the connection by itself. */
  problem(error: DataCatError): void;
}

/**
 * One WebSocket to the daemon, from upgrade to close: decodes and checks daemon frames, enforces
 * the protocol's ordering (welcome first, exactly once), and detects dead peers. It knows nothing
 * of ops, windows or reconnects: the Client makes a new Connection for each attempt, so state of
 * an old socket can never leak into a new one.
 */
export class Connection {
  private readonly ws: WebSocket;
  private welcomedFlag = false;
  private closedFlag = false;
  private failure: DataCatError | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private silentTicks = 0;
  /** Set by a `flow` frame: the daemon stopped reading this socket until it says otherwise. */
  private daemonPaused = false;
  private markClosed!: () => void;
  /** Resolves once the socket is closed (for whatever reason). */
  readonly whenClosed = new Promise<void>((resolve) => (this.markClosed = resolve));

  constructor(
    private readonly options: ConnectionOptions,
    private readonly handlers: ConnectionHandlers,
  ) {
    this.ws = new WebSocket(options.url, {
      headers: options.headers,
      // The daemon refuses compression (CPU costs more than loopback bandwidth saves): do not offer it.
      perMessageDeflate: false,
      handshakeTimeout: options.connectTimeoutMs,
    });
    this.ws.binaryType = 'nodebuffer';
    this.ws.on('open', () => this.startPing());
    this.ws.on('message', (data, isBinary) => this.onMessage(data as Buffer, isBinary));
    this.ws.on('pong', () => (this.silentTicks = 0));
    this.ws.on('error', (err) => this.onSocketError(err));
    this.ws.on('close', (code, reason) => this.onSocketClose(code, reason.toString()));
    this.connectTimer = setTimeout(() => {
      this.abort(new DataCatError('connect_failed', `no welcome from ${redact(options.url)} within ${options.connectTimeoutMs} ms`));
    }, options.connectTimeoutMs);
  }

  get welcomed(): boolean {
    return this.welcomedFlag;
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Sends an encoded frame. Frames sent while the socket is not open are dropped: what matters is resent after the next welcome. */
  send(bytes: Uint8Array): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(bytes);
    return true;
  }

  /**
   * Closes cleanly (close handshake); a socket still connecting is cut. A peer that does not
   * answer the close within `graceMs` is cut too (ws would wait 30 s).
   */
  close(code: number = CLOSE_CODES.normal, reason = '', graceMs = 1000): void {
    if (this.ws.readyState === WebSocket.CONNECTING) return this.ws.terminate();
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(code, reason);
    if (this.ws.readyState !== WebSocket.CLOSED) setTimeout(() => this.ws.terminate(), graceMs).unref();
  }

  /** Gives up on this connection (no close handshake): `closed` follows with `error`. */
  abort(error: DataCatError): void {
    this.failure ??= error;
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.terminate();
  }

  private startPing(): void {
    const ms = this.options.pingIntervalMs;
    if (ms <= 0) return;
    // Any frame or pong counts as a sign of life. Two silent periods in a row, and the peer (or
    // the path to it) is gone without a FIN: a half-open TCP connection would otherwise hold
    // unacked ops forever. Two periods, not one, because a daemon under backpressure stops
    // reading our socket for a while and cannot answer pings then.
    this.pingTimer = setInterval(() => {
      // The daemon said it stopped reading (its outbox is full): it cannot answer pings until it
      // reads again, which it says too. Counting that silence made the client drop the
      // connection and resend its whole window every few periods for as long as it lasted.
      if (this.daemonPaused) return void (this.silentTicks = 0);
      if (++this.silentTicks > 2) return this.abort(new DataCatError('connect_failed', `no answer from the daemon for ${2 * ms} ms`));
      this.ws.ping();
    }, ms);
    this.pingTimer.unref();
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.closedFlag) return;
    this.silentTicks = 0;
    if (!isBinary) return this.protocolError('the daemon sent a text frame; frames are binary MessagePack');
    let frame: unknown;
    try {
      frame = decodeFrame(data);
    } catch (err) {
      return this.protocolError(`the daemon sent a frame that is not MessagePack: ${(err as Error).message}`);
    }
    if (typeof frame !== 'object' || frame === null || typeof (frame as { t?: unknown }).t !== 'string')
      return this.protocolError('the daemon sent a frame that is not a map with a string "t"');
    const f = frame as Record<string, unknown>;
    try {
      switch (f['t']) {
        case 'welcome':
          if (this.welcomedFlag) return this.protocolError('a second welcome on one connection');
          if (!isWelcome(f)) return this.protocolError('a malformed welcome frame');
          this.welcomedFlag = true;
          clearTimeout(this.connectTimer);
          return this.handlers.welcome(f);
        case 'ack':
          if (!this.welcomedFlag) return this.protocolError('an ack before the welcome');
          if (!isAck(f)) return this.protocolError('a malformed ack frame');
          return this.handlers.ack(f);
        case 'remap':
          if (typeof f['local_id'] !== 'string' || typeof f['server_id'] !== 'string') return this.protocolError('a malformed remap frame');
          return this.handlers.remap(f as unknown as RemapFrame);
        case 'session':
          return this.handlers.session(f as unknown as SessionFrame);
        case 'error':
          return this.handlers.errorFrame(f as unknown as ErrorFrame);
        case 'flow':
          this.daemonPaused = f['paused'] === true;
          return;
        default:
          // A newer daemon may push frames this client does not know: ignoring them is what
          // keeps old clients working.
          return;
      }
    } catch (err) {
      // A bug in a handler must not become an uncaught exception inside ws's event loop callback.
      this.handlers.problem(new DataCatError('internal', `the client failed handling a "${String(f['t'])}" frame: ${(err as Error)?.message}`, { cause: err }));
    }
  }

  private protocolError(message: string): void {
    this.abort(new DataCatError('protocol_error', message));
  }

  private onSocketError(err: Error): void {
    // ws always emits 'close' after 'error'; keep the first cause for it.
    const status = /Unexpected server response: (\d+)/.exec(err.message)?.[1];
    if (status === '401') this.failure ??= new DataCatError('unauthorized', 'the daemon refused the auth token (HTTP 401): pass authToken', { cause: err });
    else if (status) this.failure ??= new DataCatError('connect_failed', `the daemon refused the WebSocket upgrade with HTTP ${status}`, { cause: err });
    else if (!this.welcomedFlag) this.failure ??= new DataCatError('connect_failed', `cannot connect to ${redact(this.options.url)}: ${err.message}`, { cause: err });
    else this.failure ??= new DataCatError('connect_failed', `connection error: ${err.message}`, { cause: err });
  }

  private onSocketClose(code: number, reason: string): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    clearTimeout(this.connectTimer);
    clearInterval(this.pingTimer);
    const info: CloseInfo = { code, reason, welcomed: this.welcomedFlag };
    if (this.failure) info.error = this.failure;
    this.markClosed();
    this.handlers.closed(info);
  }
}

function isWelcome(f: Record<string, unknown>): f is Record<string, unknown> & WelcomeFrame {
  const limits = f['limits'] as Record<string, unknown> | undefined;
  return (
    typeof f['acked'] === 'number' &&
    Array.isArray(f['registered']) &&
    typeof limits === 'object' &&
    limits !== null &&
    typeof limits['max_frame_bytes'] === 'number' &&
    typeof limits['max_ops_per_frame'] === 'number'
  );
}

function isAck(f: Record<string, unknown>): f is Record<string, unknown> & AckFrame {
  return (
    typeof f['acked'] === 'number' &&
    (f['errors'] === undefined || Array.isArray(f['errors'])) &&
    (f['registered'] === undefined || Array.isArray(f['registered']))
  );
}

/** A URL for messages: no token, should one have been put in the query. */
function redact(url: string): string {
  return url.replace(/([?&]token=)[^&]*/, '$1***');
}
