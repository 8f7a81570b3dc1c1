import type { DaemonConfig } from './config/index.js';
import { openStore, type Db } from './outbox/store.js';
import { ALL_ACTIVE, COUNTERS, parseActiveKey } from './outbox/keys.js';
import { decodeCounters } from './outbox/counters.js';
import { CommitQueue } from './outbox/commit-queue.js';
import { limitsFrom, type Limits } from './protocol/limits.js';
import { ActorPool } from './workers/actor-pool.js';
import { Directory } from './actors/directory.js';
import { RoundCoordinator } from './actors/round-coordinator.js';
import type { SyncActor } from './actors/sync-actor.js';
import { Ingest } from './gateway/ingest.js';
import { SessionReads } from './gateway/session-reads.js';
import { HttpGateway } from './gateway/http-server.js';
import { buildRoutes } from './gateway/http-routes.js';
import { AuthCheck } from './gateway/auth.js';
import { ClientMarks } from './gateway/client-marks.js';
import { WsGateway } from './gateway/ws-gateway.js';
import { hostIdentity } from './host-identity.js';
import { silentLogger, type Logger } from './logger.js';
import { VERSION } from './version.js';
import { watchParent } from './parent-watch.js';

export interface DaemonOptions {
  logger?: Logger;
  /**
   * Per-application mode (a DataCat client started the daemon through DATACAT_CONFIG, or
   * exit_with_parent): watch the parent process, and when it exits mark every active session
   * crashed, persist, and call `onParentExit`.
   */
  watchParent?: { onExit: (err?: unknown) => void };
  /** Tests wrap the store to inject write failures. */
  wrapDb?: (db: Db) => Db;
}

/**
 * A running daemon: one LevelDB store, one actor pool, one round coordinator, one sync actor,
 * one port. `startDaemon` wires them in dependency order and is what the CLI and the tests use.
 */
export class Daemon {
  sync: SyncActor | null = null;
  private closing: Promise<void> | null = null;
  private readonly ticker: NodeJS.Timeout;
  private readonly syncReady: Promise<void>;

  private constructor(
    readonly config: DaemonConfig,
    readonly db: Db,
    readonly commits: CommitQueue,
    readonly directory: Directory,
    readonly pool: ActorPool,
    readonly rounds: RoundCoordinator,
    readonly ingest: Ingest,
    readonly http: HttpGateway,
    readonly ws: WsGateway,
    readonly port: number,
    readonly limits: Limits,
    private readonly logger: Logger,
    private readonly startedSync: () => Promise<void>,
  ) {
    this.syncReady = this.startedSync();
    // Once a second: the actors' periodic duties (persisting activity that is due), and
    // ended sessions idle for session_idle_seconds leave worker memory (active ones stay: their
    // actors watch heartbeats).
    this.ticker = setInterval(() => {
      void this.rounds.tick('due').catch(() => undefined); // a failed round is retried by the next tick
      this.rounds.passivateIdle(config.session_idle_seconds * 1000);
    }, 1000);
    this.ticker.unref();
  }


