import { ProtocolError } from '../protocol/errors.js';
import { mergeState } from '../protocol/merge.js';
import type { EventBody, JsonObject, MetricBody, OpBodies, OpKind } from '../protocol/ops.js';
import { metricUpstreamBody, type ChunkEntry, type RawSegment, type UpstreamOp } from '../outbox/chunk.js';
import type { RecentItem, SessionSnapshot, SnapshotPart } from './session-snapshot.js';

/**
 * A session's activity (updated_at, recent events and metrics) is what reads show of its
 * history (the ops are in the outbox), so it is persisted lazily: at most this long after it
 * changed (by the periodic tick), or sooner when a read, passivation or shutdown asks.
 * Re-encoding up to recent_*_limit items on every turn was half of the workers' encoding time
 * under WebSocket load, and writing a snapshot per HTTP event doubled the LevelDB entries.
 */
export const ACTIVITY_PERSIST_MS = 1000;

/** When a turn persists the activity part: only when due, or whenever it changed (a read, shutdown). */
export type ActivityFlush = 'due' | 'all';

export interface ActorSettings {
  recent_events_limit: number;
  recent_metrics_limit: number;
}

/** What the gateway decided at registration, handed to the new actor. */
export interface RegisterInput {
  product: string;
  version: string;
  hostname: string | null;
  machine_id: string | null;
  parent_pid: number | null;
  local_id: string | null;
  server_id: string | null;
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
      },
      settings,
    );
    actor.coreDirty = true;
    // Created upstream already when the server answered in time; otherwise the create is the
    // session's first queued op, so the sync actor sends it before anything else.
    if (reg.server_id === null)
      actor.emit({ k: 'create', t: now, b: { product: reg.product, version: reg.version, machine_id: reg.machine_id, hostname: reg.hostname } });
    return actor;
  }

  /**
   * Applies one op. `raw` says where the op's own bytes are (op `index` of the MessagePack array
   * `bytes`, a WebSocket batch): an event or metric that goes upstream as it came is then queued
   * as a reference to those bytes instead of being re-encoded (see RawSegment).
   */
  apply<K extends ActorOpKind>(kind: K, body: OpBodies[K], now: number, raw?: { bytes: Uint8Array; index: number }): void {
    const s = this.snapshot;
    if (!s.active) throw new ProtocolError('session_ended', `session ${s.server_id ?? s.local_id} has ${s.crashed ? 'crashed' : 'ended'}; it takes no more ops`);
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
        s.active = false;
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
   * or, with `activity: 'all'`, whenever they changed.
   */
  endTurn(now: number, activity: ActivityFlush = 'due'): { ops: ChunkEntry[]; parts: SnapshotPart[] } {
    const ops = this.pending;
    this.pending = [];
    const parts: SnapshotPart[] = [];
    if (this.coreDirty) parts.push('core');
    if (this.stateDirty) parts.push('state');
    const since = this.activityDirtySince;
    if (since !== null && (activity === 'all' || now - since >= ACTIVITY_PERSIST_MS)) {
      trim(this.snapshot.events, this.settings.recent_events_limit);
      trim(this.snapshot.metrics, this.settings.recent_metrics_limit);
      parts.push('activity');
      this.activityDirtySince = null;
    }
    this.coreDirty = false;
    this.stateDirty = false;
    return { ops, parts };
  }

  /** Whether the actor holds anything not yet handed out for persisting. */
  get hasUnpersisted(): boolean {
    return this.coreDirty || this.stateDirty || this.activityDirtySince !== null || this.pending.length > 0;
  }

  private crash(reason: string, now: number): void {
    const s = this.snapshot;
    s.active = false;
    s.crashed = true;
    s.ended_at = now;
    this.emit({ k: 'crash', t: now, b: { reason } });
  }

  private recordEvent(b: JsonObject, now: number, raw?: { bytes: Uint8Array; index: number }): void {
    if (raw) this.emitRaw(raw, now);
    else this.emit({ k: 'event', t: now, b });
    this.remember(this.snapshot.events, { t: now, b }, this.settings.recent_events_limit);
  }

  private recordMetric(m: MetricBody, now: number, raw?: { bytes: Uint8Array; index: number }): void {
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
  }

  private remember(list: RecentItem[], item: RecentItem, limit: number): void {
    if (limit === 0) return;
    list.push(item);
    // Trimmed once per turn (endTurn), not per op: a shift per op would cost O(limit) each.
    if (list.length >= 2 * limit) trim(list, limit);
  }

  private emit(op: UpstreamOp): void {
    this.pending.push(op);
  }
}

function trim(list: RecentItem[], limit: number): void {
  if (list.length > limit) list.splice(0, list.length - limit);
}


