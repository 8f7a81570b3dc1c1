import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Backoff } from './backoff.js';
import { encodeBatch, encodeFrame } from './codec.js';
import { Connection, type CloseInfo } from './connection.js';
import { DataCatError } from './errors.js';
import { OpBuffer, type OpFrame, type Settle } from './op-buffer.js';
import { SET_SERVER_ID, Session, type SessionHost } from './session.js';
import type { ClientEvents, ClientOptions, ClientStats, CloseOptions, RegisterOptions, SessionDetails } from './types.js';
import { CLIENT_DEFAULTS } from './defaults.js';
import { buildWsUrl, clientIdInUrl } from './url.js';
import { CLIENT_ID_PATTERN, CLOSE_CODES, type AckFrame, type ErrorFrame, type OpBody, type RemapFrame, type SessionFrame, type WelcomeFrame } from './wire.js';

/** Close codes that mean the daemon could not take a frame of ours: worth an 'error' beyond 'disconnected'. */
const FRAME_REJECTED: ReadonlySet<number> = new Set([
  CLOSE_CODES.textFrame,
  CLOSE_CODES.notMessagePack,
  CLOSE_CODES.notAFrame,
  CLOSE_CODES.tooLarge,
  CLOSE_CODES.internal,
]);

/** Remaps remembered for sessions this client has not seen registered yet (a remap may overtake a register ack). */
const REMEMBERED_REMAPS = 1024;

type State = 'open' | 'closing' | 'closed';

interface FlushWaiter {
  /** Resolves once every op enqueued up to this number is settled. */
  target: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

interface ReadRequest {
  sessionId: string;
  resolve: (details: SessionDetails) => void;
  reject: (err: Error) => void;
}

/** Connects to a daemon (in the background: ops may be logged at once; they are sent after the welcome). */
export function connect(options: ClientOptions): Client {
  return new Client(options);
}

/**
 * A long-lived connection to the daemon's WebSocket endpoint (docs/protocol.md): batches ops
 * into frames, keeps a bounded window of unacked ops, reconnects with backoff and resends what
 * was not acked, so each op is persisted exactly once.
 *
 * Flow: an op is queued → taken into a frame (numbered then) when the connection is welcomed and
 * the window has room → in flight until a cumulative ack covers its number. A disconnect moves
 * the in-flight ops back in front of the queue; the next welcome drops those it already covers.
 */
export class Client extends EventEmitter<ClientEvents> {
  /** The id this producer is known by across reconnects. */
  readonly clientId: string;

  private readonly wsUrl: string;
  private readonly headers: Record<string, string>;
  private readonly maxInflightOps: number;
  private readonly maxOpsPerFrame: number;
  private readonly highWaterMark: number;
  private readonly lowWaterMark: number;
  private readonly connectTimeoutMs: number;
  private readonly pingIntervalMs: number;
  private readonly buffer: OpBuffer;
  private readonly backoff: Backoff;
  private readonly host: SessionHost;

  private state: State = 'open';
  /** Why the client stopped by itself (replaced by another connection with its id). */
  private failure: DataCatError | undefined;
  private conn: Connection | null = null;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private pumpScheduled = false;
  /** Ops per frame on the current connection: our option, bounded by the welcome's limit. */
  private frameOps: number;
  private frameBytes = Number.POSITIVE_INFINITY;
  private flushWaiters: FlushWaiter[] = [];
  private capacityWaiters: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];
  private readonly reads = new Map<number, ReadRequest>();
  private nextReadId = 1;
  /** getDetails() calls not settled yet, from their flush to their answer: close() waits for those asked for before it. */
  private readonly readsInProgress = new Set<Promise<SessionDetails>>();
  private readonly sessions = new Map<string, Session>();
  private readonly remaps = new Map<string, string>();
  private closing: Promise<void> | undefined;
  private readonly counters = { errors: 0, connects: 0, framesSent: 0, opsSent: 0, opsResent: 0, bytesSent: 0 };

