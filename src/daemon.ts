import type { DaemonConfig } from './config/index.js';
import { exposureWarning, servesOnlyLocalClients } from './config/exposure.js';
import { openStore, type Db } from './outbox/store.js';
import { ALL_ACTIVE, COUNTERS, parseActiveKey } from './outbox/keys.js';
import { decodeCounters } from './outbox/counters.js';
import { CommitQueue } from './outbox/commit-queue.js';
import { QueueLimit } from './outbox/queue-limit.js';
import { QueueInspector, type QueueItem, type QueueQuery } from './outbox/queue-inspector.js';
import { Reclaimer } from './outbox/reclaimer.js';
import { limitsFrom } from './protocol/limits.js';
import { ActorPool } from './workers/actor-pool.js';
import { Directory } from './actors/directory.js';
import { RoundCoordinator } from './actors/round-coordinator.js';
import { dutyTickMs } from './actors/session-actor.js';
import type { RegisterCreate, SyncActor } from './actors/sync-actor.js';
import { Ingest } from './gateway/ingest.js';
import { SessionReads } from './gateway/session-reads.js';
import { HttpGateway, TextAnswer } from './gateway/http-server.js';
import { buildRoutes } from './gateway/http-routes.js';
import { AuthCheck } from './gateway/auth.js';
import { ClientMarks } from './gateway/client-marks.js';
import type { DaemonMetrics } from './gateway/metrics.js';
import type { Overload } from './gateway/ws-connection.js';
import { WsGateway } from './gateway/ws-gateway.js';
import { hostIdentity } from './host-identity.js';
import { silentLogger, type Logger } from './logger.js';
import { VERSION } from './version.js';
import { watchParent } from './parent-watch.js';
import { redactUrl } from './upstream/redact.js';

export interface DaemonOptions {
  logger?: Logger;
  /**
   * Per-application mode (a DataCat client started the daemon through DATACAT_CONFIG, or
   * exit_with_parent): watch the parent process, and when it exits mark every active session
   * crashed, persist, and call `onExit`.
   */
  watchParent?: { onExit: (err?: unknown) => void };
  /** Tests wrap the store to inject write failures. */
  wrapDb?: (db: Db) => Db;
  /**
   * Node flags for the actor workers; by default the process's own (`process.execArgv`). Tests
   * that run a daemon inside tap pass the flags without tap's module loaders: the workers load
   * compiled JS and need none of them, and they cost ~1.5 s per worker start.
   */
  workerExecArgv?: string[];
}

/** The components of a running daemon, built by `Daemon.start` in dependency order. */
interface Parts {
  db: Db;
  commits: CommitQueue;
  directory: Directory;
  pool: ActorPool;
  rounds: RoundCoordinator;
  ingest: Ingest;
  limit: QueueLimit;
  reclaimer: Reclaimer;
  http: HttpGateway;
  ws: WsGateway;
  port: number;
}

/** Seconds of history behind the ops/s rates in /health. */
const RATE_WINDOW = 10;

/**
 * A running daemon: one LevelDB store, one actor pool, one round coordinator, one sync actor,
 * one port. `Daemon.start` wires them in dependency order; the CLI and the tests use it.
 *
 * The sync actor (with the upstream client, undici) and /metrics (prom-client) are loaded after
 * the port is open: together they take ~130 ms to import, and DataCat clients may talk to the
 * daemon as soon as it listens.
 */
export class Daemon {
  sync: SyncActor | null = null;
  metrics: DaemonMetrics | null = null;
  private closing: Promise<void> | null = null;
  private readonly ticker: NodeJS.Timeout;
  private readonly dutyTicker: NodeJS.Timeout;
  private readonly background: Promise<void>;
  /** Ops accepted and delivered, sampled once a second for /health's rates. */
  private readonly samples: Array<[accepted: number, sent: number]> = [];

  readonly db: Db;
  readonly commits: CommitQueue;
  readonly directory: Directory;
  readonly pool: ActorPool;
  readonly rounds: RoundCoordinator;
  readonly ingest: Ingest;
  readonly http: HttpGateway;
  readonly ws: WsGateway;
  readonly port: number;
  private readonly inspector: QueueInspector;
  private readonly reclaimer: Reclaimer;
  private readonly limit: QueueLimit;

