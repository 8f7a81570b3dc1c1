/**
 * A seeded, reproducible fuzzer over the daemon's WebSocket frames and HTTP bodies.
 *
 * WHAT: every case is built from (seed, index) alone by test/support/fuzz/cases.ts: a category,
 * then one mutation of a valid input, and the outcome that mutation must get, derived from the
 * mutation (README.md "Errors", docs/protocol.md "Errors"): an HTTP status and `error` code, a
 * per-op code in the WebSocket acks (or acceptance), or a WebSocket close code. Never a 5xx.
 *
 * THE MIX (per 1000 cases; the default run is 100 000 cases over 3 seeds):
 *   560 ws-op     one op inside an `ops` frame (up to max_ops_per_frame per frame; records,
 *                 plain or non-minimal MessagePack): wrong types, missing/null/empty fields,
 *                 non-finite numbers, bad ints, strings/keys/arrays past their limits, nesting
 *                 past max_depth, constructor/prototype keys (forbidden_key), __proto__ keys
 *                 (accepted: msgpackr renames them), unknown ops, unknown or ended sessions,
 *                 non-map ops and bad q (refused without a q), resent q (skipped), valid ops
 *                 (also exactly at every limit, and with junk in unknown fields)
 *   200 batch-op  the same inside `batch` frames (validated in the session's worker)
 *   200 http      the same as JSON bodies, plus truncated JSON, random bytes, trailing
 *                 garbage, non-object JSON, empty bodies, bodies at/over max_body_bytes (with
 *                 and without content-length), unknown paths, wrong methods, reads of ids that
 *                 do not exist, bad /queue limits, valid reads, a register→end→late-op lifecycle
 *    20 read      get_session of known, unknown and malformed ids, with good and bad request ids
 *    10 frame     whole frames that refuse or accept all their ops: ops frames past
 *                 max_ops_per_frame or exactly max_frame_bytes; batches with a wrong n, a bin
 *                 that is not MessagePack or not an array, an unknown or ended session, n past
 *                 the limit, or overlapping the mark (resent ops skipped)
 *    10 kill      one connection each: random bytes (1007/1008 by the decoder's verdict),
 *                 truncated frames and trailing bytes (1007), text frames (1003), frames over
 *                 max_frame_bytes (1009), non-map frames, bad or missing `t`, `ops` not an
 *                 array, broken batch envelopes (1008), a client that drops before its welcome
 * The daemon runs as a child process with small limits (support/fuzz/limits.ts: 64 KiB bodies
 * and frames, 200 ops per frame, depth 16, strings 4096, names 64) and the upstream down.
 *
 * CHECKS: every case gets its expected outcome; three good sessions (HTTP, the reference client,
 * raw batch frames) run alongside and end exactly as they set themselves (state, recent events
 * and metrics, queued op count); the daemon keeps its pid, /health is 200 with every worker
 * alive and none restarted; Object.prototype is clean; the heap after a forced GC is back within
 * +30 % or +20 MB of its level after warm-up (RSS is reported).
 *
 * REPRODUCE: a failure prints its seed, index and case; re-run just that case with
 *   FUZZ_SEED=<seed> FUZZ_ONLY=<index> npx tap test/fuzz.test.ts
 * (FUZZ_ONLY takes lists and ranges: 5,17-20). FUZZ_CASES=N sets the number of cases (split
 * over the seeds). DATACAT_SOAK=1 runs seed after seed (the defaults, then fresh random seeds,
 * each printed) for FUZZ_SOAK_SECONDS (default 600) with 200 000 cases per seed, checking memory
 * after each: `DATACAT_SOAK=1 npx tap --timeout=0 test/fuzz.test.ts`.
 *
 * REGRESSIONS: test/fuzz-regressions.json keeps cases that once failed (a seed and index, or a
 * literal scenario), replayed on every run. Bugs still open are asserted as tap TODOs (reported,
 * not failing) until fixed; their inputs are kept out of the random cases meanwhile.
 */
import t from 'tap';
import type { Ctx } from './support/fuzz/drivers.js';
import { FuzzDaemon, type Memory } from './support/fuzz/daemon.js';
import { BatchProducer, ClientProducer, HttpProducer, type GoodProducer } from './support/fuzz/good.js';
import { LIVE_SESSIONS, live } from './support/fuzz/op-cases.js';
import { Report } from './support/fuzz/report.js';
import { readSettings } from './support/fuzz/settings.js';
import { runCases, setupSessions } from './support/fuzz/run.js';
import { runRegressions } from './support/fuzz/regressions.js';

const settings = readSettings();
const mb = (bytes: number): string => `${(bytes / 1048576).toFixed(1)} MB`;
const describeMemory = (m: Memory): string => `main heap ${mb(m.heapUsed)} (+${mb(m.external)} external), workers' heaps ${mb(m.workersHeapUsed)}, rss ${mb(m.rss)}`;

