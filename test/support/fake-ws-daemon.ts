/**
 * An in-process fake of the daemon's WebSocket endpoint (docs/protocol.md), for testing
 * src/client without the real gateway: `ops` and `batch` frames, welcome, cumulative acks (with a
 * configurable delay, or held), registered ids `local-session-…`, remap pushes, get_session answers, dropped
 * connections mid-stream, and a per-client-id high-water mark that persists across connections
 * (and across fake restarts, through `store`).
 *
 * "Persisting" is instant and exact here: an op is persisted the moment its frame is read, and
 * the high-water mark advances with it, which is what the real daemon guarantees after its write
 * batch. So a connection dropped before its ack went out leaves ops persisted but unacked: the
 * case the welcome's `acked` and `registered` exist for.
 *
 * Support code only: tap does not run this file (see .taprc `include`).
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { Packr, Unpackr } from 'msgpackr';
import { WebSocketServer, type WebSocket } from 'ws';

export interface FakeWsDaemonOptions {
  /** Port to listen on (0 = a free one). Use the old port and `store` to simulate a daemon restart. */
  port?: number;
  /** The persisted state; pass a previous fake's `store` to simulate a restart. */
  store?: FakeStore;
  /** Delay before an ack goes out (ms); acks are coalesced. 0 = the end of the event-loop turn. */
  ackDelayMs?: number;
  /** max_ops_per_frame told in the welcome (and enforced: ops past it are refused with too_many_ops). */
  maxOpsPerFrame?: number;
  /** max_frame_bytes told in the welcome (and enforced: larger frames close the socket with 1009). */
  maxFrameBytes?: number;
  /** When set, the upgrade needs `Authorization: Bearer <authToken>` (or `?token=`). */
  authToken?: string;
  /** Encode the fake's frames with msgpackr records (default: plain MessagePack maps, as any other encoder writes). */
  useRecords?: boolean;
  /** Refuse an op: return [code, message]. Called for each new (non-duplicate) op before it is applied. */
  refuse?: (op: ReceivedOp) => [code: string, message: string] | null;
  /** Registrations told in the welcome (the real daemon: 64). */
  rememberRegistrations?: number;
}

/** Every op as received, duplicates included, with its connection number. */
export interface ReceivedOp {
  clientId: string;
  conn: number;
  q: number;
  k: string;
  /** The op as an `ops` frame carries it: `{ q, k, session_id?, ...fields }` (for a batch op, q and session_id from the envelope). */
  op: Record<string, unknown>;
  /** The kind of frame it came in. */
  frame: 'ops' | 'batch';
  /** The op exactly as it was in the frame (a batch op: without q and session_id, unless the client sent them). */
  raw: Record<string, unknown>;
}

export interface PersistedOp {
  q: number;
  k: string;
  op: Record<string, unknown>;
}

export interface FakeClientRecord {
  /** The persisted high-water mark: every op with q ≤ hwm is persisted or refused. */
  hwm: number;
  /** Persisted ops, in the order persisted (refused ones are not here). */
  persisted: PersistedOp[];
  /** [q, session id] of every register, oldest first. */
  registered: Array<[number, string]>;
}

export interface FakeSession {
  id: string;
  server_id: string | null;
  product: string;
  version: string;
  active: boolean;
  crashed: boolean;
  heartbeats: number;
  heartbeat_paused: boolean;
  state: Record<string, unknown>;
  events: Array<Record<string, unknown>>;
  metrics: Array<Record<string, unknown>>;
}

/** What survives a restart of the fake. */
export interface FakeStore {
  clients: Map<string, FakeClientRecord>;
  sessions: Map<string, FakeSession>;
  /** server id → local id */
  aliases: Map<string, string>;
  localCounter: number;
}

export interface FrameRecord {
  conn: number;
  clientId: string;
  kind: 'ops' | 'batch';
  /** A batch's session_id. */
  sessionId?: string;
  ops: number;
  bytes: number;
  firstQ: number;
  lastQ: number;
}

interface FakeConn {
  n: number;
  ws: WebSocket;
  clientId: string;
  welcomed: boolean;
  dead: boolean;
  lastQ: number;
  /** Ops received since the last ack went out (duplicates included): what the client holds unacked. */
  unacked: number;
  ackTimer: NodeJS.Timeout | undefined;
  ackImmediate: NodeJS.Immediate | undefined;
  pendingErrors: Array<[number | null, string, string]>;
  pendingRegistered: Array<[number, string]>;
}

type Refusal = [code: string, message: string];

