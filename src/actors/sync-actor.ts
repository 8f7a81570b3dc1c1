import type { Db } from '../outbox/store.js';
import type { CommitQueue, WriteSet } from '../outbox/commit-queue.js';
import type { CounterDeltas } from '../outbox/counters.js';
import { ALL_CHUNKS, ALL_LEASES, chunkRange, cursorKey, deadKey, leaseKey, parseChunkKey, parseLeaseKey } from '../outbox/keys.js';
import { countOps, decodeChunk, encodeChunk, withoutPassThrough, type ChunkEntry, type UpstreamOp } from '../outbox/chunk.js';
import { pack, unpack } from '../protocol/codec.js';
import type { UpstreamClient, Outcome } from '../upstream/upstream-client.js';
import { Backoff } from './backoff.js';
import type { DeadLetter } from '../outbox/dead-letter.js';
import type { Reclaimer } from '../outbox/reclaimer.js';
import type { Directory } from './directory.js';
import { UpstreamLink } from './upstream-link.js';

export interface SyncSettings {
  server_url: string;
  retry_base_ms: number;
  retry_max_ms: number;
  sync_concurrency: number;
  /** Ops one session sends before yielding its slot to the next waiting session. */
  max_batch_size: number;
}

/**
 * Consumption writes a lane may have in flight behind its sends. A SIGKILL can lose at most these
 * records of delivered ops, which are then sent again after the restart: a small window keeps that
 * bound small while letting one session's drain overlap its HTTP round trips with LevelDB writes.
 */
const PIPELINED_WRITES = 16;
/**
 * Sends a lane can have made past its durable cursor at any moment: the pipelined records, plus
 * the request in flight. A lane's send lease (keys.ts) stands for this many; a kill leaves at
 * most this many of its deliveries unrecorded, and the restart counts them in doubt.
 */
const SEND_LEASE = PIPELINED_WRITES + 1;
/** On close, how long requests already sent get to be answered and recorded (SyncActor.close). */
const CLOSE_GRACE_MS = 2000;

/** The session number of requests that belong to no session on the server yet (creates). */
const NO_SESSION = -1;

/** Chunks drop_oldest rewrites per write. */
const TRIM_BATCH = 256;


/** One session's delivery state. Exists while the session has queued ops. */
interface Lane {
  sn: number;
  /** The head chunk being delivered, and where in it. */
  chunkKey: string | null;
  chunkSeq: number;
  chunkBytes: number;
  ops: UpstreamOp[] | null;
  index: number;
  /** Key of the last chunk fully consumed: the next read starts after it. */
  after: string | null;
  /** Receive time of the head op, for queue.oldest_age_ms. */
  headT: number;
  attempts: number;
  lastError: string | null;
  backoff: Backoff;
  status: 'ready' | 'running' | 'waiting' | 'parked';
  /** This lane holds the probe of a recovering link (see UpstreamLink.admit). */
  probe: boolean;
  /** Deliveries whose consumption write is not yet durable: resent after a local write failure. */
  unrecorded: number;
  /** New chunks were committed while this lane was reading: read again before retiring. */
  more: boolean;
  timer: NodeJS.Timeout | null;
  /** Consumption writes submitted but not awaited (pipelined within a chunk). */
  writes: Array<Promise<unknown>>;
  /**
   * One of those writes failed. The lane records nothing more and sends nothing more until it
   * starts over from the store (laneCrashed): a later record landing without it would move the
   * cursor past its op with the op's depth still counted.
   */
  writeFailed: unknown;
  /** Its chunks are being trimmed (drop_oldest): not started meanwhile. */
  trimming: boolean;
  /** Read the queue from its start after the chunk in hand (dead letters were replayed). */
  rewind: boolean;
  /**
   * The session's cursor belongs to a later, partly delivered chunk: this head is a replayed
   * dead letter placed before it (keys.ts, replayedChunkKey), and must leave that cursor alone.
   */
  foreignCursor: boolean;
}

/** What /register's own create attempt got: the server's id, or none and maybe the server's refusal. */
export type CreateAnswer = { server_id: string } | { server_id: null; refused: string | null };

/**
 * /register's answer within register_timeout_ms. When the server was too slow, `late` is its
 * request still in flight: the session gets a local id now, and its queued create waits for that
 * answer instead of creating the session a second time (see SyncActor.adoptCreate).
 */
export type RegisterCreate = CreateAnswer & { late?: Promise<CreateAnswer> };

export interface SyncStats {
  /** Ops delivered, by kind (create, state, event, metric, end, crash). */
  sentByKind: Record<string, number>;
  /** Failed tries that will be retried, by kind. */
  retriedByKind: Record<string, number>;
  sent: number;
  droppedOldest: number;
  heartbeats: number;
  retried: number;
  deadLettered: number;
  remaps: number;
}

