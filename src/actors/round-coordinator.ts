import type { Db } from '../outbox/store.js';
import type { CommitQueue, WriteSet, Chunk } from '../outbox/commit-queue.js';
import type { CounterDeltas } from '../outbox/counters.js';
import { activeKey, chunkRange } from '../outbox/keys.js';
import { countOps, type ChunkEntry } from '../outbox/chunk.js';
import { unpack } from '../protocol/codec.js';
import { SNAPSHOT_PARTS, snapshotKeys } from './session-snapshot.js';
import type { ActivityFlush } from './session-actor.js';
import { ProtocolError, type ErrorCode } from '../protocol/errors.js';
import type { ActorPool } from '../workers/actor-pool.js';
import type { BatchBody, RoundReply, RoundRequest, WorkerOp } from '../workers/round-messages.js';

/** One op as the gateway routes it: the session number, the kind, receive time, validated body. */
export interface RoutedOp {
  sn: number;
  kind: string;
  rt: number;
  body: unknown;
}

/** A WebSocket batch: ops of one session the worker decodes and validates (see BatchFrame). */
export interface RoutedBatch {
  sn: number;
  rt: number;
  body: BatchBody;
}

/** Per op: null when it is durable, or why it was refused. */
export type OpOutcome = null | { code: ErrorCode; message: string };

/** The ops of a batch that were refused: [index in the batch, code, message]. */
export type BatchErrors = Array<[index: number, code: ErrorCode, message: string]>;

/**
 * A submitter whose submissions must become durable in the order submitted, or not at all: a
 * WebSocket client, whose one high-water mark says that every op below it is durable. Once one
 * of them is refused, `broken` is set at once, and every later submission of it that has not
 * reached a worker yet is refused too, until its owner has seen all of them settle and starts
 * over from what is durable (by setting `broken` back to false).
 *
 * Without it, a failure could refuse a client's ops in a round posted before it while the same
 * client's next ops, submitted before it heard of the refusal, waited for the recovery and were
 * persisted after it: the stored mark then covered the refused ops, and a client told that they
 * were acked never resent them.
 */
export interface SubmissionOrder {
  broken: boolean;
}

interface Entry {
  /** Single ops, or one batch (as a single item of kind `batch`). */
  ops: RoutedOp[];
  /** Extra writes that must land atomically with these ops (ids of a new session, a client's high-water mark). */
  puts: Array<[string, Uint8Array]> | undefined;
  /** Counter changes that must land with them (drops counted on arrival). */
  deltas?: CounterDeltas;
  order: SubmissionOrder | undefined;
  resolve: (result: { outcomes: OpOutcome[]; batchErrors: BatchErrors }) => void;
  reject: (err: Error) => void;
  /** When it was submitted (performance.now()), for the ack latency. */
  at: number;
}

interface Round {
  id: number;
  /** The failure epoch the round was created in; a failure since then refuses it. */
  epoch: number;
  /** Set once its requests are posted to workers: from then on it must settle before a reload. */
  posted: boolean;
  at: number;
  entries: Entry[];
  remaps: Map<number, Array<[number, string]>>;
  passivate: Map<number, number[]>;
  /** Periodic duties in every worker (see RoundRequest.tick). */
  tick: ActivityFlush | undefined;
  /** With a tick: since when the daemon has been reading its sockets (RoundRequest.listeningSince). */
  listeningSince: number;
}

/** Where each op of a round went, to route the workers' per-op errors back. */
type OpRef = [entry: number, op: number];

/**
 * Rounds: the one mechanism between "an op arrived" and "it is acked".
 *
 * Everything submitted during one turn of the event loop (all HTTP requests and WebSocket frames
 * that arrived) forms a round. The round is split by placement, each worker runs its part as one
 * turn of each session actor involved, and the replies (outbox chunks, snapshots) plus the
 * submitters' own writes become one write set for the group-commit queue. Acks go out when that
 * write set is durable. Rounds are pipelined: round k+1 is computed while round k is written,
 * but they are dispatched and submitted strictly in order.
 *
 * Failure handling is also one mechanism: if a worker dies or a write fails, the failed round and
 * every round after it (computed on top of its in-memory effects) are refused, every worker
 * drops its actors, and the next round reloads sessions from their durable snapshots.
 */