  constructor(options: ClientOptions) {
    super();
    if (!options || typeof options.url !== 'string') throw new TypeError('connect() needs { url: "ws://127.0.0.1:8079" }');
    const clientId = options.clientId ?? clientIdInUrl(options.url) ?? randomUUID();
    if (!CLIENT_ID_PATTERN.test(clientId)) throw new TypeError(`clientId must be 1-128 characters from A-Z a-z 0-9 . _ : - (got ${JSON.stringify(clientId)})`);
    this.clientId = clientId;
    this.wsUrl = buildWsUrl(options.url, clientId);
    this.headers = { ...options.headers };
    if (options.authToken !== undefined) this.headers['authorization'] = `Bearer ${options.authToken}`;
    this.maxInflightOps = positiveInt('maxInflightOps', options.maxInflightOps, CLIENT_DEFAULTS.maxInflightOps);
    this.maxOpsPerFrame = positiveInt('maxOpsPerFrame', options.maxOpsPerFrame, CLIENT_DEFAULTS.maxOpsPerFrame);
    this.highWaterMark = positiveInt('highWaterMark', options.highWaterMark, 2 * this.maxInflightOps);
    this.lowWaterMark = nonNegativeInt('lowWaterMark', options.lowWaterMark, Math.floor(this.highWaterMark / 2));
    if (this.lowWaterMark > this.highWaterMark) throw new RangeError('lowWaterMark must not exceed highWaterMark');
    this.connectTimeoutMs = positiveInt('connectTimeoutMs', options.connectTimeoutMs, CLIENT_DEFAULTS.connectTimeoutMs, MAX_TIMER_MS);
    this.pingIntervalMs = nonNegativeInt('pingIntervalMs', options.pingIntervalMs, CLIENT_DEFAULTS.pingIntervalMs, MAX_TIMER_MS);
    this.backoff = new Backoff({
      baseMs: positiveInt('reconnectBaseMs', options.reconnectBaseMs, CLIENT_DEFAULTS.reconnectBaseMs, MAX_TIMER_MS),
      maxMs: positiveInt('reconnectMaxMs', options.reconnectMaxMs, CLIENT_DEFAULTS.reconnectMaxMs, MAX_TIMER_MS),
    });
    this.frameOps = this.maxOpsPerFrame;
    this.buffer = new OpBuffer((err) => this.reportError(err));
    this.host = {
      enqueue: (body, sessionId, settle) => this.enqueue(body, sessionId, settle),
      read: (sessionId) => this.read(sessionId),
      forget: (session) => this.sessions.delete(session.id),
    };
    this.openConnection();
  }

  /** Whether a welcomed connection is up right now. */
  get connected(): boolean {
    return this.conn?.welcomed === true;
  }

  /** Ops accepted and not yet sent on the current connection. */
  get buffered(): number {
    return this.buffer.queuedCount;
  }

  /** Ops sent and not yet acked (the in-flight window). */
  get unacked(): number {
    return this.buffer.unackedCount;
  }

  /** A snapshot of the counters. */
  get stats(): Readonly<ClientStats> {
    return { ...this.counters, opsAcked: this.buffer.persistedCount, opsRefused: this.buffer.refusedCount };
  }

  /** Registers a session; resolves once the daemon has persisted it and named it. */
  register(options: RegisterOptions): Promise<Session> {
    const w: OpBody = { k: 'register', product: options.product, version: options.version };
    const parentPid = options.parentPid === undefined ? process.pid : options.parentPid;
    if (parentPid !== null) w['parent_pid'] = parentPid;
    if (options.hostname !== undefined) w['hostname'] = options.hostname;
    if (options.machineId !== undefined) w['machine_id'] = options.machineId;
    return new Promise<Session>((resolve, reject) => {
      this.enqueue(w, undefined, (err, sessionId) => (err ? reject(err) : resolve(this.sessionFor(sessionId!))));
    });
  }

  /**
   * A Session for an id registered elsewhere (another process, an HTTP client, an earlier run),
   * as DataCat's Python client's `Session(client, session_id)`. Nothing is checked locally: ops
   * for an unknown id are refused by the daemon with `unknown_session`.
   */
  attach(sessionId: string): Session {
    if (this.state !== 'open') throw this.closedError();
    return this.sessions.get(sessionId) ?? this.sessionFor(sessionId);
  }