/**
 * The sync actor: drains the outbox to the DataCat server.
 *
 * Each session with queued ops has a lane that sends its ops strictly in key order (create,
 * then the rest, then end or crash), one request at a time, so per-session FIFO holds even
 * across retries. Up to `sync_concurrency` lanes run at once; a lane yields its slot after
 * `max_batch_size` ops, and a lane that waits (backoff) or dead-letters never holds a slot, so
 * one session's trouble never blocks another's.
 *
 * Every delivery is recorded in LevelDB (cursor, chunk deletion, counters) through the same
 * group-commit queue as ingest. The create's answer is recorded with the remap in the same
 * batch that consumes it; only then is the remap broadcast.
 */
export class SyncActor {
  readonly link: UpstreamLink;
  private readonly lanes = new Map<number, Lane>();
  /** /register creates still in flight for sessions that got a local id (adoptCreate). */
  private readonly pendingCreates = new Map<number, Promise<CreateAnswer>>();
  /** Upstream heartbeats being sent, by session: its end or crash goes after them. */
  private readonly heartbeatsInFlight = new Map<number, Promise<void>>();
  private readonly ready = new Set<Lane>();
  private running = 0;
  private closed = false;
  /**
   * No lane runs until the send leases a kill left are counted (start): a lane that ran meanwhile
   * (an op committed, a /register's create answered, a /flush, all possible as soon as the daemon
   * listens) wrote its own lease under its session's key, and the count then deleted it with the
   * leftover one, so a kill during that lane's sends went uncounted after the next restart.
   */
  private leasesCounted = false;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private trimming: Promise<void> | null = null;
  private drainWaiters: Array<() => void> = [];
  /** In-doubt counts whose write failed, carried into the next write (saveInDoubt). */
  private inDoubtUnsaved = 0;
  /** Sessions whose last answer asked to wait (429, 502-504) and that had no op taken since (closesGate). */
  private readonly refusedSince = new Set<number>();
  /** Of those, the ones refused while the server took other sessions' ops: their refusals are their own. */
  private readonly ownTrouble = new Set<number>();
  readonly stats: SyncStats = { sentByKind: {}, retriedByKind: {}, sent: 0, droppedOldest: 0, heartbeats: 0, retried: 0, deadLettered: 0, remaps: 0 };

  constructor(
    private readonly db: Db,
    private readonly commits: CommitQueue,
    private readonly directory: Directory,
    private readonly upstream: UpstreamClient,
    private readonly settings: SyncSettings,
    private readonly onRemap: (sn: number, localId: string | null, serverId: string) => void,
    private readonly reclaim: Reclaimer,
  ) {
    this.link = new UpstreamLink(settings.server_url, settings.retry_base_ms, settings.retry_max_ms, () => this.onLinkChange());
  }

  /**
   * Requests whose outcome could not be known, ever, across restarts (persisted with the counters):
   * each is a possible duplicate upstream (CONTRACT §5.2).
   */
  get inDoubt(): number {
    return this.commits.counters.in_doubt + this.inDoubtUnsaved;
  }

  /**
   * Counts what a kill left in doubt, then finds the sessions with queued ops (one seek per
   * session, not a scan of the queue) and starts.
   */
  async start(): Promise<void> {
    try {
      await this.countLeftLeases();
    } finally {
      // Lanes added meanwhile (notify) wait in `ready` until now. A failed count still lets them
      // run, as before: a store that cannot be read here fails their runs too, with backoff.
      this.leasesCounted = true;
    }
    let gt = ALL_CHUNKS.gt;
    for (;;) {
      const [first] = await this.db.iterator({ gt, lt: ALL_CHUNKS.lt, limit: 1 }).all();
      if (!first) break;
      const { sn } = parseChunkKey(first[0]);
      // A round may have committed for this session while we scanned: it has a lane already.
      if (!this.lanes.has(sn)) this.addLane(sn, headTime(first[1]));
      gt = chunkRange(sn).lt;
    }
    if (this.lanes.size === 0) void this.probe();
    this.pump();
  }

  /** A round made chunks durable for this session. */
  notify(sn: number, t: number): void {
    if (this.closed) return;
    const lane = this.lanes.get(sn);
    if (lane) lane.more = true;
    else {
      this.addLane(sn, t);
      this.pump();
    }
  }

  /**
   * Dead letters were put back into this session's queue under their original numbers, which may
   * sort before what its lane already passed: the lane reads its queue from the start again (safe:
   * a lane waits for each chunk's deletion to be durable before it reads past it).
   */
  rewind(sn: number): void {
    if (this.closed) return;
    const lane = this.lanes.get(sn);
    if (!lane) return this.notify(sn, Date.now());
    lane.rewind = true;
    if (!lane.ops) lane.after = null;
    lane.more = true;
    if (lane.status === 'waiting' || lane.status === 'parked') this.makeReady(lane);
    this.pump();
  }

