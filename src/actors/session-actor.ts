import { ProtocolError } from '../protocol/errors.js';
import { mergeState } from '../protocol/merge.js';
import type { EventBody, JsonObject, MetricBody, OpBodies, OpKind } from '../protocol/ops.js';
import { decodeChunk, metricUpstreamBody, type ChunkEntry, type RawSegment, type UpstreamOp } from '../outbox/chunk.js';
import type { RecentItem, SessionSnapshot, SnapshotPart } from './session-snapshot.js';
import { aggregate, emptyAggregates, hasChanged, isAggregated, takeChanged } from './metric-aggregates.js';

/**
 * A session's activity (updated_at, recent events and metrics) is what reads show of its
 * history (the ops are in the outbox), so it is persisted lazily: at most this long after it
 * changed (by the periodic tick), or sooner when a read, passivation or shutdown asks.
 * Re-encoding up to recent_*_limit items on every turn was half of the workers' encoding time
 * under WebSocket load, and writing a snapshot per HTTP event doubled the LevelDB entries.
 */
export const ACTIVITY_PERSIST_MS = 1000;

/**
 * How often the tick round runs the actors' periodic duties: every second, or more often so that
 * batch_interval_seconds is a whole number of ticks (0.5 s: every 0.5 s; 2.5 s: every 0.83 s),
 * but at most 10 times a second. Aggregates then go upstream on the interval itself, not
 * rounded up to the next whole second.
 */
export function dutyTickMs(batchIntervalSeconds: number): number {
  const intervalMs = batchIntervalSeconds * 1000;
  return Math.max(100, intervalMs / Math.ceil(intervalMs / 1000));
}

/** When a turn persists the activity part: only when due, or whenever it changed (a read, shutdown). */
export type ActivityFlush = 'due' | 'all';

export interface ActorSettings {
  recent_events_limit: number;
  recent_metrics_limit: number;
  heartbeat_timeout_seconds: number;
  batch_interval_seconds: number;
  /**
   * The pid of the application that started this daemon, when the daemon watches it (a
   * per-application daemon): sessions whose parent it is are left to that watch (parentExited),
   * which also persists everything before the daemon exits, rather than racing it here.
   */
  watched_parent_pid: number | null;
}

/** Ops an ended or crashed session accepts as no-ops (a session is ended once, and never crashed after it ended). */
const NOTHING_TO_DO_AFTER_END: ReadonlySet<string> = new Set(['end', 'crash', 'heartbeat', 'pause_heartbeat', 'resume_heartbeat']);

/** Events the daemon itself adds to a session (CONTRACT §3), all in this group. */
export const DAEMON_GROUP = 'datacat.daemon';

/** What the gateway decided at registration, handed to the new actor. */
export interface RegisterInput {
  product: string;
  version: string;
  hostname: string | null;
  machine_id: string | null;
  parent_pid: number | null;
  local_id: string | null;
  server_id: string | null;
  /** The upstream's 4xx to the create tried at registration, if it refused it (see UpstreamOp.refused). */
  create_refused: string | null;
}

/** Ops the actor applies; `register` arrives only as the first op of a new actor. */
export type ActorOpKind = Exclude<OpKind, 'register'>;

/**
 * One session: its merged state, status and recent history. It lives in exactly one worker and
 * handles its mailbox one turn at a time: `apply` for each op of the turn, then `endTurn` hands
 * back the upstream ops and the snapshot parts to persist, which the round writes in one batch.
 *
 * Pure logic: no I/O, no clocks (times come with the ops), so it is tested directly.
 */
export class SessionActor {
  /** Upstream ops of this turn, in order; runs of ops kept as received are RawSegments. */
  private pending: ChunkEntry[] = [];
  /** Parts of the snapshot changed since they were last handed out for persisting. */
  private coreDirty = false;
  private stateDirty = false;
  private aggregatesDirty = false;
  private activityDirtySince: number | null = null;


  constructor(
    readonly snapshot: SessionSnapshot,
    private readonly settings: ActorSettings,
  ) {}

  static register(sn: number, reg: RegisterInput, now: number, settings: ActorSettings): SessionActor {
    const actor = new SessionActor(
      {
        v: 1,
        sn,
        local_id: reg.local_id,
        server_id: reg.server_id,
        product: reg.product,
        version: reg.version,
        hostname: reg.hostname,
        machine_id: reg.machine_id,
        parent_pid: reg.parent_pid,
        created_at: now,
        updated_at: now,
        ended_at: null,
        active: true,
        crashed: false,
        hung: false,
        heartbeat_paused: false,
        last_heartbeat: now,
        state: {},
        events: [],
        metrics: [],
        activity_through: [0, 0],
        aggregates: emptyAggregates(now),
      },
      settings,
    );
    actor.coreDirty = true;
    // Created upstream already when the server answered in time; otherwise the create is the
    // session's first queued op, so the sync actor sends it before anything else.
    if (reg.server_id === null) {
      const b = { product: reg.product, version: reg.version, machine_id: reg.machine_id, hostname: reg.hostname };
      actor.emit(reg.create_refused ? { k: 'create', t: now, b, refused: reg.create_refused } : { k: 'create', t: now, b });
    }
    return actor;
  }

