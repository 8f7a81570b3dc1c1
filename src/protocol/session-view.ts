/**
 * A session as the daemon answers reads of it: GET /session and GET /sessions, and the WebSocket
 * `session` frame (CONTRACT §2). Rendered by src/gateway/session-view.ts; the client's
 * SessionDetails is this type.
 */
export interface SessionView {
  id: string;
  server_id: string | null;
  local_id: string | null;
  product: string;
  version: string;
  created_at: string;
  updated_at: string;
  ended_at?: string;
  active: boolean;
  crashed: boolean;
  hung: boolean;
  heartbeat_paused: boolean;
  synced_with_server: boolean;
  state: Record<string, unknown>;
  events: Array<Record<string, unknown>>;
  metrics: Array<Record<string, unknown>>;
  last_heartbeat: string | null;
  hostname: string | null;
  machine_id: string | null;
  parent_pid: number | null;
}