  private constructor(
    readonly config: DaemonConfig,
    private readonly logger: Logger,
    parts: Parts,
  ) {
    ({ db: this.db, commits: this.commits, directory: this.directory, pool: this.pool, rounds: this.rounds, ingest: this.ingest, http: this.http, ws: this.ws, port: this.port, reclaimer: this.reclaimer, limit: this.limit } = parts);
    this.inspector = new QueueInspector(this.db, this.commits, this.directory, (sn) => this.sync?.headInfo(sn) ?? null);
    this.background = this.startBackground(parts);
    // The actors' periodic duties (persisting activity that is due, heartbeat and parent checks,
    // aggregates), once a second or on batch_interval_seconds' own beat (dutyTickMs).
    this.dutyTicker = setInterval(() => void this.rounds.tick('due').catch(() => undefined), dutyTickMs(config.batch_interval_seconds)); // a failed round: the next tick retries
    this.dutyTicker.unref();
    // Once a second: ended sessions idle for session_idle_seconds leave worker memory (active
    // ones stay: their actors watch heartbeats), and the rates are sampled.
    this.ticker = setInterval(() => {
      this.rounds.passivateIdle(config.session_idle_seconds * 1000);
      // drop_oldest makes room when an op arrives over the bound; the tick makes sure it goes on
      // until the outbox is back under its low-water mark, whatever interrupted it.
      if (this.limit.policy === 'drop_oldest' && this.limit.excess > 0) this.sync?.makeRoom(this.limit);
      this.samples.push([this.rounds.opsCommitted, this.sync?.stats.sent ?? 0]);
      if (this.samples.length > RATE_WINDOW + 1) this.samples.shift();
    }, 1000);
    this.ticker.unref();
  }

