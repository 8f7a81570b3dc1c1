import type { Db } from '../outbox/store.js';
import { ALL_IDS, idKey, remapKey } from '../outbox/keys.js';
import { pack, unpack } from '../protocol/codec.js';

export interface SessionIds {
  local_id: string | null;
  server_id: string | null;
}

type Role = 'l' | 's';

/**
 * Addressing: every id a client may use (the local id, the server id, or both after a remap) →
 * the session number that keys the session everywhere inside the daemon. The gateway resolves
 * ids here before routing, so both ids of a remapped session reach the same actor forever.
 *
 * Persisted as `i!<id>` → [sn, role] (written with the registration or the remap) and loaded
 * whole at startup: it holds ids, not queue entries, so its size follows the sessions kept.
 */
export class Directory {
  private readonly byId = new Map<string, number>();
  private readonly bySn = new Map<number, SessionIds>();

  static async load(db: Db): Promise<Directory> {
    const dir = new Directory();
    for await (const [key, value] of db.iterator(ALL_IDS)) {
      const [sn, role] = unpack(value) as [number, Role];
      dir.link(key.slice(2), sn, role);
    }
    return dir;
  }

  get size(): number {
    return this.bySn.size;
  }

  resolve(id: string): number | undefined {
    return this.byId.get(id);
  }

  ids(sn: number): SessionIds | undefined {
    return this.bySn.get(sn);
  }

  sessionNumbers(): IterableIterator<number> {
    return this.bySn.keys();
  }

  /** Adds a new session; returns the writes that persist it (to go in its registration's batch). */
  add(sn: number, ids: SessionIds): Array<[string, Uint8Array]> {
    const puts: Array<[string, Uint8Array]> = [];
    if (ids.local_id) {
      this.link(ids.local_id, sn, 'l');
      puts.push([idKey(ids.local_id), pack([sn, 'l'])]);
    }
    if (ids.server_id) {
      this.link(ids.server_id, sn, 's');
      puts.push([idKey(ids.server_id), pack([sn, 's'])]);
    }
    return puts;
  }

  /** Forgets a session whose registration was never persisted. */
  remove(sn: number): void {
    const ids = this.bySn.get(sn);
    if (!ids) return;
    if (ids.local_id) this.byId.delete(ids.local_id);
    if (ids.server_id) this.byId.delete(ids.server_id);
    this.bySn.delete(sn);
  }

  /** The writes that record a remap; they go in the batch that consumes the create. */
  remapWrites(sn: number, serverId: string): Array<[string, Uint8Array]> {
    const localId = this.bySn.get(sn)?.local_id;
    const puts: Array<[string, Uint8Array]> = [[idKey(serverId), pack([sn, 's'])]];
    if (localId) puts.push([remapKey(localId), new TextEncoder().encode(serverId)]);
    return puts;
  }

  /** Applies a remap in memory, once its writes are durable. */
  setServerId(sn: number, serverId: string): void {
    this.link(serverId, sn, 's');
  }

  private link(id: string, sn: number, role: Role): void {
    this.byId.set(id, sn);
    const ids = this.bySn.get(sn) ?? { local_id: null, server_id: null };
    if (role === 'l') ids.local_id = id;
    else ids.server_id = id;
    this.bySn.set(sn, ids);
  }
}