  /**
   * Applies one op. `raw` says where the op's own bytes are (op `index` of the MessagePack array
   * `bytes`, a WebSocket batch): an event or metric that goes upstream as it came is then queued
   * as a reference to those bytes instead of being re-encoded (see RawSegment).
   */
  apply<K extends ActorOpKind>(kind: K, body: OpBodies[K], now: number, raw?: { bytes: Uint8Array; index: number }): void {
    const s = this.snapshot;
    if (!s.active) {
      // Ending again, or a heartbeat racing the end, changes nothing and is no mistake: an
      // application's exit handler may end a session its code already ended. Data is refused.
      if (NOTHING_TO_DO_AFTER_END.has(kind)) return;
      throw new ProtocolError('session_ended', `session ${s.server_id ?? s.local_id} has ${s.crashed ? 'crashed' : 'ended'}; it takes no more state, events or metrics`);
    }
    switch (kind) {
      case 'state': {
        const effective = mergeState(s.state, (body as OpBodies['state']).state);
        if (effective === null) return; // changes nothing: not queued (DataCat's daemon does the same)
        this.emit({ k: 'state', t: now, b: { state: effective } });
        this.stateDirty = true;
        break;
      }
      case 'event':
        // The validated body is the upstream body: kept and queued as it is, never copied.
        this.recordEvent(body as EventBody as unknown as JsonObject, now, raw);
        break;
      case 'metric':
        this.recordMetric(body as MetricBody, now, raw);
        break;
      case 'heartbeat':
        if (s.hung) this.recovered(now);
        s.last_heartbeat = now;
        s.heartbeat_paused = false;
        break;
      case 'pause_heartbeat':
        s.heartbeat_paused = true;
        break;
      case 'resume_heartbeat':
        s.heartbeat_paused = false;
        s.last_heartbeat = now;
        break;
      case 'end':
        this.flushAggregates(now); // final totals go up before the end
        s.active = false;
        s.hung = false; // an ended session is not hung: only active ones are watched
        s.ended_at = now;
        this.emit({ k: 'end', t: now, b: {} });
        break;
      case 'crash':
        this.crash((body as OpBodies['crash']).reason ?? 'abnormal_termination', now);
        break;
      default:
        throw new ProtocolError('unknown_op', `unknown op "${String(kind)}"`);
    }
    s.updated_at = now;
    this.activityDirtySince ??= now;
    // Events and metrics change only the activity part; everything else changes the core.
    if (kind !== 'event' && kind !== 'metric' && kind !== 'state') this.coreDirty = true;
  }

  /** The server id arrived (remap broadcast); kept in the snapshot so it is self-describing. */
  setServerId(serverId: string): void {
    if (this.snapshot.server_id === serverId) return;
    this.snapshot.server_id = serverId;
    this.coreDirty = true;
  }

  /**
   * Ends the turn: the upstream ops to queue and the snapshot parts to persist with them. Core
   * and state go with the turn that changed them; activity when due (see ACTIVITY_PERSIST_MS)
   * or, with `activity: 'all'`, whenever they changed. An ended or crashed session's activity
   * goes with its end: nothing changes it later, so its stored snapshot is complete from then on,
   * and a read after a crash of the daemon or a worker can trust it without loading the session.
   */
  endTurn(now: number, activity: ActivityFlush = 'due'): { ops: ChunkEntry[]; parts: SnapshotPart[] } {
    const ops = this.pending;
    this.pending = [];
    const parts: SnapshotPart[] = [];
    if (this.coreDirty) parts.push('core');
    if (this.stateDirty) parts.push('state');
    if (this.aggregatesDirty) parts.push('aggregates');
    const since = this.activityDirtySince;
    if (since !== null && (activity === 'all' || !this.snapshot.active || now - since >= ACTIVITY_PERSIST_MS)) {
      trim(this.snapshot.events, this.settings.recent_events_limit);
      trim(this.snapshot.metrics, this.settings.recent_metrics_limit);
      parts.push('activity');
      this.activityDirtySince = null;
    }
    this.coreDirty = false;
    this.stateDirty = false;
    this.aggregatesDirty = false;
    return { ops, parts };
  }

