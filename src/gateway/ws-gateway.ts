import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { CLIENT_ID_PATTERN, CLOSE, type RemapFrame } from '../protocol/frames.js';
import type { Limits } from '../protocol/limits.js';
import type { AuthCheck } from './auth.js';
import type { ClientMarks } from './client-marks.js';
import type { Ingest } from './ingest.js';
import type { SessionReads } from './session-reads.js';
import { WsConnection, closeReason, type Overload } from './ws-connection.js';

export interface WsGatewayOptions {
  server: Server;
  auth: AuthCheck;
  marks: ClientMarks;
  ingest: Ingest;
  reads: SessionReads;
  limits: Limits;
  maxInflightOps: number;
  overloaded: () => Overload;
  version: string;
}

/** What an upgrade refusal says: its error code (as in the HTTP API's bodies) and status text. */
const REFUSALS: Record<number, [error: string, reason: string]> = {
  400: ['bad_request', 'Bad Request'],
  401: ['unauthorized', 'Unauthorized'],
  404: ['not_found', 'Not Found'],
  503: ['shutting_down', 'Service Unavailable'],
};

/**
 * The WebSocket endpoint (`/ws`, docs/protocol.md) on the daemon's HTTP server. It checks the
 * upgrade (path, token, client id), makes each client id speak through one connection at a
 * time, welcomes the client with its durable high-water mark, and broadcasts remaps.
 */
export class WsGateway {
  private readonly wss: WebSocketServer;
  readonly connections = new Set<WsConnection>();
  private closing = false;
  /** The last moment the daemon held its sockets unread for its own sake (see listeningSince). */
  private lastDeafAt = 0;
  private deaf = false;
  /**
   * Remaps made while a connection waits for its welcome (its mark loading, or its client's
   * earlier ops settling): it is not in `connections` yet, so they are kept here, one list per
   * connection, and pushed right after its welcome.
   */
  private readonly welcoming = new Set<RemapFrame[]>();
  /**
   * A connection stopped reading because of an overload it saw itself, since the last
   * updateFlow(). The daemon calls updateFlow() when the overload changes between two written
   * batches; one that rose and fell within a single batch's write shows no change there, and a
   * connection that paused on it with nothing of its own left to answer would wait forever.
   */
  pausedOnOverload = false;