  static async start(config: DaemonConfig, options: DaemonOptions = {}): Promise<Daemon> {
    const logger = options.logger ?? silentLogger;
    const rawDb = await openStore(config.data_dir);
    const db = options.wrapDb ? options.wrapDb(rawDb) : rawDb;
    const commits = new CommitQueue(db, decodeCounters(await db.get(COUNTERS)), { sync: config.durability === 'fsync' });
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
    }, options.workerExecArgv);
    const rounds = new RoundCoordinator(pool, commits, db, active, config.recent_events_limit + config.recent_metrics_limit);
    const limit = new QueueLimit(config.queue_max_bytes, config.overflow, commits);
    let daemon: Daemon | null = null;
    const ingest = new Ingest(
      rounds,
      directory,
      commits,
      { register_timeout_ms: config.register_timeout_ms, ...hostIdentity() },
      (body, timeoutMs) => daemon!.createNow(body, timeoutMs),
      limit,
      () => daemon?.sync?.makeRoom(limit),
      (sn, late) => daemon?.sync?.adoptCreate(sn, late),
    );
    const reads = new SessionReads(db, directory, rounds, (sn) => daemon?.sync?.hasPending(sn) ?? true);
    const routes = buildRoutes({
      ingest,
      reads,
      limits,
      health: () => daemon!.health(),
      flush: (wait) => daemon!.flush(wait),
      queue: (q) => daemon!.queue(q),
      replay: () => daemon!.replay(),
      metrics: () => daemon!.renderMetrics(),
    });
    const auth = new AuthCheck(config.auth_token, servesOnlyLocalClients(config));
    const http = new HttpGateway({ host: config.host, port: config.daemon_port, max_body_bytes: config.max_body_bytes, auth, routes, retryAfterSeconds: () => 1 });
    // Why WebSocket connections stop being read: too much waiting for LevelDB, or (overflow
    // block) a full outbox, which clients are told about.
    const overloaded = (): Overload =>
      commits.pendingBytes > config.max_pending_bytes ? 'pending_writes' : limit.policy === 'block' && limit.full ? 'queue_full' : null;
    const ws = new WsGateway({ server: http.server, auth, marks: new ClientMarks(db), ingest, reads, limits, maxInflightOps: config.ws_max_inflight_ops, overloaded, version: VERSION });
    rounds.listeningSince = () => ws.listeningSince();
    // Paused sockets read again once the backlog or the outbox is below its bound (the sync
    // actor's consumption is written through the same queue, so this sees it).
    let lastOverload: Overload = null;
    commits.on('written', () => {
      const now = overloaded();
      // Also when the overload is gone and some connection paused on it since the last call: it
      // may have risen after one batch was written and fallen with the next (a large write set
      // written on its own), showing no change here (see WsGateway.pausedOnOverload).
      if (now !== lastOverload || (now === null && ws.pausedOnOverload)) ws.updateFlow();
      lastOverload = now;
    });
    const { port } = await http.listen();
    // Said once the address is taken: a daemon that fails to start says only why.
    const exposure = exposureWarning(config);
    if (exposure) logger.warn(exposure);
    daemon = new Daemon(config, logger, { db, commits, directory, pool, rounds, ingest, limit, reclaimer: new Reclaimer(db), http, ws, port });
    logger.info({ port, host: config.host, data_dir: config.data_dir, server_url: redactUrl(config.server_url) }, 'datacat daemon listening');
    if (options.watchParent) {
      const { onExit } = options.watchParent;
      const started = daemon;
      const watch = watchParent((parentPid) => started.parentExited(parentPid).then(() => onExit(), onExit));
      if (watch) logger.info({ parent_pid: watch.parentPid }, 'exiting with the parent process');
    }
    return daemon;
  }

  /** Loads and starts what the first /health does not need: the sync actor and the metrics. */
  private async startBackground({ db, commits, directory, rounds, ws, reclaimer }: Parts): Promise<void> {
    // Sessions that were active when the daemon stopped get their actors back now, not at their
    // next op: their applications may be gone, which is what the hang and parent watch are for.
    const reactivated = rounds.reactivate().catch((err: unknown) => this.logger.warn({ err }, 'could not reload every active session; the rest load at their next op'));
    const [{ UpstreamClient }, { SyncActor }, { DaemonMetrics }] = await Promise.all([
      import('./upstream/upstream-client.js'),
      import('./actors/sync-actor.js'),
      import('./gateway/metrics.js'),
    ]);
    const upstream = new UpstreamClient(this.config);
    const sync = new SyncActor(
      db,
      commits,
      directory,
      upstream,
      this.config,
      (sn, localId, serverId) => {
        rounds.broadcastRemap(sn, serverId);
        if (localId) ws.broadcastRemap(localId, serverId);
        this.logger.debug({ local_id: localId, server_id: serverId }, 'session remapped');
      },
      reclaimer,
    );
    this.sync = sync;
    const metrics = new DaemonMetrics({
      counters: () => commits.counters,
      oldestQueued: () => sync.queueInfo().oldestT,
      acceptedByKind: () => rounds.acceptedByKind,
      sentByKind: () => sync.stats.sentByKind,
      retriedByKind: () => sync.stats.retriedByKind,
      inDoubt: () => sync.inDoubt,
      sessions: () => ({ active: rounds.activeSessions.size, hung: rounds.hungSessions.size, known: directory.size }),
      workers: () => ({ size: this.pool.size, alive: this.pool.alive, restarts: this.pool.restarts }),
      upstreamOnline: () => sync.link.online,
    });
    this.metrics = metrics;
    rounds.onAck = (seconds) => metrics.ackLatency.observe(seconds);
    upstream.onRequest = (seconds, outcome) => metrics.upstreamLatency.observe({ outcome }, seconds);
    // Live: active and not hung.
    sync.startHeartbeats(this.config.upstream_heartbeat_seconds * 1000, () => rounds.activeSessions, (sn) => rounds.activeSessions.has(sn) && !rounds.hungSessions.has(sn));
    rounds.afterCommit = (sns) => {
      const now = Date.now();
      for (const sn of sns) sync.notify(sn, now);
    };
    await sync.start();
    await reactivated;
  }

  /**
   * /register's attempt at the server's id, within `timeoutMs` all told: a register that comes
   * while the sync actor is still loading (just after startup) waits for it within that budget
   * rather than settling for a local id.
   */
  async createNow(body: Record<string, unknown>, timeoutMs: number): Promise<RegisterCreate> {
    const started = Date.now();
    if (!this.sync) await Promise.race([this.background.catch(() => undefined), new Promise((r) => setTimeout(r, timeoutMs))]);
    const left = timeoutMs - (Date.now() - started);
    return this.sync && left > 0 ? this.sync.createNow(body, left) : { server_id: null, refused: null };
  }

  /** Resolves once the sync actor runs (it is loaded after the daemon listens). */
  ready(): Promise<void> {
    return this.background;
  }

  /** CONTRACT §4, plus sessions by status, ops/s in and out, and the outbox's pending sessions. */
  health(): Record<string, unknown> {
    const c = this.commits.counters;
    const queue = this.sync?.queueInfo();
    const [first, last] = [this.samples[0], this.samples[this.samples.length - 1]];
    const span = this.samples.length - 1;
    const rate = (i: 0 | 1): number => (first && last && span > 0 ? Math.round((last[i] - first[i]) / span) : 0);
    return {
      status: 'ok',
      pid: process.pid,
      version: VERSION,
      sessions: this.rounds.activeSessions.size,
      upstream: {
        ...(this.sync?.link.health() ?? { url: redactUrl(this.config.server_url), online: false, attempt: 0, next_retry_at: null, last_error: null, last_success_at: null, failures_since_success: 0 }),
        // Possible duplicates upstream, ever (CONTRACT §5.2): persisted, so a kill does not reset it.
        in_doubt: this.sync?.inDoubt ?? c.in_doubt,
      },
      queue: {
        depth: c.depth,
        bytes: c.bytes,
        oldest_age_ms: queue?.oldestT != null ? Math.max(0, Date.now() - queue.oldestT) : 0,
        dead_letters: c.dead,
        dropped: c.dropped,
        dropped_by_reason: { drop_newest: c.dropped_newest, drop_oldest: c.dropped_oldest },
        max_bytes: this.config.queue_max_bytes,
        overflow: this.config.overflow,
        sessions_pending: queue?.sessions ?? 0,
      },
      workers: { size: this.pool.size, alive: this.pool.alive, restarts: this.pool.restarts },
      remaps: c.remaps,
      sessions_by_status: {
        active: this.rounds.activeSessions.size,
        hung: this.rounds.hungSessions.size,
        inactive: this.directory.size - this.rounds.activeSessions.size,
      },
      rates: { ops_in_per_sec: rate(0), ops_out_per_sec: rate(1) },
    };
  }

  /**
   * The application that started this daemon is gone (a per-application daemon, README): every
   * active session is marked crashed (its parent_process_crashed or daemon_parent_exited event,
   * then a crash op), everything is persisted, and, while the upstream is online, the queue gets
   * up to exit_drain_seconds to drain before the daemon stops.
   */
  async parentExited(parentPid: number): Promise<void> {
    const rt = Date.now();
    const crash = (sessions: number[]): Promise<unknown> =>
      sessions.length > 0 ? this.rounds.submit(sessions.map((sn) => ({ sn, kind: 'parent_exited', rt, body: [process.pid, parentPid] }))).catch(() => undefined) : Promise.resolve();
    const sessions = [...this.rounds.activeSessions];
    this.logger.warn({ parent_pid: parentPid, sessions: sessions.length }, 'the application that started the daemon exited: marking its sessions crashed');
    await crash(sessions);
    // activeSessions is what is durable: a /register the application sent just before it died,
    // still waiting for the server's id (register_timeout_ms) or in a round, is answered, and its
    // session would be left active for good. Once those are submitted and the rounds in flight
    // have settled, they are crashed too. Bounded: other clients may keep sending.
    const settled = this.ingest.submitted().then(() => this.rounds.drain());
    await Promise.race([settled, new Promise((r) => setTimeout(r, this.config.register_timeout_ms + PARENT_EXIT_SETTLE_MS).unref())]);
    const swept = new Set(sessions);
    await crash([...this.rounds.activeSessions].filter((sn) => !swept.has(sn)));
    await this.background.catch(() => undefined);
    if (this.sync && this.config.exit_drain_seconds > 0 && this.sync.link.state !== 'down') {
      this.sync.flush();
      await this.sync.waitDrained(this.config.exit_drain_seconds * 1000);
    }
    await this.close();
  }

  async flush(wait: boolean): Promise<{ depth: number }> {
    await this.background;
    this.sync!.flush();
    if (wait) await this.sync!.waitDrained(30_000);
    return { depth: this.commits.counters.depth };
  }

  queue(q: QueueQuery): Promise<{ items: QueueItem[]; total: number } | null> {
    return this.inspector.list(q);
  }

  /** POST /queue/replay: dead letters back into their sessions' queues, then sent as usual. */
  async replay(): Promise<number> {
    await this.background;
    const { replayed } = await this.inspector.replay((sn) => this.sync!.rewind(sn));
    return replayed;
  }

  async renderMetrics(): Promise<TextAnswer> {
    await this.background;
    const { contentType, text } = await this.metrics!.render();
    return new TextAnswer(contentType, text);
  }

  /** SIGTERM: stop accepting, persist what was accepted, stop syncing, close the store. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.ticker);
      clearInterval(this.dutyTicker);
      const httpClosed = this.http.close();
      await this.ws.close();
      // A /register already read may still wait for the server's id (register_timeout_ms): it is
      // answered and persisted like any op read before the signal.
      await this.ingest.submitted();
      await this.rounds.drain();
      // What actors keep lazily (their activity) is persisted before the workers stop.
      await this.rounds.tick('all').catch(() => undefined);
      await this.background.catch(() => undefined);
      await this.sync?.close();
      await this.commits.idle();
      await this.reclaimer.idle();
      await this.pool.close();
      await this.db.close();
      // Sockets still open (busy keep-alive clients) are cut once everything is persisted.
      this.http.server.closeAllConnections();
      await httpClosed;
    })();
    return this.closing;
  }
}

/** How long parentExited waits, past register_timeout_ms, for the work in flight at the exit before its second sweep. */
const PARENT_EXIT_SETTLE_MS = 2000;

export const startDaemon = Daemon.start;