  /** Whether the actor holds anything not yet handed out for persisting. */
  get hasUnpersisted(): boolean {
    return this.coreDirty || this.stateDirty || this.aggregatesDirty || this.activityDirtySince !== null || this.pending.length > 0;
  }

  /**
   * The periodic duties, run by the tick round about once a second over every actor of a worker
   * (one sweep per worker, never a timer per session):
   * - the parent process (`parent_pid`) is gone while the session is active: a
   *   `parent_process_crashed` event, then a crash op (reason `parent_process_terminated`);
   * - no heartbeat for heartbeat_timeout_seconds (unless paused): `application_appears_hung`,
   *   once, until the next heartbeat. Silence is counted from `listeningSince` when that is later
   *   (the daemon held its sockets unread until then, so it could not have heard a heartbeat);
   * - counter and histogram aggregates that changed go upstream once per batch_interval_seconds.
   */
  tick(now: number, processAlive: (pid: number) => boolean, listeningSince = 0): void {
    const s = this.snapshot;
    if (!s.active) return;
    if (s.parent_pid !== null && s.parent_pid !== this.settings.watched_parent_pid && !processAlive(s.parent_pid))
      return this.parentGone(now, 'parent_process_crashed', { parent_pid: s.parent_pid });
    const silentFor = now - (s.last_heartbeat ?? s.created_at);
    const unheardFor = now - Math.max(s.last_heartbeat ?? s.created_at, listeningSince);
    if (!s.heartbeat_paused && !s.hung && unheardFor > this.settings.heartbeat_timeout_seconds * 1000) {
      const seconds = Math.round(silentFor / 1000);
      s.hung = true;
      this.daemonEvent(now, 'application_appears_hung', 'error', ['heartbeat', 'hung'], `Application has not sent heartbeat for ${seconds} seconds`, {
        last_heartbeat: new Date(s.last_heartbeat ?? s.created_at).toISOString(),
        seconds_since_heartbeat: seconds,
      });
      this.coreDirty = true;
    }
    // Due at the tick nearest the interval: ticks land a little early or late, and a tick that
    // came 1 ms early must not push the flush a whole tick later.
    const intervalMs = this.settings.batch_interval_seconds * 1000;
    if (now - s.aggregates.flushed_at >= intervalMs - dutyTickMs(this.settings.batch_interval_seconds) / 2) this.flushAggregates(now);
  }

  /**
   * The application that started this daemon exited (README, "per-application daemon"). A session
   * it registered as its own (`parent_pid`) gets what any session whose parent is gone gets,
   * `parent_process_crashed` (CONTRACT §3); any other active session, `daemon_parent_exited`.
   * Either way a crash op follows, since the daemon is about to exit.
   */
  parentExited(now: number, daemonPid: number, parentPid: number): void {
    if (!this.snapshot.active) return;
    this.parentGone(now, this.snapshot.parent_pid === parentPid ? 'parent_process_crashed' : 'daemon_parent_exited', { parent_pid: parentPid, daemon_pid: daemonPid });
  }

  /** The session's end when its parent is gone: final aggregates, the event, then the crash op directly after it. */
  private parentGone(now: number, name: 'parent_process_crashed' | 'daemon_parent_exited', data: { parent_pid: number; daemon_pid?: number }): void {
    this.flushAggregates(now);
    if (name === 'parent_process_crashed')
      this.daemonEvent(now, name, 'critical', ['crash', 'process'], `Parent process (PID ${data.parent_pid}) is no longer running`, data);
    else
      this.daemonEvent(now, name, 'critical', ['crash', 'daemon'], `The application that started the daemon (PID ${data.parent_pid}) exited while the session was active`, data);
    this.crash('parent_process_terminated', now);
  }

  private recovered(now: number): void {
    const s = this.snapshot;
    s.hung = false;
    this.daemonEvent(now, 'application_recovered', 'info', ['heartbeat', 'recovery'], 'Application heartbeat resumed after hang', {
      seconds_since_heartbeat: Math.round((now - (s.last_heartbeat ?? s.created_at)) / 1000),
    });
  }

  /** An event the daemon adds (group datacat.daemon): queued and shown in reads like any event. */
  private daemonEvent(now: number, name: string, category: string, labels: string[], message: string, data: JsonObject): void {
    this.recordEvent({ name, category, group: DAEMON_GROUP, labels, message, data }, now);
    this.snapshot.updated_at = now;
    this.activityDirtySince ??= now;
  }

