import type { SessionIds } from '../actors/directory.js';
import type { RecentItem, SessionSnapshot } from '../actors/session-snapshot.js';
import type { SessionView } from '../protocol/session-view.js';

const iso = (ms: number): string => new Date(ms).toISOString();
const withTimestamp = (item: RecentItem): Record<string, unknown> => ({ timestamp: iso(item.t), ...item.b });

/**
 * Renders a durable snapshot for a reader. `id` is the id the caller asked with, so a DataCat
 * client that kept its local id sees its own id. Ids come from the directory, which learns a
 * remap the moment it is durable, even if the actor has not rewritten its snapshot since.
 * `synced_with_server`: the server has the session and nothing of it is waiting in the outbox.
 */
export function renderSession(snap: SessionSnapshot, ids: SessionIds, askedId: string | null, pending: boolean): SessionView {
  const serverId = ids.server_id ?? snap.server_id;
  const view: SessionView = {
    id: askedId ?? serverId ?? ids.local_id ?? snap.local_id!,
    server_id: serverId,
    local_id: ids.local_id ?? snap.local_id,
    product: snap.product,
    version: snap.version,
    created_at: iso(snap.created_at),
    updated_at: iso(snap.updated_at),
    active: snap.active,
    crashed: snap.crashed,
    hung: snap.hung,
    heartbeat_paused: snap.heartbeat_paused,
    synced_with_server: serverId !== null && !pending,
    state: snap.state,
    events: snap.events.map(withTimestamp),
    metrics: snap.metrics.map(withTimestamp),
    last_heartbeat: snap.last_heartbeat !== null ? iso(snap.last_heartbeat) : null,
    hostname: snap.hostname,
    machine_id: snap.machine_id,
    parent_pid: snap.parent_pid,
  };
  if (snap.ended_at !== null) view.ended_at = iso(snap.ended_at);
  return view;
}