  /** Resolves when every op accepted so far is acked (persisted or refused). */
  flush(): Promise<void> {
    if (this.state === 'closed') return Promise.reject(this.closedError());
    const target = this.buffer.lastEnqueued;
    if (this.buffer.oldestOutstanding > target) return Promise.resolve();
    return new Promise<void>((resolve, reject) => this.flushWaiters.push({ target, resolve, reject }));
  }

  /** After a high-rate method returned false: resolves once buffered + unacked ops are down to the low-water mark. */
  waitForCapacity(): Promise<void> {
    if (this.state === 'closed') return Promise.reject(this.closedError());
    if (this.buffer.outstanding <= this.lowWaterMark) return Promise.resolve();
    return new Promise<void>((resolve, reject) => this.capacityWaiters.push({ resolve, reject }));
  }

  /**
   * Flushes, then closes the socket cleanly and stops reconnecting. New ops throw from the moment
   * close() is called. Reads (`getDetails()`) already asked for are answered before the socket
   * closes. With `timeoutMs`, gives up flushing after that long: the socket is closed anyway,
   * unacked ops are dropped, reads still waiting reject, and the promise rejects with code 'timeout'.
   * If the client is replaced (4000) before everything is acked, it rejects with that 'replaced'
   * error (so does a close() called again). Called only after the client stopped, close() resolves.
   */
  close(options: CloseOptions = {}): Promise<void> {
    // Node fires a timer given more than 2^31 - 1 ms (or NaN, or Infinity) after 1 ms: such a
    // timeoutMs gave up at once and dropped every unacked op. Refused before anything changes,
    // so the client stays open and close() can be called again with a good value.
    const timeoutMs = options.timeoutMs === Infinity ? undefined : options.timeoutMs;
    if (timeoutMs !== undefined && !(typeof timeoutMs === 'number' && timeoutMs >= 0 && timeoutMs <= MAX_TIMER_MS))
      return Promise.reject(new RangeError(`close(): timeoutMs must be a number from 0 to ${MAX_TIMER_MS}, or Infinity (got ${String(options.timeoutMs)})`));
    if (this.closing) return this.closing;
    if (this.state === 'closed') return Promise.resolve();
    this.state = 'closing';
    this.closing = this.closeAfterFlush(timeoutMs);
    return this.closing;
  }