  /** Queues the aggregates that changed since they were last sent (their running values). */
  private flushAggregates(now: number): void {
    const aggs = this.snapshot.aggregates;
    if (!hasChanged(aggs)) {
      aggs.flushed_at = now;
      return;
    }
    for (const b of takeChanged(aggs, now)) this.emit({ k: 'metric', t: now, b, agg: true });
    this.aggregatesDirty = true;
  }

  private crash(reason: string, now: number): void {
    this.flushAggregates(now);
    const s = this.snapshot;
    this.coreDirty = true; // also when called from tick(), not only from apply()
    s.active = false;
    s.crashed = true;
    s.hung = false; // crashed, not hung: only active sessions are watched
    s.ended_at = now;
    this.emit({ k: 'crash', t: now, b: { reason } });
  }

  private recordEvent(b: JsonObject, now: number, raw?: { bytes: Uint8Array; index: number }): void {
    if (raw) this.emitRaw(raw, now);
    else this.emit({ k: 'event', t: now, b });
    this.remember(this.snapshot.events, { t: now, b }, this.settings.recent_events_limit);
  }

  private recordMetric(m: MetricBody, now: number, raw?: { bytes: Uint8Array; index: number }): void {
    // Counter deltas and histogram samples accumulate; their snapshots go up on the interval.
    if (isAggregated(m)) {
      aggregate(this.snapshot.aggregates, m);
      this.aggregatesDirty = true;
      this.remember(this.snapshot.metrics, { t: now, b: m as unknown as JsonObject }, this.settings.recent_metrics_limit);
      return;
    }
    const b = metricUpstreamBody(m);
    if (raw) this.emitRaw(raw, now);
    else this.emit({ k: 'metric', t: now, b });
    this.remember(this.snapshot.metrics, { t: now, b }, this.settings.recent_metrics_limit);
  }

  /** Queues op `index` of `bytes` as it came, extending the last raw run when it is the same batch. */
  private emitRaw(raw: { bytes: Uint8Array; index: number }, now: number): void {
    const last = this.pending[this.pending.length - 1] as RawSegment | undefined;
    if (last && 'r' in last && last.r === raw.bytes) last.i.push(raw.index);
    else this.pending.push({ r: raw.bytes, t: now, i: [raw.index] });
    this.advanceThrough(now); // a raw segment holds only events and metrics the client sent
  }

  /** An event or metric the recent lists keep was queued at `t` (see activity_through). */
  private advanceThrough(t: number): void {
    const through = this.snapshot.activity_through;
    if (t > through[0]) this.snapshot.activity_through = [t, 1];
    else if (t === through[0]) through[1]++;
  }

  /**
   * The actor was loaded from a snapshot that may be behind its outbox: the process or its worker
   * died less than ACTIVITY_PERSIST_MS after the recent lists last changed. Takes back, from the
   * session's newest outbox chunks (oldest first), the events and metrics queued after what the
   * lists hold (activity_through), and catches updated_at up with the newest op queued.
   */
  recoverActivity(chunks: Uint8Array[], now: number): void {
    const s = this.snapshot;
    const [t0, n0] = s.activity_through;
    let atT0 = 0;
    let changed = false;
    const newest = Math.max(s.updated_at, s.last_heartbeat ?? 0, s.ended_at ?? 0);
    if (newest > s.updated_at) {
      s.updated_at = newest;
      changed = true;
    }
    for (const bytes of chunks) {
      for (const op of decodeChunk(bytes)) {
        if (op.t > s.updated_at) {
          s.updated_at = op.t;
          changed = true;
        }
        if ((op.k !== 'event' && op.k !== 'metric') || op.agg) continue;
        if (op.t < t0 || (op.t === t0 && atT0++ < n0)) continue; // already in the lists
        if (op.k === 'event') this.remember(s.events, { t: op.t, b: op.b as JsonObject }, this.settings.recent_events_limit);
        else this.remember(s.metrics, { t: op.t, b: op.b as JsonObject }, this.settings.recent_metrics_limit);
        this.advanceThrough(op.t);
        changed = true;
      }
    }
    if (!changed) return;
    trim(s.events, this.settings.recent_events_limit);
    trim(s.metrics, this.settings.recent_metrics_limit);
    this.activityDirtySince ??= now;
  }

  private remember(list: RecentItem[], item: RecentItem, limit: number): void {
    if (limit === 0) return;
    list.push(item);
    // Trimmed once per turn (endTurn), not per op: a shift per op would cost O(limit) each.
    if (list.length >= 2 * limit) trim(list, limit);
  }

  private emit(op: UpstreamOp): void {
    this.pending.push(op);
    if ((op.k === 'event' || op.k === 'metric') && !op.agg) this.advanceThrough(op.t);
  }
}

function trim(list: RecentItem[], limit: number): void {
  if (list.length > limit) list.splice(0, list.length - limit);
}


