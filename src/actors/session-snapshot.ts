import { pack, unpack } from '../protocol/codec.js';
import type { JsonObject } from '../protocol/ops.js';

/** An event or metric as kept for offline reads: the upstream body plus its receive time. */
export interface RecentItem {
  t: number;
  b: JsonObject;
}

/**
 * Everything a session actor knows, persisted under `s!<sn>` in the same batch as the outbox
 * chunks of the turn that produced it, so a restart (or a worker restart) resumes exactly
 * where the acked ops left it.
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
}

export function encodeSnapshot(s: SessionSnapshot): Uint8Array {
  return pack(s);
}

export function decodeSnapshot(bytes: Uint8Array): SessionSnapshot {
  return unpack(bytes) as SessionSnapshot;
}

/** The first session id: the server's when known, else the local one. */
export function primaryId(s: Pick<SessionSnapshot, 'server_id' | 'local_id'>): string {
  return (s.server_id ?? s.local_id)!;
}