  constructor(private readonly options: WsGatewayOptions) {
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: options.limits.max_frame_bytes, // ws closes with 1009 past it
      perMessageDeflate: false, // compression costs more CPU than loopback bandwidth saves
    });
    options.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.upgrade(req, socket, head));
  }

  /** Push to every connected client (the remap broadcast). */
  broadcastRemap(localId: string, serverId: string): void {
    const frame: RemapFrame = { t: 'remap', local_id: localId, server_id: serverId };
    for (const conn of this.connections) conn.send(frame);
    for (const missed of this.welcoming) missed.push(frame);
  }

  /** The daemon's write backlog or outbox crossed its bound: pause or resume every socket. */
  updateFlow(): void {
    this.pausedOnOverload = false;
    this.noteDeafness();
    for (const conn of this.connections) conn.updateFlow();
  }

  /**
   * Since when the daemon has been reading its sockets. While it holds them unread for its own
   * sake (its write backlog over max_pending_bytes, or the outbox full under overflow block), the
   * heartbeats applications send wait unread in the socket: the hang watch counts an
   * application's silence from here, not from a heartbeat the daemon could not have heard.
   * 0 when it never stopped.
   */
  listeningSince(): number {
    this.noteDeafness();
    return this.lastDeafAt;
  }

  /** Called at every flow change and every duty tick: a deaf spell is noted while it lasts and when it ends. */
  private noteDeafness(): void {
    const deaf = this.connections.size > 0 && this.options.overloaded() !== null;
    if (deaf || this.deaf) this.lastDeafAt = Date.now();
    this.deaf = deaf;
  }

  pausedCount(): number {
    let n = 0;
    for (const conn of this.connections) if (conn.isPaused) n++;
    return n;
  }

  /** Shutdown: stop accepting, let each connection's submitted ops be answered, then close (1001). */
  async close(): Promise<void> {
    this.closing = true;
    for (const conn of this.connections) conn.drain();
    await Promise.all([...this.connections].map((c) => c.settled().catch(() => undefined)));
    // Sockets already gone (dropped by the client, replaced) are no longer in `connections`, but
    // what they read may still be in flight: a register waits for the upstream up to
    // register_timeout_ms before it is submitted. It must be submitted and answered while the
    // rounds, workers and store are still there; after they stop it was never answered, its
    // client's mark stayed held, and a reconnect waiting for that mark kept the daemon from ever
    // finishing its stop (the HTTP server waits for every socket).
    await this.options.marks.idle();
    await new Promise((r) => setImmediate(r)); // let the last acks go out
    for (const conn of this.connections) conn.close(CLOSE.shuttingDown, 'the daemon is shutting down');
    this.wss.close();
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://daemon');
    const refuse = (status: number, message: string): void => {
      const [error, reason] = REFUSALS[status]!;
      const body = JSON.stringify({ error, details: message });
      // A 503 is worth retrying, as over HTTP (README.md, "Errors"): it says when.
      const retry = status === 503 ? 'retry-after: 1\r\n' : '';
      socket.end(`HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${retry}connection: close\r\n\r\n${body}`);
    };
    // Not a 400: that says the request is wrong (a malformed client_id), and a client may give up
    // on it; shutting down is the daemon's state, answered as the HTTP API answers it.
    if (this.closing) return refuse(503, 'the daemon is shutting down and takes no more connections; retry in a moment');
    if (url.pathname !== '/ws') return refuse(404, `WebSocket connections go to /ws, not ${url.pathname}`);
    const denied = this.options.auth.refusal(req, url.searchParams.get('token'));
    if (denied) return refuse(401, denied);
    const clientId = url.searchParams.get('client_id') ?? `anon-${randomUUID()}`;
    if (!CLIENT_ID_PATTERN.test(clientId)) return refuse(400, 'client_id must be 1-128 characters from A-Z a-z 0-9 . _ : -');
    this.wss.handleUpgrade(req, socket, head, (ws) =>
      // Loading the client's mark reads LevelDB, which can fail (a disk error): that must cost this
      // socket its connection, not the daemon its life (an unhandled rejection ends the process).
      this.accept(ws, clientId).catch((err: unknown) => {
        ws.resume();
        ws.close(CLOSE.tryAgain, closeReason(`could not load this client's high-water mark, reconnect: ${(err as Error)?.message ?? String(err)}`));
      }),
    );
  }

  private async accept(ws: WebSocket, clientId: string): Promise<void> {
    const missed: RemapFrame[] = [];
    this.welcoming.add(missed);
    try {
      await this.welcome(ws, clientId, missed);
    } finally {
      this.welcoming.delete(missed);
    }
  }

  private async welcome(ws: WebSocket, clientId: string, missed: RemapFrame[]): Promise<void> {
    // Frames that arrive before the welcome wait in ws's buffer: nothing is read yet.
    ws.pause();
    // Until a WsConnection listens, a socket resumed only to be closed (replaced before its
    // welcome) may still read a frame ws refuses (past max_frame_bytes, a bad opcode): ws reports
    // that as an 'error' event, which with no listener would throw and take the daemon down.
    ws.on('error', () => undefined); // 'close' follows
    const mark = await this.options.marks.get(clientId);
    const previous = [...this.connections].find((c) => c.mark === mark);
    const owner = {};
    mark.owner = owner;
    if (previous) previous.close(CLOSE.replaced, 'replaced by a newer connection with the same client_id');
    // The new connection must be told a final mark: wait for whatever earlier connections of this
    // client id (open until just now, or closed by the client) still have in flight.
    await mark.idle();
    if (mark.owner !== owner) {
      // Replaced again meanwhile: the newer connection owns the mark. This socket was never
      // welcomed nor put in `connections`, so nothing else would ever close it: it would sit open,
      // paused and silent, forever. It is told what any replaced socket is told (4000); resumed
      // first, or the closing handshake would wait for ws's close timeout.
      ws.resume();
      return ws.close(CLOSE.replaced, 'replaced by a newer connection with the same client_id');
    }
    if (ws.readyState !== ws.OPEN) return this.options.marks.release(mark, owner); // gone while we waited
    if (this.closing) {
      // The daemon began to stop while this socket waited for its welcome: close() has already
      // closed the connections it knew, and would never close this one. It is told what those were
      // told (1001) rather than welcomed by a daemon on its way out; its client resends later.
      this.options.marks.release(mark, owner);
      ws.resume();
      return ws.close(CLOSE.shuttingDown, 'the daemon is shutting down');
    }
    mark.restart();
    const conn = new WsConnection(ws, mark, {
      ingest: this.options.ingest,
      reads: this.options.reads,
      limits: this.options.limits,
      maxInflightOps: this.options.maxInflightOps,
      overloaded: this.options.overloaded,
      pausedOnOverload: () => (this.pausedOnOverload = true),
      onClosed: (c) => {
        this.connections.delete(c);
        this.options.marks.release(mark, owner);
      },
    });
    this.connections.add(conn);
    conn.send({
      t: 'welcome',
      client_id: clientId,
      acked: mark.durable,
      registered: mark.registrations(),
      limits: { max_frame_bytes: this.options.limits.max_frame_bytes, max_ops_per_frame: this.options.limits.max_ops_per_frame },
      version: this.options.version,
    });
    for (const frame of missed) conn.send(frame);
    ws.resume();
    conn.updateFlow();
  }
}