  /** POST /flush: cut every wait short and send now. */
  flush(): void {
    this.link.openNow();
    for (const lane of this.lanes.values()) {
      lane.backoff.reset();
      if (lane.status === 'waiting' || lane.status === 'parked') this.makeReady(lane);
    }
    this.pump();
  }

  /**
   * Creates a session upstream right now for /register, if the upstream is not known to be down.
   * The answer waits at most `timeoutMs`; the request itself runs to its own end
   * (upstream_timeout_ms), and if it is still going it comes back as `late` for the session's
   * queued create to adopt. Abandoning it made a slow server create every such session twice.
   */
  async createNow(body: Record<string, unknown>, timeoutMs: number): Promise<RegisterCreate> {
    if (this.link.state === 'down' || timeoutMs <= 0) return { server_id: null, refused: null };
    const answer = this.upstream.createSession(body, { urgent: true }).then((outcome): CreateAnswer => {
      if (outcome.kind === 'ok') {
        this.link.succeeded();
        this.pump();
        return { server_id: outcome.sessionId };
      }
      // A create that may have reached the server (timeout, reset) may have made an orphan: counted.
      if (outcome.kind === 'retry' && outcome.inDoubt) this.countInDoubt(1);
      this.record(NO_SESSION, outcome);
      // A refusal is final (CONTRACT §3): the queued create carries it and is not sent again.
      return { server_id: null, refused: outcome.kind === 'dead' ? outcome.reason : null };
    });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)));
    const inTime = await Promise.race([answer, timedOut]);
    clearTimeout(timer);
    return inTime ?? { server_id: null, refused: null, late: answer };
  }

  /**
   * Session `sn` got a local id while /register's create was still in flight: its queued create
   * goes by that request's answer (the server's id, or its refusal) before sending another.
   */
  adoptCreate(sn: number, late: Promise<CreateAnswer>): void {
    this.pendingCreates.set(sn, late);
    // Nothing to adopt from a create that failed outright: the queued one is sent as usual.
    void late.then((a) => {
      if (a.server_id === null && a.refused === null && this.pendingCreates.get(sn) === late) this.pendingCreates.delete(sn);
    });
  }

  /**
   * Upstream heartbeats: while the upstream is online, every `intervalMs` one heartbeat per live
   * session (active, not hung, known to the server), whatever number of heartbeats the
   * application sent meanwhile. Coalesced, never queued: a heartbeat missed while offline means
   * nothing once the session's queued ops arrive.
   */
  startHeartbeats(intervalMs: number, sessions: () => Iterable<number>, isLive: (sn: number) => boolean): void {
    const beat = async (): Promise<void> => {
      if (this.closed || this.link.state !== 'up') return;
      const sns = [...sessions()];
      // A few at a time, so heartbeats never crowd out the sessions' queued ops.
      for (let i = 0; i < sns.length && !this.closed && this.link.state === 'up'; i += 8) {
        // Asked per group, not once per round: a session that ended since the round began gets
        // no heartbeat after its end (CONTRACT §5: end or crash last).
        const group: Array<[number, string]> = [];
        for (const sn of sns.slice(i, i + 8)) {
          const id = this.directory.ids(sn)?.server_id;
          if (id && isLive(sn)) group.push([sn, id]);
        }
        const outcomes = await Promise.all(group.map(([sn, id]) => this.heartbeatOne(sn, id)));
        this.stats.heartbeats += outcomes.filter((o) => o.kind === 'ok').length;
        outcomes.forEach((o, j) => o.kind === 'ok' && this.noteServed(group[j]![0]));
        const down = outcomes.findIndex((o, j) => o.kind === 'retry' && this.closesGate(group[j]![0], o));
        const o = outcomes[down];
        if (o && o.kind === 'retry') this.link.upstreamFailed(o.reason, o.retryAfterMs);
        // Not queued, so no dead letter: a refused heartbeat (say, 404 for a session the server
        // forgot) still shows, as /health's last_error.
        else outcomes.forEach((o, j) => o.kind !== 'ok' && this.record(group[j]![0], o));
      }
    };
    this.heartbeatTimer = setInterval(() => void beat(), intervalMs);
    this.heartbeatTimer.unref();
  }

  /** One upstream heartbeat, tracked so that the session's end or crash waits for it. */
  private heartbeatOne(sn: number, serverId: string): Promise<Outcome> {
    const sent = this.upstream.heartbeat(serverId);
    const settled = sent.then(() => undefined, () => undefined);
    this.heartbeatsInFlight.set(sn, settled);
    void settled.then(() => {
      if (this.heartbeatsInFlight.get(sn) === settled) this.heartbeatsInFlight.delete(sn);
    });
    return sent;
  }

  /**
   * overflow drop_oldest: discards the oldest queued events and metrics (sessions in the order of
   * their oldest queued op) until the outbox is back under its low-water mark. Lifecycle ops and
   * state are kept. A session whose lane is sending is skipped, and a lane being trimmed is not
   * started: a chunk is never delivered and trimmed at once.
   */
  makeRoom(limit: { excess: number }): void {
    if (this.trimming || this.closed) return;
    this.trimming = this.trimOldest(limit)
      .catch(() => undefined) // a failed write: tried again below
      .finally(() => {
        this.trimming = null;
        // Still over: a lane was sending (and was skipped) or a write failed. Try again soon,
        // rather than only when the next op arrives, which may be never.
        if (limit.excess > 0 && !this.closed) setTimeout(() => this.makeRoom(limit), 100).unref();
      });
  }

  private async trimOldest(limit: { excess: number }): Promise<void> {
    const lanes = [...this.lanes.values()].sort((a, b) => a.headT - b.headT);
    for (const lane of lanes) {
      if (limit.excess <= 0 || this.closed) return;
      if (lane.status === 'running') continue;
      lane.trimming = true;
      try {
        await this.trimSession(lane, limit);
      } finally {
        lane.trimming = false;
      }
    }
    this.pump();
  }

  private async trimSession(lane: Lane, limit: { excess: number }): Promise<void> {
    const cursorBytes = await this.db.get(cursorKey(lane.sn));
    const cursor = cursorBytes ? (unpack(cursorBytes) as [number, number]) : null;
    // Rewrites are gathered into one write per TRIM_BATCH chunks: a session may hold thousands
    // of small chunks (one per HTTP request), and a write per chunk made trimming slow.
    let ws: WriteSet = { puts: [], dels: [], deltas: { depth: 0, bytes: 0, dropped: 0, dropped_oldest: 0 } };
    let pendingChunks = 0;
    let freed = 0;
    const flush = async (): Promise<void> => {
      if (pendingChunks === 0) return;
      await this.commits.submit(ws);
      this.stats.droppedOldest += ws.deltas!.dropped!;
      ws = { puts: [], dels: [], deltas: { depth: 0, bytes: 0, dropped: 0, dropped_oldest: 0 } };
      pendingChunks = 0;
      freed = 0;
    };
    for await (const [key, value] of this.db.iterator(chunkRange(lane.sn))) {
      if (limit.excess - freed <= 0 || this.closed) break;
      if (key === lane.chunkKey) continue; // held in memory by the lane
      const { seq } = parseChunkKey(key);
      const keepFrom = cursor && cursor[0] === seq ? cursor[1] : 0;
      const { kept, dropped } = withoutPassThrough(unpack(value) as ChunkEntry[], keepFrom);
      if (dropped === 0) continue;
      const d = ws.deltas!;
      d.depth! -= dropped;
      d.dropped! += dropped;
      d.dropped_oldest! += dropped;
      // Nothing undelivered left: the chunk goes (with its cursor: the ops before it were
      // delivered and are no longer counted); otherwise it is rewritten without them.
      if (countOps(kept) <= keepFrom) {
        ws.dels!.push(key);
        if (cursor && cursor[0] === seq) ws.dels!.push(cursorKey(lane.sn));
        d.bytes! -= value.byteLength;
        freed += value.byteLength;
      } else {
        const bytes = encodeChunk(kept);
        ws.puts!.push([key, bytes]);
        d.bytes! += bytes.byteLength - value.byteLength;
        freed += value.byteLength - bytes.byteLength;
      }
      if (++pendingChunks >= TRIM_BATCH) await flush();
    }
    await flush();
  }

  /** Sessions with queued ops, and the receive time of the oldest queued op. */
  queueInfo(): { sessions: number; oldestT: number | null } {
    let oldest: number | null = null;
    for (const lane of this.lanes.values()) if (oldest === null || lane.headT < oldest) oldest = lane.headT;
    return { sessions: this.lanes.size, oldestT: oldest };
  }

  /** The head op of a session's lane, as /queue shows it: attempts and last error. */
  headInfo(sn: number): { seq: number; attempts: number; last_error: string | null } | null {
    const lane = this.lanes.get(sn);
    if (!lane || !lane.ops) return null;
    return { seq: lane.chunkSeq + lane.index, attempts: lane.attempts, last_error: lane.lastError };
  }

  hasPending(sn: number): boolean {
    return this.lanes.has(sn);
  }

  /** Resolves when no session has queued ops, or after `timeoutMs`. */
  waitDrained(timeoutMs: number): Promise<boolean> {
    if (this.lanes.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.drainWaiters = this.drainWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.drainWaiters.push(done);
    });
  }

  /**
   * Stops sending. Requests already on their way get up to `graceMs` to be answered, and what
   * they delivered is recorded: aborting them at once made every one of them go again after the
   * restart (the server had most of them), uncounted. Those still out after the grace are
   * aborted; their lanes' send leases stay, and the restart counts them in doubt.
   */
  async close(graceMs = CLOSE_GRACE_MS): Promise<void> {
    this.closed = true;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.link.close();
    for (const lane of this.lanes.values()) if (lane.timer) clearTimeout(lane.timer);
    const until = Date.now() + graceMs;
    while (this.running > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    await this.upstream.close();
    while (this.running > 0) await new Promise((r) => setTimeout(r, 5));
  }

  private addLane(sn: number, t: number): void {
    const lane: Lane = {
      sn,
      chunkKey: null,
      chunkSeq: 0,
      chunkBytes: 0,
      foreignCursor: false,
      ops: null,
      index: 0,
      after: null,
      headT: t,
      attempts: 0,
      lastError: null,
      backoff: new Backoff(this.settings.retry_base_ms, this.settings.retry_max_ms),
      status: 'ready',
      more: false,
      timer: null,
      writes: [],
      writeFailed: null,
      probe: false,
      unrecorded: 0,
      trimming: false,
      rewind: false,
    };
    this.lanes.set(sn, lane);
    this.ready.add(lane);
  }

  private makeReady(lane: Lane): void {
    if (lane.timer) clearTimeout(lane.timer);
    lane.timer = null;
    lane.status = 'ready';
    this.ready.add(lane);
  }

  private pump(): void {
    while (this.leasesCounted && !this.closed && this.running < this.settings.sync_concurrency && this.ready.size > 0) {
      const admitted = this.link.admit();
      if (!admitted) {
        // The gate is closed: everyone waiting goes to the parked set until it opens.
        for (const lane of this.ready) lane.status = 'parked';
        this.ready.clear();
        return;
      }
      // The probe of a reopened gate goes to a session the server has not been refusing, if one
      // is waiting: a refused one would most likely close the gate again, for everyone, and its
      // refusals only become its own once another session's op is seen to go through (closesGate).
      let lane: Lane | undefined;
      for (const l of this.ready) {
        if (l.trimming) continue;
        if (admitted === 'probe' && this.refusedSince.has(l.sn)) {
          lane ??= l;
          continue;
        }
        lane = l;
        break;
      }
      if (!lane) {
        if (admitted === 'probe') this.link.releaseProbe();
        return;
      }
      this.ready.delete(lane);
      lane.status = 'running';
      lane.probe = admitted === 'probe';
      this.running++;
      this.runLane(lane)
        .catch((err: unknown) => this.laneCrashed(lane, err))
        .finally(() => {
          this.running--;
          if (lane.probe) {
            // Ended without an answer from the upstream (retired, dead-lettered locally, crashed):
            // hand the probe on, or probe with /health if nobody else is waiting.
            lane.probe = false;
            this.link.releaseProbe();
            if (this.ready.size === 0 && this.link.state === 'probing') void this.probe();
          }
          this.pump();
        });
    }
  }

  /** The gate opened (probing) or the upstream answered (up): parked lanes line up again. */
  private onLinkChange(): void {
    for (const lane of this.lanes.values()) if (lane.status === 'parked') this.makeReady(lane);
    if (this.ready.size === 0 && this.link.state === 'probing') void this.probe();
    // pump() re-parks all but one lane while probing.
    queueMicrotask(() => this.pump());
  }

  /**
   * Asks the upstream with GET /health when no session has anything to send: at startup (so
   * /health says whether the server is reachable before any op needs it), and each time a closed
   * link's wait ends, so an idle daemon still retries with backoff and notices the server return.
   */
  private async probe(): Promise<void> {
    if (this.closed) return;
    // At startup anyone may send (the link is 'unknown'); later, only the holder of its one probe.
    if (this.link.state !== 'unknown' && this.link.admit() !== 'probe') return;
    const outcome = await this.upstream.probe();
    if (outcome.kind === 'retry' && outcome.scope === 'upstream') this.link.upstreamFailed(outcome.reason, outcome.retryAfterMs);
    else this.link.succeeded(false); // any HTTP answer (even 404) means the server is reachable; no op went
    this.pump();
  }

  /**
   * One run of a lane: up to max_batch_size deliveries in order. Before its first send the run
   * holds a durable send lease, and it gives the lease back when it ends with every delivery
   * recorded (or counted in doubt): a lease that a kill leaves behind is what the restart counts.
   */
  private async runLane(lane: Lane): Promise<void> {
    let leased = false;
    const endRun = (inDoubt: number): void => {
      if (leased || inDoubt > 0) this.releaseLease(lane, leased, inDoubt);
    };
    for (let sent = 0; sent < this.settings.max_batch_size; ) {
      if (this.closed) {
        await Promise.all(lane.writes.splice(0)).catch(() => undefined);
        return endRun(0);
      }
      if (!lane.ops && !(await this.loadHead(lane))) {
        endRun(0);
        return this.retireOrReread(lane);
      }
      if (sent > 0) {
        const admitted = this.link.admit();
        if (!admitted) {
          lane.status = 'parked';
          return endRun(0);
        }
        if (admitted === 'probe') lane.probe = true;
      }
      if (!leased) {
        await this.commits.submit({ puts: [[leaseKey(lane.sn), pack(SEND_LEASE)]] });
        leased = true;
      }
      // A record of this run's (or an earlier run's) deliveries failed: start over from the store.
      if (lane.writeFailed) throw lane.writeFailed;
      const op = lane.ops![lane.index]!;
      const outcome = await this.deliver(lane, op);
      // Closing: an answer that came is still recorded (below), so the op is not sent again
      // after the restart; a failure just leaves it queued, and one in doubt keeps the lease.
      if (this.closed && outcome.kind === 'retry') return outcome.inDoubt ? undefined : endRun(0);
      if (outcome.status !== undefined || outcome.kind === 'retry') lane.probe = false; // the upstream answered (or failed): the link knows
      if (outcome.kind === 'retry') {
        this.stats.retriedByKind[op.k] = (this.stats.retriedByKind[op.k] ?? 0) + 1;
        endRun(outcome.inDoubt ? 1 : 0);
        return this.retryLater(lane, outcome, op.k === 'create' ? NO_SESSION : lane.sn);
      }
      if (outcome.kind === 'ok') {
        this.link.succeeded();
        this.noteServed(lane.sn);
        lane.backoff.reset();
        this.stats.sent++;
        this.stats.sentByKind[op.k] = (this.stats.sentByKind[op.k] ?? 0) + 1;
        await this.consume(lane, outcome.remapWrites ?? [], outcome.serverId ? { remaps: 1 } : {});
        if (outcome.serverId) {
          this.stats.remaps++;
          this.directory.setServerId(lane.sn, outcome.serverId);
          this.onRemap(lane.sn, this.directory.ids(lane.sn)?.local_id ?? null, outcome.serverId);
        }
      } else {
        this.stats.deadLettered++;
        if (outcome.status !== undefined) this.link.refused(outcome.reason);
        await this.consume(lane, [[deadKey(lane.chunkSeq + lane.index), pack(this.deadLetter(lane, op, outcome.reason))]], { dead: 1 });
      }
      sent++;
    }
    endRun(0);
    this.makeReady(lane); // yield: back of the line
  }

  /**
   * Gives a run's send lease back, with the run's in-doubt count in the same write. It goes after
   * the run's consumption records in the commit queue, so it never lands without them.
   */
  private releaseLease(lane: Lane, leased: boolean, inDoubt: number): void {
    this.saveInDoubt(inDoubt, leased ? [leaseKey(lane.sn)] : []);
  }

  /** Counts requests in doubt: a /register create that timed out or was reset, a lane's store failure. */
  private countInDoubt(n: number): void {
    this.saveInDoubt(n, []);
  }

  /** Persists an in-doubt count; one whose write failed (the store failed) goes with the next. */
  private saveInDoubt(n: number, dels: string[]): void {
    const count = n + this.inDoubtUnsaved;
    this.inDoubtUnsaved = 0;
    this.commits.submit({ dels, deltas: count > 0 ? { in_doubt: count } : {} }).catch(() => void (this.inDoubtUnsaved += count));
  }

  /**
   * At startup: each send lease left behind means a kill stopped that lane mid-run. Its sends
   * past the durable cursor (at most SEND_LEASE, all in its head chunk, since a lane records a
   * chunk's end before it reads the next) may have reached the server and will go again: they
   * are counted in doubt, as many as the lease covers or the head chunk still holds.
   */
  private async countLeftLeases(): Promise<void> {
    const leases = await this.db.iterator(ALL_LEASES).all();
    if (leases.length === 0) return;
    let inDoubt = 0;
    for (const [key, value] of leases) {
      const sn = parseLeaseKey(key);
      const [head] = await this.db.iterator({ ...chunkRange(sn), limit: 1 }).all();
      if (!head) continue; // everything was recorded
      const cursor = await this.db.get(cursorKey(sn));
      const [cursorSeq, cursorIndex] = cursor ? (unpack(cursor) as [number, number]) : [-1, 0];
      const from = cursorSeq === parseChunkKey(head[0]).seq ? cursorIndex : 0;
      inDoubt += Math.max(0, Math.min(unpack(value) as number, countOps(unpack(head[1]) as ChunkEntry[]) - from));
    }
    await this.commits.submit({ dels: leases.map(([key]) => key), deltas: { in_doubt: inDoubt } });
  }

  private async deliver(lane: Lane, op: UpstreamOp): Promise<(Outcome | { kind: 'dead'; reason: string; status?: undefined }) & { serverId?: string; remapWrites?: Array<[string, Uint8Array]> }> {
    lane.attempts++;
    if (op.k === 'create') {
      if (op.refused) return { kind: 'dead', reason: op.refused };
      const pending = this.pendingCreates.get(lane.sn);
      if (pending) {
        this.pendingCreates.delete(lane.sn);
        const answer = await pending;
        if (answer.server_id !== null)
          return { kind: 'ok', status: 201, body: null, serverId: answer.server_id, remapWrites: this.directory.remapWrites(lane.sn, answer.server_id) };
        if (answer.refused !== null) return { kind: 'dead', reason: answer.refused };
      }
      const outcome = await this.upstream.createSession(op.b);
      if (outcome.kind === 'ok') {
        return { ...outcome, serverId: outcome.sessionId, remapWrites: this.directory.remapWrites(lane.sn, outcome.sessionId) };
      }
      return outcome;
    }
    const serverId = this.directory.ids(lane.sn)?.server_id;
    if (!serverId) return { kind: 'dead', reason: 'the session was never created upstream (its create op is a dead letter); replay the dead letters to retry' };
    // The session's last op: a heartbeat already on its way must arrive first.
    if (op.k === 'end' || op.k === 'crash') await this.heartbeatsInFlight.get(lane.sn);
    return this.upstream.send(serverId, op);
  }

  /** `sn`: whose refusal it is (closesGate): the lane's session, or NO_SESSION for its create. */
  private retryLater(lane: Lane, outcome: Extract<Outcome, { kind: 'retry' }>, sn: number): void {
    this.stats.retried++;
    lane.lastError = outcome.reason;
    if (this.closesGate(sn, outcome)) {
      this.link.upstreamFailed(outcome.reason, outcome.retryAfterMs);
      // To the back of the line: when the gate reopens, the single probe goes to another
      // session first, so one session whose ops keep failing cannot keep all the others waiting.
      this.lanes.delete(lane.sn);
      this.lanes.set(lane.sn, lane);
      // And the lane backs off on its own clock too: the gate reopens as soon as any request
      // succeeds, and a 503 or 429 that concerns only this session's requests must not be
      // retried at every reopening (measured: every 100-280 ms, 37 times in 7 s).
      this.waitBackoff(lane, lane.backoff.fail(outcome.retryAfterMs));
      return;
    }
    this.link.requestFailed(outcome.reason);
    this.waitBackoff(lane, lane.backoff.fail(outcome.retryAfterMs));
  }

  /** The lane waits out its backoff, then queues for a slot again. */
  private waitBackoff(lane: Lane, delay: number): void {
    lane.status = 'waiting';
    lane.timer = setTimeout(() => {
      lane.timer = null;
      this.makeReady(lane);
      this.pump();
    }, delay);
    lane.timer.unref();
  }

  /**
   * Whether a failure stands for the whole upstream (the gate closes for every lane: the server
   * said so, and Retry-After is honoured by everyone) or only for this session's requests (it
   * backs off alone, honouring Retry-After). No answer at all (network error, timeout) is always
   * the upstream's, and so is an answer asking to wait (429, 502-504, a redirect), until the
   * server shows otherwise: when it takes another session's op while this one is still being
   * refused, this session's refusals are its own from then on (`ownTrouble`), until one of its
   * ops goes through. Closing the gate at each of its retries made every other session wait a
   * whole Retry-After each time (measured: 6 of 79 ops of a healthy session through in 20 s,
   * against one session answered 503 with Retry-After: 5). Creates (`NO_SESSION`) always close it.
   */
  private closesGate(sn: number, outcome: Extract<Outcome, { kind: 'retry' }>): boolean {
    if (outcome.scope !== 'upstream') return false;
    if (outcome.status === undefined || sn === NO_SESSION) return true;
    this.refusedSince.add(sn);
    return !this.ownTrouble.has(sn);
  }

  /** The server took an op of session `sn`: sessions it was refusing meanwhile have trouble of their own. */
  private noteServed(sn: number): void {
    this.refusedSince.delete(sn);
    this.ownTrouble.delete(sn);
    for (const other of this.refusedSince) this.ownTrouble.add(other);
  }

  private record(sn: number, outcome: Outcome): void {
    if (outcome.kind === 'retry' && this.closesGate(sn, outcome)) this.link.upstreamFailed(outcome.reason, outcome.retryAfterMs);
    else if (outcome.kind === 'retry') this.link.requestFailed(outcome.reason);
    else if (outcome.kind === 'dead') this.link.refused(outcome.reason);
  }

  private deadLetter(lane: Lane, { refused: _answered, ...op }: UpstreamOp, reason: string): DeadLetter {
    // Without `refused`: a replayed dead letter is sent again, which is what replay asks for.
    return { sn: lane.sn, seq: lane.chunkSeq + lane.index, op, reason, attempts: lane.attempts, failed_at: Date.now() };
  }

  /**
   * Records that the head op is done (delivered or dead-lettered) and moves to the next. Within a
   * chunk the cursor writes are pipelined behind the next send; at the end of a chunk (and for a
   * remap or a dead letter) the lane waits until they are durable.
   */
  private async consume(lane: Lane, puts: Array<[string, Uint8Array]>, deltas: CounterDeltas = {}): Promise<void> {
    // An earlier record failed while this op was out: its record must not land without that one
    // (the queue may have recovered meanwhile). Not recorded, it is sent again, and counted.
    if (lane.writeFailed) {
      lane.unrecorded++;
      throw lane.writeFailed;
    }
    lane.index++;
    lane.attempts = 0;
    lane.lastError = null;
    // A copy: `puts` is the caller's (a remap or a dead letter), and the cursor goes in too.
    const ws: WriteSet = { puts: [...puts], dels: [], deltas: { depth: -1, ...deltas } };
    const chunkDone = lane.index >= lane.ops!.length;
    if (chunkDone) {
      ws.dels!.push(lane.chunkKey!);
      if (!lane.foreignCursor) ws.dels!.push(cursorKey(lane.sn));
      ws.deltas!.bytes = -lane.chunkBytes;
      lane.after = lane.rewind ? null : lane.chunkKey;
      lane.rewind = false;
      this.reclaim.deleted(lane.chunkBytes);
      lane.ops = null;
      lane.chunkKey = null;
    } else {
      ws.puts!.push([cursorKey(lane.sn), pack([lane.chunkSeq, lane.index])]);
      lane.headT = lane.ops![lane.index]!.t;
    }
    lane.unrecorded++;
    const write = this.commits.submit(ws).then(
      () => void lane.unrecorded--,
      (err: unknown) => {
        lane.writeFailed ??= err; // seen by the lane's next send or record, not only when it awaits
        throw err;
      },
    );
    write.catch(() => undefined); // observed below, when the lane waits for its writes
    lane.writes.push(write);
    // Within a chunk, the next send overlaps this write (up to PIPELINED_WRITES of them). At a
    // chunk's end, and for a remap or a dead letter, the lane waits until they are durable.
    if (chunkDone || puts.length > 0 || lane.writes.length >= PIPELINED_WRITES) await Promise.all(lane.writes.splice(0));
  }

  private async loadHead(lane: Lane): Promise<boolean> {
    const range = chunkRange(lane.sn);
    const [entry] = await this.db.iterator({ gt: lane.after ?? range.gt, lt: range.lt, limit: 1 }).all();
    if (!entry) return false;
    const [key, value] = entry;
    const { seq } = parseChunkKey(key);
    const ops = decodeChunk(value);
    let index = 0;
    lane.foreignCursor = false;
    const cursor = await this.db.get(cursorKey(lane.sn));
    if (cursor) {
      const [cursorSeq, cursorIndex] = unpack(cursor) as [number, number];
      if (cursorSeq === seq) index = cursorIndex;
      else lane.foreignCursor = true;
    }
    lane.chunkKey = key;
    lane.chunkSeq = seq;
    lane.chunkBytes = value.byteLength;
    lane.ops = ops;
    lane.index = index;
    lane.headT = ops[index]?.t ?? lane.headT;
    if (index >= ops.length) {
      // Only possible if a crash left the cursor at the end of a chunk whose deletion was lost.
      lane.ops = null;
      lane.after = key;
      return this.loadHead(lane);
    }
    return true;
  }

  private retireOrReread(lane: Lane): void {
    if (lane.more) {
      lane.more = false;
      this.makeReady(lane);
      return;
    }
    if (this.lanes.get(lane.sn) === lane) this.lanes.delete(lane.sn);
    this.refusedSince.delete(lane.sn); // nothing left to refuse
    this.ownTrouble.delete(lane.sn);
    if (this.lanes.size === 0) {
      this.reclaim.drained();
      for (const w of this.drainWaiters.splice(0)) w();
    }
  }

  /** A LevelDB read or write failed under the lane: start it over from what is on disk. */
  private laneCrashed(lane: Lane, err: unknown): void {
    // Deliveries not recorded will be sent again: the upstream already has them. (The write that
    // counts them may fail too, with the store; the run's lease then stays and the restart counts.)
    if (lane.unrecorded > 0) this.countInDoubt(lane.unrecorded);
    lane.unrecorded = 0;
    lane.writes = [];
    lane.writeFailed = null;
    lane.ops = null;
    lane.chunkKey = null;
    lane.after = null;
    lane.lastError = `local store: ${err instanceof Error ? err.message : String(err)}`;
    this.waitBackoff(lane, lane.backoff.fail());
  }
}

/**
 * When a chunk's first op was received, for the lane's age. A chunk that does not decode must not
 * stop the daemon from starting: its lane fails when it loads it, with the error as `last_error`
 * and backoff (laneCrashed), like any other failure of the local store.
 */
function headTime(chunk: Uint8Array): number {
  try {
    return decodeChunk(chunk)[0]?.t ?? Date.now();
  } catch {
    return Date.now();
  }
}