export class RoundCoordinator {
  private open: Entry[] = [];
  private flushScheduled = false;
  private nextRoundId = 1;
  private epoch = 0;
  private gate: Promise<void> | null = null;
  private dispatchTail: Promise<unknown> = Promise.resolve();
  private submitTail: Promise<unknown> = Promise.resolve();
  /** Sessions loaded in each worker, as far as rounds dispatched so far are concerned. */
  private readonly resident: Array<Set<number>>;
  private remaps = new Map<number, Array<[number, string]>>();
  private passivations = new Map<number, number[]>();
  private pendingTick: ActivityFlush | undefined;
  private inFlight = 0;
  private idleWaiters: Array<() => void> = [];
  /** Rounds posted to workers and not yet durable or refused. */
  private postedUnsettled = 0;
  private settleWaiters: Array<() => void> = [];
  /**
   * Sessions loaded from their snapshot at least once since this process started or a worker was
   * lost. Until then a snapshot may be behind the outbox (a crash within ACTIVITY_PERSIST_MS of a
   * change), so the first load also hands the actor its newest chunks to catch up from.
   */
  private readonly caughtUp = new Set<number>();
  /** Sessions that are active (not ended or crashed) as of the last durable round. */
  readonly activeSessions: Set<number>;
  /** Sessions whose actor considers them hung (no heartbeat for heartbeat_timeout_seconds). */
  readonly hungSessions = new Set<number>();
  /** [round, time] of the last op for each resident session; passivation waits for that round to be durable. */
  private readonly lastTouched = new Map<number, [round: number, at: number]>();
  private lastDurableRound = 0;
  /** Told which sessions got new outbox chunks, once they are durable (the sync actor listens). */
  afterCommit: ((sessions: number[]) => void) | null = null;
  /**
   * Since when the daemon has been reading its sockets (WsGateway.listeningSince), asked for
   * every round that runs the actors' duties: the hang watch does not count silence before it.
   */
  listeningSince: () => number = () => 0;
  /** Told, per submission, how long it took from submit to durable (seconds): the ack latency. */
  onAck: ((seconds: number) => void) | null = null;
  /** Ops made durable since start, by kind. */
  readonly acceptedByKind = new Map<string, number>();
  roundsCommitted = 0;
  opsCommitted = 0;
  failures = 0;

  constructor(
    private readonly pool: ActorPool,
    private readonly commits: CommitQueue,
    private readonly db: Db,
    activeSessions: Iterable<number>,
    /** Ops a session's recent lists hold at most (recent_events_limit + recent_metrics_limit). */
    private readonly recentOps: number,
  ) {
    this.resident = Array.from({ length: pool.size }, () => new Set<number>());
    this.activeSessions = new Set(activeSessions);
    pool.on('worker-lost', (_slot: number, err: Error) => this.onFailure(err));
    commits.on('failed', (err: Error) => this.onFailure(err));
  }

  /**
   * Queues ops (and writes that must be atomic with them) into the open round. Resolves with one
   * outcome per op once the round is durable; rejects (ProtocolError 'unavailable') when the round
   * could not be made durable, in which case none of its ops is.
   */
  submit(ops: RoutedOp[], puts?: Array<[string, Uint8Array]>, deltas?: CounterDeltas, order?: SubmissionOrder): Promise<OpOutcome[]> {
    return this.enqueue(ops, puts, deltas, order).then((r) => r.outcomes);
  }

  /** Queues a batch the same way; resolves with the ops of it that were refused. */
  submitBatch(batch: RoutedBatch, puts?: Array<[string, Uint8Array]>, order?: SubmissionOrder): Promise<BatchErrors> {
    return this.enqueue([{ sn: batch.sn, kind: 'batch', rt: batch.rt, body: batch.body }], puts, undefined, order).then((r) => r.batchErrors);
  }

  private enqueue(
    ops: RoutedOp[],
    puts: Array<[string, Uint8Array]> | undefined,
    deltas?: CounterDeltas,
    order?: SubmissionOrder,
  ): Promise<{ outcomes: OpOutcome[]; batchErrors: BatchErrors }> {
    return new Promise((resolve, reject) => {
      this.open.push({ ops, puts, deltas, order, resolve, reject, at: performance.now() });
      this.scheduleFlush();
    });
  }

  /** The remap broadcast to actors: the actor stores the server id in its snapshot. */
  broadcastRemap(sn: number, serverId: string): void {
    const slot = this.pool.slotOf(sn);
    if (!this.resident[slot]!.has(sn)) return; // its next activation reads a snapshot; reads use the directory
    push(this.remaps, slot, [sn, serverId]);
    this.scheduleFlush();
  }

