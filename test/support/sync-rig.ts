import { openStore, type Db } from '../../dist/src/outbox/store.js';
import { CommitQueue } from '../../dist/src/outbox/commit-queue.js';
import { decodeCounters } from '../../dist/src/outbox/counters.js';
import { encodeChunk, type UpstreamOp } from '../../dist/src/outbox/chunk.js';
import { Directory } from '../../dist/src/actors/directory.js';
import { SyncActor } from '../../dist/src/actors/sync-actor.js';
import { Reclaimer } from '../../dist/src/outbox/reclaimer.js';
import { UpstreamClient } from '../../dist/src/upstream/upstream-client.js';
import type { FakeUpstream } from './fake-upstream.js';

/**
 * A sync actor over a real store and a real upstream client, with sessions queued by hand.
 * `wrapDb` wraps the store (a failing disk); the commit queue then recovers after a failed write
 * as the daemon's round coordinator makes it (once it is idle).
 */
export async function syncRig(t: { testdir(): string; teardown(fn: () => unknown): void }, upstream: FakeUpstream, wrapDb?: (db: Db) => Db) {
  const raw = await openStore(t.testdir());
  const db = wrapDb ? wrapDb(raw) : raw;
  const commits = new CommitQueue(db, decodeCounters(undefined), { sync: false });
  if (wrapDb) commits.on('failed', () => void commits.idle().then(() => commits.recover()));
  const directory = new Directory();
  const settings = { server_url: upstream.url, retry_base_ms: 40, retry_max_ms: 200, sync_concurrency: 4, max_batch_size: 100 };
  const client = new UpstreamClient({ ...settings, api_key: null, enable_compression: false, tls_insecure_skip_verify: false, upstream_timeout_ms: 2000 });
  const sync = new SyncActor(db, commits, directory, client, settings, () => undefined, new Reclaimer(db));
  t.teardown(async () => {
    await sync.close();
    await raw.close();
  });
  const queue = async (sn: number, ops: UpstreamOp[]): Promise<void> => {
    directory.add(sn, { local_id: `local-session-1-${sn}`, server_id: null });
    await commits.submit({ chunks: [{ sn, count: ops.length, value: encodeChunk(ops) }] });
  };
  return { db, commits, directory, sync, queue };
}
