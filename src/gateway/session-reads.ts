import type { Db } from '../outbox/store.js';
import { ALL_SNAPSHOTS, parseSnapshotKey, snapshotKey } from '../outbox/keys.js';
import type { Directory } from '../actors/directory.js';
import { decodeSnapshot } from '../actors/session-snapshot.js';
import { renderSession, type SessionView } from './session-view.js';

/**
 * Session reads answer from the durable snapshots in LevelDB: they work offline, survive
 * restarts, and show exactly what has been acked. No worker round trip is needed.
 */
export class SessionReads {
  constructor(
    private readonly db: Db,
    private readonly directory: Directory,
    private readonly isPending: (sn: number) => boolean,
  ) {}

  async get(id: string): Promise<SessionView | null> {
    const sn = this.directory.resolve(id);
    if (sn === undefined) return null;
    const bytes = await this.db.get(snapshotKey(sn));
    const ids = this.directory.ids(sn);
    if (!bytes || !ids) return null;
    return renderSession(decodeSnapshot(bytes), ids, id, this.isPending(sn));
  }

  async list(): Promise<SessionView[]> {
    const out: SessionView[] = [];
    for await (const [key, bytes] of this.db.iterator(ALL_SNAPSHOTS)) {
      const sn = parseSnapshotKey(key);
      const ids = this.directory.ids(sn);
      if (ids) out.push(renderSession(decodeSnapshot(bytes), ids, null, this.isPending(sn)));
    }
    return out;
  }
}