  /**
   * Drops idle, ended sessions from worker memory. Active sessions stay: their actors watch
   * heartbeats. A session is passivated only once its last round is durable, so a later activation
   * reads the snapshot that round wrote.
   */
  passivateIdle(idleMs: number, now = Date.now()): number {
    let n = 0;
    for (let slot = 0; slot < this.resident.length; slot++) {
      for (const sn of this.resident[slot]!) {
        if (this.activeSessions.has(sn)) continue;
        const [round, at] = this.lastTouched.get(sn) ?? [0, 0];
        if (now - at < idleMs || round > this.lastDurableRound) continue;
        this.resident[slot]!.delete(sn);
        this.lastTouched.delete(sn);
        push(this.passivations, slot, sn);
        n++;
      }
    }
    if (n > 0) this.scheduleFlush();
    return n;
  }

  /**
   * Runs the actors' periodic duties in every worker (persisting activity that is due, or
   * with 'all' everything, at shutdown); resolves when their writes are durable.
   */
  tick(flush: ActivityFlush = 'due'): Promise<void> {
    if (this.pendingTick !== 'all') this.pendingTick = flush;
    return this.enqueue([], undefined).then(() => undefined);
  }

  /**
   * Loads every active session that is not in a worker yet, a few hundred per round, so that its
   * actor's duties (hang and parent watch, aggregate flushes) run from the next tick: at startup,
   * an active session may get no op for a long time (its application may be gone).
   */
  async reactivate(): Promise<void> {
    const sessions = [...this.activeSessions].filter((sn) => !this.isResident(sn));
    for (let i = 0; i < sessions.length; i += REACTIVATE_PER_ROUND) {
      const rt = Date.now();
      await this.submit(sessions.slice(i, i + REACTIVATE_PER_ROUND).map((sn) => ({ sn, kind: 'activate', rt, body: null })));
    }
  }

  /**
   * A read is about to look at the session's store: make its in-memory parts durable first. An
   * active session not in memory may still be behind its outbox in the store (its worker died, or
   * the process was killed, within ACTIVITY_PERSIST_MS of a change, and its reload is not done
   * yet); it is loaded, which catches it up, and persisted.
   */
  persist(sn: number, rt: number): Promise<void> {
    if (this.storeIsCurrent(sn)) return Promise.resolve();
    return this.enqueue([{ sn, kind: 'persist', rt, body: null }], undefined).then(() => undefined);
  }

  /**
   * Whether the store holds all of the session: it is not in memory, and it was caught up with its
   * outbox since the last crash, or it has ended (its end persisted everything, SessionActor.endTurn).
   * Ended sessions are most of a store's history: loading each one for a read would fill the
   * workers with them after every restart.
   */
  storeIsCurrent(sn: number): boolean {
    return !this.isResident(sn) && (this.caughtUp.has(sn) || !this.activeSessions.has(sn));
  }

  isResident(sn: number): boolean {
    return this.resident[this.pool.slotOf(sn)]!.has(sn);
  }

  residentCount(): number {
    return this.resident.reduce((n, s) => n + s.size, 0);
  }

  /** Resolves when every op submitted so far has been answered. */
  async drain(): Promise<void> {
    while (this.open.length > 0 || this.inFlight > 0 || this.flushScheduled) {
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    }
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // setImmediate, not a microtask: every request and frame read in this loop turn joins the round.
    setImmediate(() => {
      this.flushScheduled = false;
      this.startRound();
    });
  }

  private startRound(): void {
    if (this.open.length === 0 && this.remaps.size === 0 && this.passivations.size === 0 && !this.pendingTick) return this.notifyIdle();
    const round: Round = {
      id: this.nextRoundId++,
      epoch: this.epoch,
      posted: false,
      at: Date.now(),
      entries: this.open,
      remaps: this.remaps,
      passivate: this.passivations,
      tick: this.pendingTick,
      listeningSince: this.pendingTick ? this.listeningSince() : 0,
    };
    this.open = [];
    this.remaps = new Map();
    this.passivations = new Map();
    this.pendingTick = undefined;
    this.inFlight++;

    const dispatched = this.dispatchTail.then(() => this.dispatch(round));
    this.dispatchTail = dispatched.catch(() => undefined);
    // Submit in round order: a later round's snapshots build on this one's.
    const submitted = Promise.all([dispatched, this.submitTail]).then(([replies]) => this.submitRound(round, replies));
    this.submitTail = submitted.catch(() => undefined);
    submitted
      .then((s) => s.commit.then(() => this.complete(round, s.refs, s.replies, s.activeChanges)))
      .catch((err: unknown) => this.fail(round, err))
      .finally(() => {
        this.inFlight--;
        if (round.posted && --this.postedUnsettled === 0) for (const w of this.settleWaiters.splice(0)) w();
        this.notifyIdle();
      });
  }