export function newFakeStore(): FakeStore {
  return { clients: new Map(), sessions: new Map(), aliases: new Map(), localCounter: 0 };
}

export class FakeWsDaemon {
  readonly store: FakeStore;
  readonly received: ReceivedOp[] = [];
  readonly frames: FrameRecord[] = [];
  readonly upgrades: Array<{ url: string; authorization: string | undefined }> = [];
  /** Close codes of connections the fake closed or saw close, in order. */
  readonly closes: Array<{ conn: number; code: number }> = [];
  readonly live = new Set<FakeConn>();
  /** Every socket ever accepted, to cut the stragglers (frozen ones) on close. */
  private readonly sockets = new Set<WebSocket>();
  connectionCount = 0;
  skippedDuplicates = 0;
  /** The most ops a connection had received and not yet seen acked. */
  maxUnackedSeen = 0;
  getSessionRequests = 0;
  ackDelayMs: number;
  refuse: FakeWsDaemonOptions['refuse'];
  /** Drop the connection after persisting this many more ops (the rest of the frame and the pending ack are lost). */
  dropAfterOps: number | null = null;
  /** How to drop: a close code, or null for an abrupt TCP cut (the client sees 1006). */
  dropCode: number | null = null;
  /**
   * Tell welcomes an `acked` this much below the real mark (which still filters duplicates): a
   * client then resends ops the daemon already has, and the mark must skip them.
   */
  staleWelcomeBy = 0;
  private acksHeld = false;
  private welcomeHeld = false;
  private readonly server: Server;
  private readonly wss: WebSocketServer;
  private readonly packr: Packr;
  private readonly unpackr = new Unpackr({ useRecords: true, mapsAsObjects: true });
  private readonly maxOpsPerFrame: number;
  private readonly maxFrameBytes: number;
  private readonly rememberRegistrations: number;
  port = 0;

  constructor(private readonly options: FakeWsDaemonOptions = {}) {
    this.store = options.store ?? newFakeStore();
    this.ackDelayMs = options.ackDelayMs ?? 0;
    this.refuse = options.refuse;
    this.maxOpsPerFrame = options.maxOpsPerFrame ?? 10_000;
    this.maxFrameBytes = options.maxFrameBytes ?? 4 * 1024 * 1024;
    this.rememberRegistrations = options.rememberRegistrations ?? 64;
    this.packr = new Packr({ useRecords: options.useRecords ?? false });
    this.server = createServer((_req, res) => res.writeHead(404).end());
    this.wss = new WebSocketServer({ noServer: true, maxPayload: this.maxFrameBytes, perMessageDeflate: false });
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.upgrade(req, socket, head));
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port ?? 0, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  /** The persisted record of a client id (created empty if unknown). */
  client(clientId: string): FakeClientRecord {
    let rec = this.store.clients.get(clientId);
    if (!rec) this.store.clients.set(clientId, (rec = { hwm: 0, persisted: [], registered: [] }));
    return rec;
  }

  /** Stop sending acks until releaseAcks(). */
  holdAcks(): void {
    this.acksHeld = true;
  }

  releaseAcks(): void {
    this.acksHeld = false;
    for (const c of this.live) this.scheduleAck(c);
  }

  /** Accept connections but do not welcome them until releaseWelcome(). */
  holdWelcome(): void {
    this.welcomeHeld = true;
  }

  releaseWelcome(): void {
    this.welcomeHeld = false;
    for (const c of this.live) if (!c.welcomed) this.welcome(c);
  }

  /** Drops every live connection: abruptly (null) or with a close code. */
  dropConnections(code: number | null = null): void {
    for (const c of [...this.live]) this.drop(c, code);
  }

  /**
   * Stops reading every live connection without closing it (no acks, no pongs): a hung daemon
   * or a half-open TCP connection, as the client sees it.
   */
  freezeConnections(): void {
    for (const c of [...this.live]) {
      c.ws.pause();
      this.forget(c);
    }
  }

  /** Pushes a remap to every connected client, as the daemon does when the server names a local session. */
  remap(localId: string, serverId: string): void {
    const s = this.store.sessions.get(localId);
    if (s) s.server_id = serverId;
    this.store.aliases.set(serverId, localId);
    for (const c of this.live) if (c.welcomed) this.send(c, { t: 'remap', local_id: localId, server_id: serverId });
  }

  session(id: string): FakeSession | undefined {
    return this.store.sessions.get(this.store.aliases.get(id) ?? id);
  }