  static async start(config: DaemonConfig, options: DaemonOptions = {}): Promise<Daemon> {
    const logger = options.logger ?? silentLogger;
    const rawDb = await openStore(config.data_dir);
    const db = options.wrapDb ? options.wrapDb(rawDb) : rawDb;
    const counters = decodeCounters(await db.get(COUNTERS));
    const commits = new CommitQueue(db, counters, { sync: config.durability === 'fsync' });
    const directory = await Directory.load(db);
    const active: number[] = [];
    for await (const key of db.keys(ALL_ACTIVE)) active.push(parseActiveKey(key));
    const limits = limitsFrom(config);
    const pool = new ActorPool(config.workers, {
      recent_events_limit: config.recent_events_limit,
      recent_metrics_limit: config.recent_metrics_limit,
      heartbeat_timeout_seconds: config.heartbeat_timeout_seconds,
      batch_interval_seconds: config.batch_interval_seconds,
      watched_parent_pid: options.watchParent && process.ppid > 1 ? process.ppid : null,
      limits,
    });
    const rounds = new RoundCoordinator(pool, commits, db, active);
    const identity = hostIdentity();
    let sync: SyncActor | null = null;
    const ingest = new Ingest(rounds, directory, commits, { register_timeout_ms: config.register_timeout_ms, ...identity }, () =>
      sync ? (body, timeoutMs) => sync!.createNow(body, timeoutMs) : null,
    );
    const reads = new SessionReads(db, directory, rounds, (sn) => sync?.hasPending(sn) ?? true);
    // Filled in below; the routes call through it so /health works before the sync actor exists.
    let daemon: Daemon | null = null;
    const routes = buildRoutes({
      ingest,
      reads,
      limits,
      health: () => daemon!.health(),
      flush: (wait) => daemon!.flush(wait),
    });
    const auth = new AuthCheck(config.auth_token);
    const http = new HttpGateway({
      host: config.host,
      port: config.daemon_port,
      max_body_bytes: config.max_body_bytes,
      auth,
      routes,
      retryAfterSeconds: () => 1,
    });
    const overloaded = (): boolean => commits.pendingBytes > config.max_pending_bytes;
    const ws = new WsGateway({
      server: http.server,
      auth,
      marks: new ClientMarks(db),
      ingest,
      reads,
      limits,
      maxInflightOps: config.ws_max_inflight_ops,
      overloaded,
      version: VERSION,
    });
    // Sockets paused for a write backlog read again once it is below its bound.
    let wasOverloaded = false;
    commits.on('written', () => {
      const now = overloaded();
      if (now !== wasOverloaded) ws.updateFlow();
      wasOverloaded = now;
    });
    const address = await http.listen();

    // The upstream client (undici) is loaded after the port is open: it alone takes ~70 ms to
    // import, and DataCat clients may talk to the daemon as soon as it listens.
    const startSync = async (): Promise<void> => {
      const [{ UpstreamClient }, { SyncActor }] = await Promise.all([import('./upstream/upstream-client.js'), import('./actors/sync-actor.js')]);
      const upstream = new UpstreamClient(config);
      sync = new SyncActor(db, commits, directory, upstream, config, (sn, localId, serverId) => {
        rounds.broadcastRemap(sn, serverId);
        if (localId) ws.broadcastRemap(localId, serverId);
        logger.debug({ local_id: localId, server_id: serverId }, 'session remapped');
      });
      daemon!.sync = sync;
      sync.startHeartbeats(config.upstream_heartbeat_seconds * 1000, function* live() {
        for (const sn of rounds.activeSessions) if (!rounds.hungSessions.has(sn)) yield sn;
      });
      rounds.afterCommit = (sns) => {
        const now = Date.now();
        for (const sn of sns) sync!.notify(sn, now);
      };
      await sync.start();
    };
    daemon = new Daemon(config, db, commits, directory, pool, rounds, ingest, http, ws, address.port, limits, logger, startSync);
    logger.info({ port: address.port, host: config.host, data_dir: config.data_dir, server_url: config.server_url }, 'datacat daemon listening');
    if (options.watchParent) {
      const { onExit } = options.watchParent;
      const started = daemon;
      const watch = watchParent((parentPid) => started.parentExited(parentPid).then(() => onExit(), onExit));
      if (watch) logger.info({ parent_pid: watch.parentPid }, 'exiting with the parent process');
    }
    return daemon;
  }

  /** Resolves once the sync actor runs (the upstream client is loaded lazily after listen). */
  ready(): Promise<void> {
    return this.syncReady;
  }

  health(): Record<string, unknown> {
    const c = this.commits.counters;
    const queue = this.sync?.queueInfo();
    return {
      status: 'ok',
      pid: process.pid,
      version: VERSION,
      sessions: this.rounds.activeSessions.size,
      upstream: this.sync?.link.health() ?? { url: this.config.server_url, online: false, attempt: 0, next_retry_at: null, last_error: null, last_success_at: null },
      queue: {
        depth: c.depth,
        bytes: c.bytes,
        oldest_age_ms: queue?.oldestT != null ? Math.max(0, Date.now() - queue.oldestT) : 0,
        dead_letters: c.dead,
        dropped: c.dropped,
        sessions_pending: queue?.sessions ?? 0,
      },
      workers: { size: this.pool.size, alive: this.pool.alive, restarts: this.pool.restarts },
      remaps: c.remaps,
      sessions_known: this.directory.size,
    };
  }

  /**
   * The application that started this daemon is gone (a per-application daemon, README): every
   * active session is marked crashed (event daemon_parent_exited, crash op), everything is
   * persisted, and, while the upstream is online, the queue gets up to exit_drain_seconds to
   * drain before the daemon stops.
   */
  async parentExited(parentPid: number): Promise<void> {
    const rt = Date.now();
    const sessions = [...this.rounds.activeSessions];
    this.logger.warn({ parent_pid: parentPid, sessions: sessions.length }, 'the application that started the daemon exited: marking its sessions crashed');
    if (sessions.length > 0) await this.rounds.submit(sessions.map((sn) => ({ sn, kind: 'parent_exited', rt, body: [process.pid, parentPid] }))).catch(() => undefined);
    await this.syncReady.catch(() => undefined);
    if (this.sync && this.config.exit_drain_seconds > 0 && this.sync.link.state !== 'down') {
      this.sync.flush();
      await this.sync.waitDrained(this.config.exit_drain_seconds * 1000);
    }
    await this.close();
  }

  async flush(wait: boolean): Promise<{ depth: number }> {
    await this.syncReady;
    this.sync!.flush();
    if (wait) await this.sync!.waitDrained(30_000);
    return { depth: this.commits.counters.depth };
  }

  /** SIGTERM: stop accepting, persist what was accepted, stop syncing, close the store. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.ticker);
      const httpClosed = this.http.close();
      await this.ws.close();
      await this.rounds.drain();
      // What actors keep lazily (their activity) is persisted before the workers stop.
      await this.rounds.tick('all').catch(() => undefined);
      await this.syncReady.catch(() => undefined);
      await this.sync?.close();
      await this.commits.idle();
      await this.pool.close();
      await this.db.close();
      // Sockets still open (busy keep-alive clients) are cut once everything is persisted.
      this.http.server.closeAllConnections();
      await httpClosed;
    })();
    return this.closing;
  }
}

export const startDaemon = Daemon.start;
