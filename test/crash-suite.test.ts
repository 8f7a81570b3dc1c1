/**
 * The crash suite (CONTRACT §5): the daemon runs as a child process; HTTP and WebSocket producers
 * stream numbered events and record every ack; the daemon is SIGKILLed at random moments and
 * restarted on the same port and store. At the end the upstream takes everything, and:
 * - every acked op reached the upstream (lost = 0), per-session order held;
 * - with the upstream down during the kills there are no duplicates at all;
 * - with it up, duplicates come only from deliveries whose record the kill cut off (in doubt),
 *   every one counted in /health's upstream.in_doubt across the kills (the lanes' send leases),
 *   and bounded by what can be in flight: sync_concurrency lanes x 16 pipelined records per kill.
 *
 * DATACAT_SOAK=1 runs many more kills (README, "Guarantees and how they are tested").
 */
import t from 'tap';
import { createServer } from 'node:net';
import { connect } from '../dist/src/client/index.js';
import { startFakeUpstream, type FakeUpstream } from './support/fake-upstream.js';
import { spawnDaemon, until, type ChildDaemon } from './support/daemon-harness.js';

const SOAK = process.env['DATACAT_SOAK'] === '1';
const KILLS = SOAK ? 12 : 3;
/** WebSocket events per session (the drain at the end takes most of the run's time). */
const WS_EVENTS = SOAK ? Infinity : 6000;
const SYNC_CONCURRENCY = 8;
const IN_FLIGHT_RECORDS = 16 + 1; // PIPELINED_WRITES in the sync actor, plus the request in flight

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** A seeded PRNG (mulberry32) so a failing run can be replayed with CRASH_SEED. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

interface Outcome {
  acked: number;
  lost: number;
  duplicates: number;
  orderBroken: number;
  /** /health upstream.in_doubt at the end: requests counted in doubt across every kill. */
  inDoubt: number;
}

async function crashRun(t: Tap.Test, upstream: FakeUpstream, upDuringKills: boolean, seed: number): Promise<Outcome> {
  const random = prng(seed);
  const dataDir = t.testdir();
  const port = await freePort();
  const args = ['--port', String(port), '--data-dir', dataDir, '--server-url', upstream.url, '--retry-base-ms', '50', '--retry-max-ms', '300', '--sync-concurrency', String(SYNC_CONCURRENCY)];
  let daemon: ChildDaemon = await spawnDaemon(t, args);
  const url = () => daemon.url;

  // WebSocket producer: the reference client resends what was not acked, exactly once.
  const client = connect({ url: `ws://127.0.0.1:${port}`, reconnectBaseMs: 30, reconnectMaxMs: 200 });
  client.on('error', () => undefined);
  const wsSessions = [await client.register({ product: 'crash-ws', version: '1' }), await client.register({ product: 'crash-ws', version: '2' })];
  // HTTP producers: one sequential producer per session; a request that fails is never resent,
  // so every acked number is unambiguous.
  const httpSessions: string[] = [];
  for (let i = 0; i < 2; i++) httpSessions.push((await daemon.api.ok<{ session_id: string }>('/register', { product: 'crash-http', version: String(i) })).session_id);
  const acked = new Map<string, number[]>([...httpSessions, ...wsSessions.map((s) => s.id)].map((id) => [id, []]));

  let stop = false;
  const http = httpSessions.map(async (id) => {
    for (let n = 0; !stop; n++) {
      try {
        const res = await fetch(`${url()}/event`, { method: 'POST', body: JSON.stringify({ session_id: id, name: 'h', data: { n } }) });
        if (res.status === 200) acked.get(id)!.push(n);
        else await new Promise((r) => setTimeout(r, 20));
      } catch {
        await new Promise((r) => setTimeout(r, 20)); // the daemon is down: this number is skipped
      }
    }
  });
  const ws = (async () => {
    for (let n = 0; !stop && n < WS_EVENTS; n++) {
      for (const s of wsSessions) {
        s.logEvent('w', { data: { n } });
        acked.get(s.id)!.push(n); // acked by the final flush: the client resends until it is
      }
      if (client.buffered + client.unacked > 4000) await client.waitForCapacity();
      // Spread over the kills (~2 s), so they land mid-stream.
      if (n % 20 === 0) await new Promise((r) => setTimeout(r, 5));
    }
  })();

  for (let k = 0; k < KILLS; k++) {
    await new Promise((r) => setTimeout(r, 300 + random() * 700));
    await daemon.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, random() * 200));
    daemon = await spawnDaemon(t, args);
  }
  await new Promise((r) => setTimeout(r, 300));
  stop = true;
  await Promise.all([...http, ws]);
  await client.flush();
  await client.close();
  if (!upDuringKills) await upstream.up();
  await daemon.api.ok('/flush');
  await until(async () => (await daemon.api.get('/health')).body.queue.depth === 0, 'the queue drained', 30_000);

  const out: Outcome = { acked: 0, lost: 0, duplicates: 0, orderBroken: 0, inDoubt: (await daemon.api.get('/health')).body.upstream.in_doubt };
  for (const [id, numbers] of acked) {
    const serverId = (await daemon.api.get(`/session?session_id=${id}`)).body.server_id as string;
    const delivered = upstream.sessions.get(serverId)!.ops.filter((o) => o.kind === 'event').map((o) => o.body.data.n as number);
    const seen = new Set(delivered);
    out.acked += numbers.length;
    out.lost += numbers.filter((n) => !seen.has(n)).length;
    out.duplicates += delivered.length - seen.size;
    // Per-session order: the first delivery of each number comes in increasing order.
    const first: number[] = [];
    const firstSeen = new Set<number>();
    for (const n of delivered) if (!firstSeen.has(n)) (firstSeen.add(n), first.push(n));
    out.orderBroken += first.filter((n, i) => i > 0 && n <= first[i - 1]!).length;
  }
  await daemon.kill('SIGTERM');
  return out;
}

const seed = Number(process.env['CRASH_SEED'] ?? Date.now() % 100_000);

t.test(`SIGKILLs while the upstream is down: nothing lost, order held, no duplicates (seed ${seed})`, async (t) => {
  const upstream = await startFakeUpstream({ startDown: true });
  t.teardown(() => upstream.close());
  const o = await crashRun(t, upstream, false, seed);
  t.comment(`acked=${o.acked} lost=${o.lost} duplicates=${o.duplicates} kills=${KILLS}`);
  t.ok(o.acked > 1000, `${o.acked} acked ops`);
  t.equal(o.lost, 0, 'lost');
  t.equal(o.orderBroken, 0, 'per-session order');
  t.equal(o.duplicates, 0, 'no duplicates at all');
});

t.test(`SIGKILLs while the upstream is up: nothing lost, order held, duplicates only in doubt (seed ${seed + 1})`, async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const o = await crashRun(t, upstream, true, seed + 1);
  t.comment(`acked=${o.acked} lost=${o.lost} duplicates=${o.duplicates} in_doubt=${o.inDoubt} kills=${KILLS}`);
  t.ok(o.acked > 1000, `${o.acked} acked ops`);
  t.equal(o.lost, 0, 'lost');
  t.equal(o.orderBroken, 0, 'per-session order');
  t.ok(o.duplicates <= o.inDoubt, `every duplicate counted: ${o.duplicates} duplicates, upstream.in_doubt ${o.inDoubt}`);
  t.ok(o.duplicates <= KILLS * SYNC_CONCURRENCY * IN_FLIGHT_RECORDS, `${o.duplicates} duplicates: at most what a kill can leave unrecorded`);
});
