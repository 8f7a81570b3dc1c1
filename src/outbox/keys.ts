/**
 * The LevelDB key layout. Everything the daemon persists lives in one store, so that one
 * write batch can carry an op's outbox entry, the session snapshot, the client's high-water
 * mark and the counters together (DESIGN invariant 1).
 *
 * Sessions are addressed inside the store by their session number `sn`, a dense integer given
 * at registration. Keys never contain client-supplied strings, so no id can collide with or
 * escape its prefix, and the per-session outbox prefix sorts in op order by construction.
 *
 *   meta!version            store format version (FORMAT_VERSION)
 *   k!counters              Counters (see counters.ts), rewritten in every batch
 *   q!<sn>!<seq>            outbox chunk: ops of one session from one round; seq = first op's seq
 *   c!<sn>                  delivery cursor inside the session's head chunk
 *   l!<sn>                  send lease: the session's lane may have up to N sends past its cursor unrecorded
 *   d!<seq>                 dead letter (one op)
 *   s!<sn>                  session snapshot: core (status, times, ids; written when it changes)
 *   t!<sn>                  session snapshot: merged state (written when the state changes)
 *   g!<sn>                  session snapshot: counter and histogram aggregates (written when they change)
 *   r!<sn>                  session snapshot: activity, i.e. updated_at and the recent events and metrics (written lazily)
 *   a!<sn>                  present while the session is active (startup re-activates these)
 *   i!<id>                  session id (local or server) → sn
 *   m!<local id>            remap: local id → server id
 *   h!<client id>           WebSocket client high-water mark
 */
export const FORMAT_VERSION = 1;

const SN_WIDTH = 8; // hex digits: 4 G sessions
const SEQ_WIDTH = 12; // hex digits: 2^48 ops

export const META_VERSION = 'meta!version';
export const COUNTERS = 'k!counters';

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}

export const snKey = (sn: number): string => hex(sn, SN_WIDTH);

export const chunkKey = (sn: number, seq: number): string => `q!${hex(sn, SN_WIDTH)}!${hex(seq, SEQ_WIDTH)}`;
/** Bounds that select exactly one session's outbox chunks (for `gt`/`lt` iteration). */
export const chunkRange = (sn: number): { gt: string; lt: string } => ({ gt: `q!${hex(sn, SN_WIDTH)}!`, lt: `q!${hex(sn, SN_WIDTH)}!~` });
export const ALL_CHUNKS = { gt: 'q!', lt: 'q!~' };
/**
 * A replayed dead letter's chunk: `q!<sn>!<place>!<seq>`. It takes a fresh `seq` (its number from
 * now on: the cursor and any new dead letter go by it), and `place` = its original number − 1
 * puts it after every chunk of ops numbered before it and before the chunk that held it, should
 * that chunk still be queued. Under its original key it overwrote that chunk, and lost the
 * ops still queued in it.
 */
export const replayedChunkKey = (sn: number, originalSeq: number, seq: number): string =>
  `q!${hex(sn, SN_WIDTH)}!${hex(Math.max(originalSeq - 1, 0), SEQ_WIDTH)}!${hex(seq, SEQ_WIDTH)}`;
export function parseChunkKey(key: string): { sn: number; seq: number } {
  const rest = key.slice(3 + SN_WIDTH);
  const own = rest.length > SEQ_WIDTH ? rest.slice(SEQ_WIDTH + 1) : rest;
  return { sn: parseInt(key.slice(2, 2 + SN_WIDTH), 16), seq: parseInt(own, 16) };
}

export const cursorKey = (sn: number): string => `c!${hex(sn, SN_WIDTH)}`;

/**
 * A lane's send lease, written before its first send of a run and deleted when the run ends with
 * every delivery recorded. One left behind by a kill says those sends may have reached the server
 * unrecorded: the restart counts them in doubt (SyncActor.countLeftLeases).
 */
export const leaseKey = (sn: number): string => `l!${hex(sn, SN_WIDTH)}`;
export const ALL_LEASES = { gt: 'l!', lt: 'l!~' };
export const parseLeaseKey = (key: string): number => parseInt(key.slice(2), 16);

export const deadKey = (seq: number): string => `d!${hex(seq, SEQ_WIDTH)}`;
export const ALL_DEAD = { gt: 'd!', lt: 'd!~' };
export const parseDeadKey = (key: string): number => parseInt(key.slice(2), 16);

export const snapshotKey = (sn: number): string => `s!${hex(sn, SN_WIDTH)}`;
export const stateKey = (sn: number): string => `t!${hex(sn, SN_WIDTH)}`;
export const aggregatesKey = (sn: number): string => `g!${hex(sn, SN_WIDTH)}`;
export const activityKey = (sn: number): string => `r!${hex(sn, SN_WIDTH)}`;
export const ALL_SNAPSHOTS = { gt: 's!', lt: 's!~' };
export const parseSnapshotKey = (key: string): number => parseInt(key.slice(2), 16);

export const activeKey = (sn: number): string => `a!${hex(sn, SN_WIDTH)}`;
export const ALL_ACTIVE = { gt: 'a!', lt: 'a!~' };
export const parseActiveKey = (key: string): number => parseInt(key.slice(2), 16);

// Ids are client-visible strings; they appear only after the last '!' of their prefix and are
// read back with slice(2), so any character in them is harmless.
export const idKey = (id: string): string => `i!${id}`;
export const ALL_IDS = { gt: 'i!', lt: 'i"' };

export const remapKey = (localId: string): string => `m!${localId}`;
export const ALL_REMAPS = { gt: 'm!', lt: 'm"' };

export const clientMarkKey = (clientId: string): string => `h!${clientId}`;