t.test('fuzz: seeded cases over WebSocket frames and HTTP bodies', async (t) => {
  if (settings.soak) t.setTimeout(0);
  const started = Date.now();
  const daemon = await FuzzDaemon.start(t, t.testdir());
  const { url } = daemon;
  // If the daemon dies, say how (its last words), instead of letting every driver time out.
  let finished = false;
  void daemon.child.exited.then(({ code, signal }) => {
    if (!finished) t.comment(`THE DAEMON EXITED (code ${code}, signal ${signal}); its stderr ends with:\n${daemon.child.stderr.slice(-25).join('\n')}`);
  });
  const ids = await setupSessions(url);
  const report = new Report();

  const producers: GoodProducer[] = [new HttpProducer(url), new ClientProducer(url, 'good-client'), new BatchProducer(url, 'good-batch')];
  await Promise.all(producers.map((p) => p.start()));
  let stopProducers = false;
  const producing = producers.map((p) => p.run(() => stopProducers));
  t.teardown(() => {
    stopProducers = true;
    for (const p of producers) p.abort();
  });

  let baseline: Memory | null = null;
  const samples: string[] = [];
  const soakUntil = settings.soak ? started + settings.soak.seconds * 1000 : 0;
  const seeds: number[] = [];
  for (const seed of settings.seeds) {
    if (settings.soak && seeds.length > 0 && Date.now() > soakUntil) break;
    seeds.push(seed);
    const seedStart = Date.now();
    const ctx: Ctx = { url, ids, report, runId: `s${seed}` };
    await runCases(ctx, seed, settings.indices(seed), async () => {
      if (baseline === null) {
        baseline = await daemon.memory();
        samples.push(`baseline after warm-up: ${describeMemory(baseline)}`);
      }
    });
    t.comment(`seed ${seed} (0x${seed.toString(16)}): done in ${((Date.now() - seedStart) / 1000).toFixed(1)} s`);
    if (settings.soak) {
      const m = await daemon.memory();
      samples.push(`after seed ${seed}: ${describeMemory(m)}`);
      t.comment(samples.at(-1)!);
    }
    if (report.failures.length > 0 && settings.soak) break;
  }
  const fuzzSeconds = (Date.now() - started) / 1000;

  stopProducers = true;
  await Promise.all(producing);
  await Promise.all(producers.map((p) => p.stop()));

  t.comment(report.summary());
  for (const [reason, n] of report.skipped) t.comment(`not sent (${reason}): ${n}`);
  for (const line of report.lines()) t.comment(line);
  t.equal(report.failures.length, 0, `every case gets its expected outcome (seeds ${seeds.join(', ')})`, { failures: report.failures.slice(0, 10) });
  if (!settings.only && !settings.soak) t.ok(report.cases >= settings.casesPerSeed * settings.seeds.length, `${report.cases} cases run`);

  // The daemon is the same process, healthy, with every worker alive.
  t.ok(daemon.alive, 'the daemon process is still running');
  const health = (await (await fetch(`${url}/health`)).json()) as any;
  t.equal(health.status, 'ok', '/health answers ok');
  t.equal(health.pid, daemon.pid, 'same pid as at start');
  t.equal(health.workers.alive, health.workers.size, 'every worker alive');
  t.equal(health.workers.restarts, 0, 'no worker restarted');
  t.equal(health.queue.dead_letters, 0, 'no dead letters');
  t.same(await daemon.prototypePollution(), [], 'Object.prototype untouched in the daemon');

  // The fuzz sessions are still readable: every queued op decodes.
  for (let i = 0; i < LIVE_SESSIONS; i++) {
    const q = await fetch(`${url}/queue?session_id=${encodeURIComponent(ids.get(live(i))!)}&limit=10000`);
    t.equal(q.status, 200, `GET /queue of fuzz session ${i} answers 200`);
    await q.arrayBuffer();
    const view = await (await fetch(`${url}/session?session_id=${encodeURIComponent(ids.get(live(i))!)}`)).text();
    if (process.env['FUZZ_DEBUG']) t.comment(`fuzz session ${i}: ${view.length} bytes as JSON, state ${JSON.stringify(JSON.parse(view).state).length} bytes`);
  }
  t.equal((await fetch(`${url}/queue?limit=10000`)).status, 200, 'GET /queue of everything answers 200');
  t.equal((await fetch(`${url}/sessions`)).status, 200, 'GET /sessions answers 200');

  // The good sessions saw nothing of it.
  for (const p of producers) {
    t.ok(p.rounds >= 5, `good ${p.name} session made progress (${p.rounds} rounds)`);
    t.same(await p.check(), [], `good ${p.name} session: exactly what it set (${p.rounds} rounds)`);
  }

  // Memory comes back: settle, full GC, compare with the baseline after warm-up.
  await new Promise((r) => setTimeout(r, 2000));
  const after = await daemon.memory();
  const base = baseline ?? after;
  samples.push(`after the run and a full GC: ${describeMemory(after)}`);
  t.comment(`memory: ${samples.join('; ')}`);
  const allowed = Math.max(base.heapUsed * 1.3, base.heapUsed + 20 * 1048576);
  t.ok(after.heapUsed <= allowed, `heap back within +30 % or +20 MB of the baseline (${mb(base.heapUsed)} → ${mb(after.heapUsed)}, allowed ${mb(allowed)})`);
  t.comment(`fuzz time: ${fuzzSeconds.toFixed(1)} s for ${report.cases} cases (${Math.round(report.cases / fuzzSeconds)} cases/s)`);

  finished = true;
});

t.test('regressions: inputs that once failed (test/fuzz-regressions.json)', { jobs: 3 }, async (t) => {
  await runRegressions(t);
});
