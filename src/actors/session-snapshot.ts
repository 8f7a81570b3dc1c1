import { pack, unpack } from '../protocol/codec.js';
import { activityKey, aggregatesKey, snapshotKey, stateKey } from '../outbox/keys.js';
import { emptyAggregates, type Aggregates } from './metric-aggregates.js';
import type { JsonObject } from '../protocol/ops.js';

/** An event or metric as kept for offline reads: the upstream body plus its receive time. */
export interface RecentItem {
  t: number;
  b: JsonObject;
}

/**
 * Everything a session actor knows. Its core and state are persisted in the same batch as the
 * outbox chunks of the turn that changed them, so a restart (or a worker restart) resumes
 * exactly where the acked ops left it; see `SnapshotPart` for how it is split.
 */
export interface SessionSnapshot {
  v: 1;
  sn: number;
  /** `local-session-…` when the session was created offline, else null. */
  local_id: string | null;
  /** The DataCat server's id: set at registration when online, or by the remap later. */
  server_id: string | null;
  product: string;
  version: string;
  hostname: string | null;
  machine_id: string | null;
  parent_pid: number | null;
  created_at: number;
  updated_at: number;
  ended_at: number | null;
  active: boolean;
  crashed: boolean;
  hung: boolean;
  heartbeat_paused: boolean;
  /** Last heartbeat, or registration time before the first one (the hang timer starts there). */
  last_heartbeat: number | null;
  state: JsonObject;
  events: RecentItem[];
  metrics: RecentItem[];
  /**
   * Where the recent lists stand against the outbox: [receive time, n] of the newest event or
   * metric queued upstream that they include, n counting the ones queued at that same
   * millisecond. Persisted with them (the activity part), so an actor loaded from a snapshot that
   * is behind its outbox (after a crash) knows which queued ops to take back (see
   * SessionActor.recoverActivity).
   */
  activity_through: [t: number, n: number];
  /** Counter and histogram aggregates (metric-aggregates.ts). */
  aggregates: Aggregates;
}

/**
 * A snapshot is persisted in parts, each written only when it changed, so that the cost of a
 * turn follows what the turn did: an event neither re-encodes the merged state nor the recent
 * history (up to recent_*_limit items), nor writes anything but its outbox chunk.
 *
 * - core (`s!<sn>`): ids, status (active, crashed, hung, ended_at), heartbeat bookkeeping;
 *   written with the turn that changed it, in the same batch as the turn's outbox chunk.
 * - state (`t!<sn>`): the merged state; written with the turn that changed it, likewise.
 * - aggregates (`g!<sn>`): counter totals and histogram buckets; written with the turn that
 *   changed them, likewise (an acked delta survives a crash).
 * - activity (`r!<sn>`): `updated_at` and the recent events and metrics. These are what reads
 *   show of the session's history (the ops themselves are in the outbox), so they are persisted
 *   lazily: at most `ACTIVITY_PERSIST_MS` after they changed, before any read of the session, on
 *   passivation and at shutdown. After a crash they may be that much behind; the actor then
 *   takes the newer ops back from the session's newest outbox chunks when it is loaded (events
 *   and metrics already delivered upstream and deleted from the outbox in that last second stay
 *   missing from reads).
 */
export type SnapshotPart = 'core' | 'state' | 'aggregates' | 'activity';

export const SNAPSHOT_KEYS: Record<SnapshotPart, (sn: number) => string> = { core: snapshotKey, state: stateKey, aggregates: aggregatesKey, activity: activityKey };

/** How many parts a snapshot has (the length of snapshotKeys). */
export const SNAPSHOT_PARTS = 4;

/** The parts' keys in load order: [core, state, aggregates, activity]. */
export function snapshotKeys(sn: number): [string, string, string, string] {
  return [snapshotKey(sn), stateKey(sn), aggregatesKey(sn), activityKey(sn)];
}

interface Activity {
  updated_at: number;
  events: RecentItem[];
  metrics: RecentItem[];
  through: [number, number];
}

type Core = Omit<SessionSnapshot, 'state' | 'events' | 'metrics' | 'updated_at' | 'aggregates' | 'activity_through'>;

export function encodePart(s: SessionSnapshot, part: SnapshotPart): Uint8Array {
  switch (part) {
    case 'state':
      return pack(s.state);
    case 'aggregates':
      return pack(s.aggregates);
    case 'activity':
      return pack({ updated_at: s.updated_at, events: s.events, metrics: s.metrics, through: s.activity_through } satisfies Activity);
    case 'core': {
      const { state: _state, events: _events, metrics: _metrics, updated_at: _updated, aggregates: _aggregates, activity_through: _through, ...core } = s;
      return pack(core satisfies Core);
    }
  }
}

/** Rebuilds a snapshot from its parts (in snapshotKeys order); missing parts are empty. */
export function decodeSnapshot(core: Uint8Array, state?: Uint8Array, aggregates?: Uint8Array, activity?: Uint8Array): SessionSnapshot {
  const c = unpack(core) as Core;
  const a = activity ? (unpack(activity) as Partial<Activity> & Omit<Activity, 'through'>) : { updated_at: c.created_at, events: [], metrics: [] };
  return {
    ...c,
    updated_at: a.updated_at,
    state: state ? (unpack(state) as JsonObject) : {},
    events: a.events,
    metrics: a.metrics,
    // No activity part: nothing was kept yet. One written before `through` existed: everything
    // up to its updated_at is in it.
    activity_through: a.through ?? (activity ? [a.updated_at, Number.MAX_SAFE_INTEGER] : [0, 0]),
    aggregates: aggregates ? (unpack(aggregates) as Aggregates) : emptyAggregates(c.created_at),
  };
}

/** The first session id: the server's when known, else the local one. */
export function primaryId(s: Pick<SessionSnapshot, 'server_id' | 'local_id'>): string {
  return (s.server_id ?? s.local_id)!;
}