  /**
   * Loads what the round needs into the workers and sends each worker its part. A refusal marks
   * the round's ordered submitters broken before anything else can run, so a later round, whose
   * dispatch is chained behind this one, already sees it.
   */
  private async dispatch(round: Round): Promise<Array<{ slot: number; refs: OpRef[]; reply: Promise<RoundReply> }>> {
    try {
      return await this.post(round);
    } catch (err) {
      breakOrders(round.entries);
      throw err;
    }
  }

  private async post(round: Round): Promise<Array<{ slot: number; refs: OpRef[]; reply: Promise<RoundReply> }>> {
    while (this.gate) await this.gate;
    if (round.epoch !== this.epoch) throw unavailable('the daemon is recovering from a failure; retry');
    // Every round before this one has been refused or posted by now (dispatches are chained, and
    // after a failure the gate waits for posted rounds to settle): an ordered submitter that was
    // refused in one of them must not get its later ops persisted.
    if (round.entries.some((e) => e.order?.broken)) {
      const refused = unavailable('an earlier op of this client was not persisted; reconnect and resend from the acked mark');
      const kept: Entry[] = [];
      for (const entry of round.entries) {
        if (entry.order?.broken) entry.reject(refused);
        else kept.push(entry);
      }
      round.entries = kept;
    }
    const size = this.pool.size;
    const requests: RoundRequest[] = Array.from({ length: size }, () => ({ r: round.id, now: round.at, activate: [], ops: [], remaps: [], passivate: [] }));
    const refs: OpRef[][] = Array.from({ length: size }, () => []);
    const toLoad: Array<[slot: number, sn: number]> = [];
    round.entries.forEach((entry, e) => {
      entry.ops.forEach((op, o) => {
        const slot = this.pool.slotOf(op.sn);
        const resident = this.resident[slot]!;
        if (!resident.has(op.sn)) {
          resident.add(op.sn);
          // Passivated by this very round (the op arrived in the loop turn passivateIdle ran in):
          // the worker would drop the actor after applying the op, while the session counts as
          // resident, and its later ops would be refused as not loaded. It stays in the worker,
          // loaded as any other from its snapshot (durable: its last round was, see passivateIdle).
          unpassivate(round.passivate, slot, op.sn);
          if (op.kind !== 'register') toLoad.push([slot, op.sn]);
          else this.caughtUp.add(op.sn); // new: nothing in its outbox is newer than its actor
        }
        this.lastTouched.set(op.sn, [round.id, round.at]);
        requests[slot]!.ops.push([op.sn, op.kind, op.rt, op.body] as WorkerOp);
        refs[slot]!.push([e, o]);
      });
    });
    // Sessions this round catches up, counted as caught up only once the round reaches the workers:
    // a round refused before that (a failure while it loaded) activated nothing.
    const catchingUp: number[] = [];
    if (toLoad.length > 0) {
      try {
        const parts = await this.db.getMany(toLoad.flatMap(([, sn]) => snapshotKeys(sn)));
        const per = SNAPSHOT_PARTS;
        const loads = toLoad.map(async ([slot, sn], i) => {
          const [core, state, aggregates, activity] = parts.slice(per * i, per * i + per);
          if (!core) return void this.resident[slot]!.delete(sn); // the op will fail in the worker as not loaded
          const newest = this.caughtUp.has(sn) ? undefined : await this.newestChunks(sn);
          catchingUp.push(sn);
          requests[slot]!.activate.push(newest ? [sn, core, state, aggregates, activity, newest] : [sn, core, state, aggregates, activity]);
        });
        await Promise.all(loads);
      } catch (err) {
        // A read failed: the round is refused and no worker loads these sessions. Left resident,
        // their next ops would skip the load and be refused by the worker forever ("not loaded").
        for (const [slot, sn] of toLoad) this.resident[slot]!.delete(sn);
        throw err;
      }
    }
    if (round.epoch !== this.epoch) throw unavailable('the daemon is recovering from a failure; retry');
    for (const sn of catchingUp) this.caughtUp.add(sn);
    round.posted = true;
    this.postedUnsettled++;
    for (const [slot, list] of round.remaps) requests[slot]!.remaps = list;
    for (const [slot, list] of round.passivate) requests[slot]!.passivate = list;
    const sent: Array<{ slot: number; refs: OpRef[]; reply: Promise<RoundReply> }> = [];
    requests.forEach((req, slot) => {
      if (round.tick) {
        req.tick = round.tick;
        if (round.listeningSince > 0) req.listeningSince = round.listeningSince;
      } else if (req.ops.length === 0 && req.remaps.length === 0 && req.passivate.length === 0) return;
      const reply = this.pool.run(slot, req);
      reply.catch(() => undefined); // observed in submitRound; avoid an unhandled rejection meanwhile
      sent.push({ slot, refs: refs[slot]!, reply });
    });
    return sent;
  }

