import type { Db } from '../outbox/store.js';
import { ALL_SNAPSHOTS, parseSnapshotKey } from '../outbox/keys.js';
import type { Directory } from '../actors/directory.js';
import type { RoundCoordinator } from '../actors/round-coordinator.js';
import { decodeSnapshot, snapshotKeys } from '../actors/session-snapshot.js';
import type { SessionView } from '../protocol/session-view.js';
import { renderSession } from './session-view.js';

/**
 * Session reads answer from the snapshots in LevelDB: they work offline, survive restarts, and
 * need no worker round trip to render. Before reading, the session's actor is asked to persist
 * what it keeps lazily (its recent events and metrics), through a round like any op: a read
 * therefore sees every op acked before it.
 */
export class SessionReads {
  constructor(
    private readonly db: Db,
    private readonly directory: Directory,
    private readonly rounds: RoundCoordinator,
    private readonly isPending: (sn: number) => boolean,
  ) {}

  async get(id: string): Promise<SessionView | null> {
    const sn = this.directory.resolve(id);
    if (sn === undefined) return null;
    await this.rounds.persist(sn, Date.now());
    const [core, ...parts] = await this.db.getMany(snapshotKeys(sn));
    const ids = this.directory.ids(sn);
    if (!core || !ids) return null;
    return renderSession(decodeSnapshot(core, ...parts), ids, id, this.isPending(sn));
  }

  async list(): Promise<SessionView[]> {
    // Resident actors persist in the tick; sessions whose stored lists may be behind their outbox
    // (see RoundCoordinator.persist) are loaded and caught up in the same round.
    const rt = Date.now();
    const behind = [...this.directory.sessionNumbers()].filter((sn) => !this.rounds.isResident(sn) && !this.rounds.storeIsCurrent(sn));
    await Promise.all([this.rounds.tick('all'), ...behind.map((sn) => this.rounds.persist(sn, rt))]);
    const out: SessionView[] = [];
    for await (const [key, core] of this.db.iterator(ALL_SNAPSHOTS)) {
      const sn = parseSnapshotKey(key);
      const ids = this.directory.ids(sn);
      if (!ids) continue;
      const [, ...parts] = await this.db.getMany(snapshotKeys(sn));
      out.push(renderSession(decodeSnapshot(core, ...parts), ids, null, this.isPending(sn)));
    }
    return out;
  }
}