  private async closeAfterFlush(timeoutMs: number | undefined): Promise<void> {
    // A read asked for before close() (`const d = session.getDetails(); await client.close()`)
    // must be answered, not rejected: it waits for the same flush as close(), and close()'s
    // shutdown used to run first and reject it with 'closed' before its answer could arrive.
    // Only the reads asked for before close(): a read loop running on meanwhile cannot hold it open.
    const reads = [...this.readsInProgress];
    const flushed = this.flush().then(
      () => Promise.allSettled(reads).then(() => true as const),
      // The client stopped by itself meanwhile (replaced) and gave up its unacked ops. Resolving
      // here told `await client.close()` that everything was flushed, and without an 'error'
      // listener nothing else said otherwise: close() rejects with that failure instead.
      (err: Error) => err,
    );
    let timer: NodeJS.Timeout | undefined;
    const outcome =
      timeoutMs === undefined
        ? await flushed
        : await Promise.race([flushed, new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)))]);
    clearTimeout(timer);
    const conn = this.conn;
    const dropped = this.shutdown(new DataCatError('closed', 'the client was closed before the op was acked'));
    // Resolve once the socket is really gone, so that a process can exit (and a test can check) right after.
    await conn?.whenClosed;
    if (outcome === false) throw new DataCatError('timeout', `close(): ${dropped} ops were not acked within ${timeoutMs} ms and were dropped`);
    if (outcome !== true) throw outcome;
  }

  // ---- ops ----------------------------------------------------------------------------------

  private enqueue(body: OpBody, sessionId: string | undefined, settle?: Settle): boolean {
    if (this.state !== 'open') throw this.closedError();
    const batch = this.buffer.enqueue(body, sessionId, settle);
    // Once a session has a full frame waiting (or a window's worth waits), frames go out now;
    // otherwise at the end of this event-loop turn, so that ops logged together travel together.
    if (batch >= this.frameOps || this.buffer.queuedCount >= this.maxInflightOps) this.pump(true);
    if (this.buffer.queuedCount > 0) this.schedulePump();
    return this.buffer.outstanding <= this.highWaterMark;
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump(false);
    });
  }

  /**
   * Sends queued ops while the connection is welcomed and the window has room: everything that
   * fits in the window at once, so that ops of one session logged in this turn share batches.
   * `fullFramesOnly` (called while ops are being logged): only once at least a frame's worth waits.
   */
  private pump(fullFramesOnly: boolean): void {
    const conn = this.conn;
    if (!conn || !conn.welcomed) return;
    for (;;) {
      const n = Math.min(this.buffer.queuedCount, this.maxInflightOps - this.buffer.unackedCount);
      if (n <= 0 || (fullFramesOnly && n < this.frameOps)) return;
      for (const frame of this.buffer.take(n, this.frameOps)) this.sendFrame(conn, frame);
    }
  }

  /**
   * One `batch` or `ops` frame, split in halves while it is larger than the daemon's
   * max_frame_bytes (the daemon would close the socket, and the resend would fail the same way
   * forever). The halves of a batch are batches of contiguous numbers too.
   */
  private sendFrame(conn: Connection, frame: OpFrame): void {
    const ops = frame.ops;
    let bytes: Uint8Array;
    try {
      bytes =
        frame.kind === 'batch'
          ? encodeBatch(frame.sessionId, ops[0]!.seq, ops.map((o) => o.body))
          : encodeFrame({ t: 'ops', ops: ops.map((o) => o.wire()) });
    } catch (err) {
      // A value MessagePack cannot write (a circular object, a BigInt past 64 bits): split down
      // to the op that holds it and refuse that one alone. Thrown from here, it would have lost
      // the frame's other ops, or (inside the pump's setImmediate) ended the application.
      if (ops.length > 1) {
        const half = ops.length >>> 1;
        this.sendFrame(conn, { ...frame, ops: ops.slice(0, half) });
        this.sendFrame(conn, { ...frame, ops: ops.slice(half) });
        return;
      }
      const op = ops[0]!;
      this.buffer.refuseUnsent(op, new DataCatError('invalid_value', `op ${op.seq} (${op.body.k}) cannot be encoded as MessagePack: ${(err as Error).message}`, { seq: op.seq, op: op.wire(), cause: err }));
      this.progress();
      return;
    }
    if (bytes.length > this.frameBytes) {
      if (ops.length === 1) {
        const op = ops[0]!;
        this.buffer.refuseUnsent(
          op,
          new DataCatError('payload_too_large', `op ${op.seq} (${op.body.k}) alone is ${bytes.length} bytes as a frame; the daemon takes frames up to max_frame_bytes=${this.frameBytes}`, {
            seq: op.seq,
            op: op.wire(),
          }),
        );
        this.progress();
        return;
      }
      const half = ops.length >>> 1;
      this.sendFrame(conn, { ...frame, ops: ops.slice(0, half) });
      this.sendFrame(conn, { ...frame, ops: ops.slice(half) });
      return;
    }
    this.buffer.markSent(ops);
    conn.send(bytes);
    this.counters.framesSent++;
    this.counters.opsSent += ops.length;
    this.counters.bytesSent += bytes.length;
  }

  /** Resolves the flush and capacity waiters that are satisfied. */
  private progress(): void {
    const oldest = this.buffer.oldestOutstanding;
    while (this.flushWaiters.length > 0 && this.flushWaiters[0]!.target < oldest) this.flushWaiters.shift()!.resolve();
    if (this.capacityWaiters.length > 0 && this.buffer.outstanding <= this.lowWaterMark) {
      const waiters = this.capacityWaiters;
      this.capacityWaiters = [];
      for (const w of waiters) w.resolve();
    }
  }

  // ---- sessions and reads ---------------------------------------------------------------------

  private sessionFor(id: string): Session {
    const session = new Session(this.host, id);
    this.sessions.set(id, session);
    const serverId = this.remaps.get(id);
    if (serverId !== undefined) session[SET_SERVER_ID](serverId);
    return session;
  }

  /** get_session, after a flush: a read sees every op logged before it (as with DataCat's synchronous HTTP clients). */
  private read(sessionId: string): Promise<SessionDetails> {
    const reading = this.readAfterFlush(sessionId);
    this.readsInProgress.add(reading);
    const done = (): void => void this.readsInProgress.delete(reading);
    reading.then(done, done);
    return reading;
  }

  private async readAfterFlush(sessionId: string): Promise<SessionDetails> {
    await this.flush();
    if (this.state === 'closed') throw this.closedError();
    return new Promise<SessionDetails>((resolve, reject) => {
      const id = this.nextReadId++;
      this.reads.set(id, { sessionId, resolve, reject });
      this.sendRead(id, sessionId);
    });
  }

  private sendRead(id: number, sessionId: string): void {
    // Not connected: sent after the next welcome (reads are idempotent, so resending is safe).
    if (this.conn?.welcomed) this.conn.send(encodeFrame({ t: 'get_session', id, session_id: sessionId }));
  }

  // ---- connection lifecycle -------------------------------------------------------------------

  private openConnection(): void {
    this.reconnectTimer = undefined;
    if (this.state === 'closed') return;
    // Handlers check `this.conn === conn`: a late event of an old socket must never touch state.
    const conn: Connection = new Connection(
      { url: this.wsUrl, headers: this.headers, connectTimeoutMs: this.connectTimeoutMs, pingIntervalMs: this.pingIntervalMs },
      {
        welcome: (f) => this.conn === conn && this.onWelcome(conn, f),
        ack: (f) => this.conn === conn && this.onAck(f),
        remap: (f) => this.onRemap(f),
        session: (f) => this.onSession(f),
        errorFrame: (f) => this.onErrorFrame(f),
        closed: (info) => this.onClosed(conn, info),
        problem: (err) => this.reportError(err),
      },
    );
    this.conn = conn;
  }

  private onWelcome(conn: Connection, f: WelcomeFrame): void {
    this.counters.connects++;
    this.frameOps = Math.max(1, Math.min(this.maxOpsPerFrame, f.limits.max_ops_per_frame));
    this.frameBytes = f.limits.max_frame_bytes;
    const resent = this.buffer.welcome(f.acked, f.registered);
    this.counters.opsResent += resent;
    // Nothing to resend means nothing that could have caused the last close: start over from
    // the base delay. Otherwise wait for an ack (progress) before resetting, so that a frame the
    // daemon keeps rejecting cannot make the client reconnect at the base rate forever.
    if (resent === 0) this.backoff.reset();
    this.emitSafe('connected', { clientId: f.client_id, acked: f.acked, resent, version: String(f.version) });
    if (this.conn !== conn) return; // a listener closed the client
    for (const [id, r] of this.reads) this.sendRead(id, r.sessionId);
    this.pump(false);
    this.progress();
  }

  private onAck(f: AckFrame): void {
    const settled = this.buffer.ack(f.acked, f.errors, f.registered);
    if (settled > 0) this.backoff.reset();
    this.pump(false);
    this.progress();
  }

  private onRemap(f: RemapFrame): void {
    this.remaps.set(f.local_id, f.server_id);
    if (this.remaps.size > REMEMBERED_REMAPS) this.remaps.delete(this.remaps.keys().next().value!);
    this.sessions.get(f.local_id)?.[SET_SERVER_ID](f.server_id);
    this.emitSafe('remap', { localId: f.local_id, serverId: f.server_id });
  }

  private onSession(f: SessionFrame): void {
    const id = Number(f.id);
    const r = this.reads.get(id);
    if (!r) return; // an answer to a read resent after a reconnect, already answered
    this.reads.delete(id);
    r.resolve(f.session as SessionDetails);
  }

  private onErrorFrame(f: ErrorFrame): void {
    const err = new DataCatError(String(f.code), String(f.message));
    const r = f.id === null || f.id === undefined ? undefined : this.reads.get(Number(f.id));
    if (!r) return this.reportError(err);
    this.reads.delete(Number(f.id));
    r.reject(err);
  }

  private onClosed(conn: Connection, info: CloseInfo): void {
    if (this.conn !== conn) return;
    this.conn = null;
    if (info.welcomed) this.emitSafe('disconnected', { code: info.code, reason: info.reason });
    if (info.code === CLOSE_CODES.replaced) {
      return this.fail(
        new DataCatError('replaced', `another connection with client id "${this.clientId}" replaced this one; two producers must not share a client id. The client stopped.`, {
          closeCode: info.code,
        }),
      );
    }
    if (info.error) this.reportError(info.error);
    else if (FRAME_REJECTED.has(info.code))
      this.reportError(new DataCatError('frame_rejected', `the daemon closed the connection (${info.code}): ${info.reason}`, { closeCode: info.code }));
    else if (!info.welcomed)
      this.reportError(new DataCatError('connect_failed', `the connection closed before the welcome (${info.code}): ${info.reason}`, { closeCode: info.code }));
    if (this.state === 'closed') return;
    this.reconnectTimer = setTimeout(() => this.openConnection(), this.backoff.next());
  }

  /**
   * Another live connection uses our client id (4000). Reconnecting would replace it in turn, and
   * the two producers would keep cutting each other off and mixing their numbers under one
   * high-water mark: stop, and say why.
   */
  private fail(error: DataCatError): void {
    this.failure = error;
    this.reportError(error);
    this.shutdown(error);
  }

  /** Stops everything; fails whatever waits. Returns how many ops were given up. */
  private shutdown(error: DataCatError): number {
    this.state = 'closed';
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const conn = this.conn;
    this.conn = null;
    conn?.close(CLOSE_CODES.normal, 'client closed');
    // Every 'connected' gets its 'disconnected', the app's own close() included (the socket's own
    // close event no longer reaches onClosed: this.conn is already cleared).
    if (conn?.welcomed) this.emitSafe('disconnected', { code: CLOSE_CODES.normal, reason: 'client closed' });
    const dropped = this.buffer.abandon(error);
    for (const w of this.flushWaiters.splice(0)) w.reject(error);
    for (const w of this.capacityWaiters.splice(0)) w.reject(error);
    for (const r of this.reads.values()) r.reject(error);
    this.reads.clear();
    return dropped;
  }

  private closedError(): DataCatError {
    return this.failure ?? new DataCatError('closed', 'the client is closed');
  }

  // ---- events -------------------------------------------------------------------------------

  /**
   * 'error' without a listener would make EventEmitter throw, inside a socket callback, and crash
   * the host process: a telemetry client must not do that. Errors are always counted.
   */
  private reportError(err: DataCatError): void {
    this.counters.errors++;
    if (this.listenerCount('error') === 0) return;
    try {
      this.emit('error', err);
    } catch {
      // A throwing 'error' listener: nowhere left to report it without crashing.
    }
  }

  /** Emits from a socket callback: a throwing listener becomes an 'error', not an uncaught exception. */
  private emitSafe<K extends 'connected' | 'disconnected' | 'remap'>(event: K, ...args: ClientEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: ClientEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.reportError(new DataCatError('internal', `a '${event}' listener threw: ${(err as Error)?.message}`, { cause: err }));
    }
  }
}

/** Node's timers fire after 1 ms when given more than this: a delay option may not exceed it. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function positiveInt(name: string, value: number | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1 || value > max) throw new RangeError(`${name} must be an integer from 1 to ${max} (got ${value})`);
  return value;
}

function nonNegativeInt(name: string, value: number | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 0 || value > max) throw new RangeError(`${name} must be an integer from 0 to ${max} (got ${value})`);
  return value;
}