  /** Stops the fake: closes every connection with `code` (1001: shutting down) and the listener. */
  async close(code = 1001): Promise<void> {
    for (const c of [...this.live]) this.drop(c, code);
    for (const ws of this.sockets) if (ws.readyState !== ws.OPEN || (ws as unknown as { isPaused: boolean }).isPaused) ws.terminate();
    this.wss.close();
    this.server.closeAllConnections?.();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- connections ------------------------------------------------------------------------

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    this.upgrades.push({ url: req.url ?? '', authorization: req.headers.authorization });
    const refuse = (status: number, text: string): void => {
      socket.end(`HTTP/1.1 ${status} ${text}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
    };
    if (url.pathname !== '/ws') return refuse(404, 'Not Found');
    const token = this.options.authToken;
    if (token !== undefined && req.headers.authorization !== `Bearer ${token}` && url.searchParams.get('token') !== token) return refuse(401, 'Unauthorized');
    const clientId = url.searchParams.get('client_id') ?? `anon-${++this.connectionCount}`;
    if (!/^[A-Za-z0-9._:-]{1,128}$/.test(clientId)) return refuse(400, 'Bad Request');
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, clientId));
  }

  private accept(ws: WebSocket, clientId: string): void {
    for (const old of [...this.live]) if (old.clientId === clientId) this.drop(old, 4000, 'replaced by a newer connection with the same client_id');
    const conn: FakeConn = {
      n: ++this.connectionCount,
      ws,
      clientId,
      welcomed: false,
      dead: false,
      lastQ: 0,
      unacked: 0,
      ackTimer: undefined,
      ackImmediate: undefined,
      pendingErrors: [],
      pendingRegistered: [],
    };
    this.live.add(conn);
    this.sockets.add(ws);
    ws.on('message', (data, isBinary) => this.onMessage(conn, data as Buffer, isBinary));
    ws.on('close', (code) => {
      this.sockets.delete(ws);
      this.closes.push({ conn: conn.n, code });
      this.forget(conn);
    });
    ws.on('error', () => undefined);
    if (!this.welcomeHeld) this.welcome(conn);
  }

  private welcome(conn: FakeConn): void {
    const rec = this.client(conn.clientId);
    conn.welcomed = true;
    conn.lastQ = rec.hwm;
    this.send(conn, {
      t: 'welcome',
      client_id: conn.clientId,
      acked: Math.max(0, rec.hwm - this.staleWelcomeBy),
      registered: this.rememberRegistrations > 0 ? rec.registered.slice(-this.rememberRegistrations) : [],
      limits: { max_frame_bytes: this.maxFrameBytes, max_ops_per_frame: this.maxOpsPerFrame },
      version: 'fake-0',
    });
  }

  private drop(conn: FakeConn, code: number | null, reason = 'dropped by the test'): void {
    if (conn.dead) return;
    this.forget(conn);
    if (code === null) conn.ws.terminate();
    else conn.ws.close(code, reason);
  }

  private forget(conn: FakeConn): void {
    conn.dead = true;
    clearTimeout(conn.ackTimer);
    if (conn.ackImmediate) clearImmediate(conn.ackImmediate);
    this.live.delete(conn);
  }

  private send(conn: FakeConn, frame: Record<string, unknown>): void {
    if (!conn.dead && conn.ws.readyState === conn.ws.OPEN) conn.ws.send(this.packr.pack(frame));
  }

  // ---- frames -----------------------------------------------------------------------------

  private onMessage(conn: FakeConn, data: Buffer, isBinary: boolean): void {
    if (conn.dead) return;
    if (!isBinary) return this.drop(conn, 1003, 'text frame');
    let frame: any;
    try {
      frame = this.unpackr.unpack(data);
    } catch {
      return this.drop(conn, 1007, 'not MessagePack');
    }
    if (!conn.welcomed) return this.drop(conn, 1008, 'a frame before the welcome'); // the client must wait for it
    if (typeof frame !== 'object' || frame === null || typeof frame.t !== 'string') return this.drop(conn, 1008, 'not a frame');
    if (frame.t === 'ops') {
      if (!Array.isArray(frame.ops)) return this.drop(conn, 1008, 'ops not an array');
      return this.onOps(conn, frame.ops, data.length);
    }
    if (frame.t === 'batch') return this.onBatch(conn, frame, data.length);
    if (frame.t === 'get_session') return this.onGetSession(conn, frame.id, frame.session_id);
    return this.drop(conn, 1008, `unknown frame type ${frame.t}`);
  }

  private onOps(conn: FakeConn, ops: Array<Record<string, unknown>>, bytes: number): void {
    const rec = this.client(conn.clientId);
    this.frames.push({ conn: conn.n, clientId: conn.clientId, kind: 'ops', ops: ops.length, bytes, firstQ: Number(ops[0]?.['q']), lastQ: Number(ops.at(-1)?.['q']) });
    conn.unacked += ops.length;
    this.maxUnackedSeen = Math.max(this.maxUnackedSeen, conn.unacked);
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      const q = op['q'];
      if (typeof q !== 'number' || !Number.isSafeInteger(q) || q < 1) {
        conn.pendingErrors.push([null, 'invalid_field', `op ${i} has no valid q`]);
        continue;
      }
      const tooMany: Refusal | null = i >= this.maxOpsPerFrame ? ['too_many_ops', `max_ops_per_frame=${this.maxOpsPerFrame}`] : null;
      const received: ReceivedOp = { clientId: conn.clientId, conn: conn.n, q, k: String(op['k']), op, frame: 'ops', raw: op };
      if (this.receive(conn, rec, received, tooMany) === 'dropped') return;
    }
    this.scheduleAck(conn);
  }

  /**
   * A batch, as the real daemon takes it: the envelope names the session, the first number and
   * the count; the `bin` holds exactly n ops `{k, ...fields}`, op i numbered q+i. Ops at or below
   * the mark are skipped; a batch over max_ops_per_frame, or whose bin is not an array of n ops,
   * is refused whole.
   */
  private onBatch(conn: FakeConn, frame: Record<string, unknown>, bytes: number): void {
    const { session_id: sessionId, q, n, ops } = frame;
    if (typeof sessionId !== 'string' || !isSeq(q) || !isSeq(n) || !(ops instanceof Uint8Array)) return this.drop(conn, 1008, 'a malformed batch envelope');
    const rec = this.client(conn.clientId);
    this.frames.push({ conn: conn.n, clientId: conn.clientId, kind: 'batch', sessionId, ops: n, bytes, firstQ: q, lastQ: q + n - 1 });
    conn.unacked += n;
    this.maxUnackedSeen = Math.max(this.maxUnackedSeen, conn.unacked);
    let inner: unknown;
    try {
      inner = this.unpackr.unpack(ops);
    } catch {
      inner = null;
    }
    const whole: Refusal | null =
      n > this.maxOpsPerFrame
        ? ['too_many_ops', `the batch has ${n} ops; max_ops_per_frame=${this.maxOpsPerFrame}`]
        : !Array.isArray(inner) || inner.length !== n
          ? ['bad_request', `the batch ops are not an array of n=${n} ops`]
          : null;
    for (let i = 0; i < n; i++) {
      const raw = (Array.isArray(inner) && isObject(inner[i]) ? inner[i] : {}) as Record<string, unknown>;
      const op: Record<string, unknown> = { q: q + i, k: raw['k'], session_id: sessionId };
      for (const key in raw) if (key !== 'q' && key !== 'session_id') op[key] = raw[key];
      const received: ReceivedOp = { clientId: conn.clientId, conn: conn.n, q: q + i, k: String(raw['k']), op, frame: 'batch', raw };
      if (this.receive(conn, rec, received, whole) === 'dropped') return;
    }
    this.scheduleAck(conn);
  }

  /** One op of a frame: skipped (a duplicate), refused or applied; 'dropped' when the test cut the connection right after it. */
  private receive(conn: FakeConn, rec: FakeClientRecord, received: ReceivedOp, refusedWith: Refusal | null): 'dropped' | undefined {
    const q = received.q;
    this.received.push(received);
    if (q <= rec.hwm || q <= conn.lastQ) {
      this.skippedDuplicates++;
      return undefined;
    }
    conn.lastQ = q;
    rec.hwm = q; // persisted or refused: covered by the mark either way
    const refusal = refusedWith ?? this.refuse?.(received) ?? this.apply(conn, rec, q, received.op);
    if (refusal) conn.pendingErrors.push([q, refusal[0], refusal[1]]);
    else rec.persisted.push({ q, k: received.k, op: received.op });
    if (this.dropAfterOps !== null && --this.dropAfterOps <= 0) {
      this.dropAfterOps = null;
      this.drop(conn, this.dropCode); // the rest of this frame is never read; the ack is lost
      return 'dropped';
    }
    return undefined;
  }

  /** Applies a new op; returns a refusal or null. */
  private apply(conn: FakeConn, rec: FakeClientRecord, q: number, op: Record<string, unknown>): Refusal | null {
    const k = op['k'];
    if (k === 'register') {
      if (typeof op['product'] !== 'string' || typeof op['version'] !== 'string') return ['invalid_field', 'product and version are required'];
      const id = `local-session-${Math.floor(Date.now() / 1000)}-${++this.store.localCounter}`;
      this.store.sessions.set(id, {
        id,
        server_id: null,
        product: op['product'],
        version: op['version'],
        active: true,
        crashed: false,
        heartbeats: 0,
        heartbeat_paused: false,
        state: {},
        events: [],
        metrics: [],
      });
      rec.registered.push([q, id]);
      conn.pendingRegistered.push([q, id]);
      return null;
    }
    const sid = op['session_id'];
    if (typeof sid !== 'string') return ['invalid_field', 'session_id is required'];
    const s = this.session(sid);
    if (!s) return ['unknown_session', `no session has the id "${sid}"`];
    if (!s.active) return ['end', 'crash', 'heartbeat', 'pause_heartbeat', 'resume_heartbeat'].includes(String(k)) ? null : ['session_ended', 'the session has ended'];
    switch (k) {
      case 'state':
        if (typeof op['state'] !== 'object' || op['state'] === null) return ['invalid_field', 'state must be an object'];
        merge(s.state, op['state'] as Record<string, unknown>);
        return null;
      case 'event':
        if (typeof op['name'] !== 'string') return ['invalid_field', 'name is required'];
        s.events.push(strip(op));
        return null;
      case 'metric':
        if (typeof op['name'] !== 'string') return ['invalid_field', 'name is required'];
        s.metrics.push(strip(op));
        return null;
      case 'heartbeat':
        s.heartbeats++;
        return null;
      case 'pause_heartbeat':
        s.heartbeat_paused = true;
        return null;
      case 'resume_heartbeat':
        s.heartbeat_paused = false;
        return null;
      case 'end':
        s.active = false;
        return null;
      case 'crash':
        s.active = false;
        s.crashed = true;
        return null;
      default:
        return ['unknown_op', `unknown op "${String(k)}"`];
    }
  }

  private scheduleAck(conn: FakeConn): void {
    if (this.acksHeld || conn.dead || conn.ackTimer || conn.ackImmediate) return;
    const fire = (): void => {
      conn.ackTimer = undefined;
      conn.ackImmediate = undefined;
      if (this.acksHeld || conn.dead) return;
      const frame: Record<string, unknown> = { t: 'ack', acked: this.client(conn.clientId).hwm };
      if (conn.pendingErrors.length) frame['errors'] = conn.pendingErrors.splice(0);
      if (conn.pendingRegistered.length) frame['registered'] = conn.pendingRegistered.splice(0);
      conn.unacked = 0;
      this.send(conn, frame);
    };
    if (this.ackDelayMs > 0) conn.ackTimer = setTimeout(fire, this.ackDelayMs);
    else conn.ackImmediate = setImmediate(fire);
  }

  private onGetSession(conn: FakeConn, id: unknown, sessionId: unknown): void {
    this.getSessionRequests++;
    const s = typeof sessionId === 'string' ? this.session(sessionId) : undefined;
    if (!s) return this.send(conn, { t: 'error', id: id ?? null, code: 'unknown_session', message: `no session has the id "${String(sessionId)}"` });
    this.send(conn, {
      t: 'session',
      id,
      session: {
        id: sessionId,
        server_id: s.server_id,
        local_id: s.id,
        product: s.product,
        version: s.version,
        active: s.active,
        crashed: s.crashed,
        hung: false,
        heartbeat_paused: s.heartbeat_paused,
        synced_with_server: false,
        state: s.state,
        events: s.events,
        metrics: s.metrics,
        last_heartbeat: null,
        hostname: null,
        machine_id: null,
        parent_pid: null,
      },
    });
  }
}

function isSeq(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 1;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export async function startFakeWsDaemon(options: FakeWsDaemonOptions = {}): Promise<FakeWsDaemon> {
  return new FakeWsDaemon(options).listen();
}

function strip(op: Record<string, unknown>): Record<string, unknown> {
  const { q: _q, k: _k, session_id: _s, ...rest } = op;
  return rest;
}

/** DataCat's deep merge, enough for tests: objects merge, null deletes, the rest replaces. */
function merge(target: Record<string, unknown>, patch: Record<string, unknown>): void {
  for (const [key, v] of Object.entries(patch)) {
    if (v === null) delete target[key];
    else if (typeof v === 'object' && !Array.isArray(v) && typeof target[key] === 'object' && target[key] !== null && !Array.isArray(target[key]))
      merge(target[key] as Record<string, unknown>, v as Record<string, unknown>);
    else target[key] = v;
  }
}

/** Polls until `pred` holds (or throws after `timeoutMs` naming `what`). */
export async function until(pred: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