  /**
   * A session's newest outbox chunks, oldest first: enough ops to refill its recent lists (or
   * all it has), within a bound, read newest first with one reverse seek.
   */
  private async newestChunks(sn: number): Promise<Uint8Array[]> {
    const chunks: Uint8Array[] = [];
    let ops = 0;
    let bytes = 0;
    for await (const [, value] of this.db.iterator({ ...chunkRange(sn), reverse: true })) {
      chunks.push(value);
      ops += countOps(unpack(value) as ChunkEntry[]);
      bytes += value.byteLength;
      if (ops >= this.recentOps || bytes >= CATCH_UP_MAX_BYTES || chunks.length >= CATCH_UP_MAX_CHUNKS) break;
    }
    return chunks.reverse();
  }

  /**
   * Builds the round's write set from the replies and submits it. Its refusals come with a failure
   * (a worker lost, the epoch moved on), whose gate holds every later dispatch until this round has
   * settled, so `fail` breaks its orders in time: unlike dispatch, no wrapper is needed here.
   */
  private async submitRound(round: Round, sent: Awaited<ReturnType<RoundCoordinator['dispatch']>>) {
    const replies = await Promise.all(sent.map((s) => s.reply));
    if (round.epoch !== this.epoch) throw unavailable('the daemon is recovering from a failure; retry');
    const chunks: Chunk[] = [];
    const puts: Array<[string, Uint8Array]> = [];
    const dels: string[] = [];
    const activeChanges: Array<[number, boolean]> = [];
    for (const reply of replies) {
      for (const [sn, count, value] of reply.chunks) chunks.push({ sn, count, value });
      puts.push(...reply.puts);
      for (const [sn, active, hung] of reply.active) {
        if (hung) this.hungSessions.add(sn);
        else this.hungSessions.delete(sn);
        if (active !== this.activeSessions.has(sn)) {
          activeChanges.push([sn, active]);
          if (active) puts.push([activeKey(sn), EMPTY]);
          else dels.push(activeKey(sn));
        }
      }
    }
    // Writes of entries whose ops all failed validation in the worker are still harmless: they
    // are ids and high-water marks, which the submitter decided independently of the outcome.
    const deltas: CounterDeltas = {};
    for (const entry of round.entries) {
      if (entry.puts) puts.push(...entry.puts);
      if (entry.deltas) addDeltas(deltas, entry.deltas);
    }
    const dropped = replies.reduce((n, r) => n + r.dropped, 0);
    if (dropped > 0) addDeltas(deltas, { dropped, dropped_newest: dropped });
    const ws: WriteSet = { chunks, puts, dels, deltas };
    // A round that changed nothing (an idle tick, a read with nothing to persist) writes nothing.
    const empty = chunks.length === 0 && puts.length === 0 && dels.length === 0 && Object.keys(deltas).length === 0;
    const commit = empty ? Promise.resolve() : this.commits.submit(ws);
    return { commit, refs: sent.map((s) => s.refs), replies, activeChanges };
  }

  private complete(round: Round, refs: OpRef[][], replies: RoundReply[], activeChanges: Array<[number, boolean]>): void {
    for (const [sn, active] of activeChanges) {
      if (active) this.activeSessions.add(sn);
      else this.activeSessions.delete(sn);
    }
    this.lastDurableRound = round.id;
    this.roundsCommitted++;
    const outcomes: OpOutcome[][] = round.entries.map((e) => new Array<OpOutcome>(e.ops.length).fill(null));
    const batchErrors: BatchErrors[] = round.entries.map(() => []);
    replies.forEach((reply, i) => {
      for (const [index, code, message, inBatch] of reply.errors) {
        const [e, o] = refs[i]![index]!;
        if (inBatch !== undefined) batchErrors[e]!.push([inBatch, code, message]);
        else outcomes[e]![o] = { code, message };
      }
    });
    for (const reply of replies) for (const [kind, n] of Object.entries(reply.applied)) this.acceptedByKind.set(kind, (this.acceptedByKind.get(kind) ?? 0) + n);
    const now = performance.now();
    for (let e = 0; e < round.entries.length; e++) {
      const entry = round.entries[e]!;
      if (this.onAck && entry.ops.length > 0) this.onAck((now - entry.at) / 1000);
      for (const op of entry.ops) this.opsCommitted += op.kind === 'batch' ? (op.body as BatchBody)[2] - (op.body as BatchBody)[1] : 1;
      entry.resolve({ outcomes: outcomes[e]!, batchErrors: batchErrors[e]! });
    }
    if (this.afterCommit) {
      const sessions: number[] = [];
      for (const reply of replies) for (const [sn] of reply.chunks) sessions.push(sn);
      if (sessions.length > 0) this.afterCommit(sessions);
    }
  }

  private fail(round: Round, err: unknown): void {
    const error = err instanceof ProtocolError ? err : unavailable(`not persisted: ${err instanceof Error ? err.message : String(err)}`);
    breakOrders(round.entries);
    for (const entry of round.entries) entry.reject(error);
  }

  /**
   * A worker died or a write failed: refuse every round not yet durable, make every worker drop
   * its actors, and hold new rounds until every round already posted to a worker has settled, so
   * activations read snapshots that are on disk. (Rounds not yet posted wait at the gate; waiting
   * for them here would deadlock.)
   */
  private onFailure(_err: Error): void {
    this.failures++;
    this.epoch++;
    // Ops submitted before the failure are refused too, even those not yet in a round: a client's
    // later writes (a WebSocket high-water mark) must never land after an earlier op was lost.
    const open = this.open;
    this.open = [];
    const refused = unavailable('the daemon is recovering from a failure; retry');
    breakOrders(open);
    for (const entry of open) entry.reject(refused);
    this.pool.broadcast({ t: 'reset' });
    for (const set of this.resident) set.clear();
    this.caughtUp.clear(); // the workers' unpersisted activity is gone with their actors
    const gate = (async () => {
      if (this.postedUnsettled > 0) await new Promise<void>((resolve) => this.settleWaiters.push(resolve));
      await this.commits.idle();
      this.commits.recover();
    })();
    this.gate = gate;
    void gate.finally(() => {
      if (this.gate !== gate) return; // a later failure reloads once its own gate opens
      this.gate = null;
      // The workers dropped every actor, and only ops load them back: an active session that gets
      // no op again (its application hung or gone) would never be watched again, nor its pending
      // aggregates sent. Reload them now, as at startup. A failure meanwhile refuses these rounds
      // and reloads after its own gate.
      void this.reactivate().catch(() => undefined);
    });
  }

  private notifyIdle(): void {
    if (this.open.length > 0 || this.inFlight > 0 || this.flushScheduled) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}

const EMPTY = new Uint8Array(0);

/** Sessions loaded per round by `reactivate` (each costs a few snapshot reads and a seek). */
const REACTIVATE_PER_ROUND = 256;

/** Bounds on what one session reads back from its outbox when it is first loaded. */
const CATCH_UP_MAX_CHUNKS = 256;
const CATCH_UP_MAX_BYTES = 4 << 20;

function unavailable(message: string): ProtocolError {
  return new ProtocolError('unavailable', message);
}

/** Marks the ordered submitters of refused entries (SubmissionOrder), before any of them hears of it. */
function breakOrders(entries: Entry[]): void {
  for (const entry of entries) if (entry.order) entry.order.broken = true;
}

/** Takes a session out of a round's passivations, if it is there. */
function unpassivate(passivate: Map<number, number[]>, slot: number, sn: number): void {
  const list = passivate.get(slot);
  const i = list ? list.indexOf(sn) : -1;
  if (i >= 0) list!.splice(i, 1);
}

function addDeltas(into: CounterDeltas, from: CounterDeltas): void {
  for (const [k, v] of Object.entries(from) as Array<[keyof CounterDeltas, number]>) into[k] = (into[k] ?? 0) + v;
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}
