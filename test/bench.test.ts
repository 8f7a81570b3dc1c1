/**
 * Smoke test of the bench harness (bench/, CONTRACT.md §6): the CLI runs end to end against a
 * real daemon and writes the contract's JSON with sane values. It checks shape and sanity, never
 * speed: performance is measured by `npm run bench`, not by a timed test. ~10 s in all.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const CLI = join(ROOT, 'dist/bench/cli.js');

function runBench(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

const CONTRACT_KEYS = ['scenario', 'ops_per_sec', 'latency_ms', 'rss_mb', 'params'];

/** The assertions checkCommon needs (any tap test object has them). */
interface Asserts {
  equal(...args: any[]): unknown;
  ok(...args: any[]): unknown;
  notOk(...args: any[]): unknown;
}

function checkCommon(t: Asserts, out: any, scenario: string): void {
  t.equal(out.scenario, scenario);
  for (const key of CONTRACT_KEYS) t.ok(key in out, `has ${key}`);
  t.ok(Number.isFinite(out.ops_per_sec) && out.ops_per_sec > 0, `ops_per_sec > 0 (${out.ops_per_sec})`);
  const l = out.latency_ms;
  t.ok(l.p50 > 0 && l.p50 <= l.p99 && l.p99 <= l.p999, `p50 <= p99 <= p999 (${l.p50}, ${l.p99}, ${l.p999})`);
  t.ok(l.p999 < 60_000, 'latencies in milliseconds, below a minute');
  t.ok(out.rss_mb > 10 && out.rss_mb < 8192, `rss_mb plausible (${out.rss_mb})`);
  t.equal(out.params.seconds, 1);
  t.equal(out.params.half_peak, false);
  t.equal(out.params.daemon_opts.queue_max_bytes, String(2 ** 40), 'the outbox bound is out of reach of the run');
  t.notOk('half_peak' in out, 'no half_peak with --no-half-peak');
}

const notBuilt = !existsSync(CLI) && 'dist/bench/cli.js is not built (npm run build)';

t.test('http-ingest writes the contract JSON', { skip: notBuilt }, async (t) => {
  const file = join(t.testdir(), 'http.json');
  const res = await runBench(['http-ingest', '--seconds', '1', '--connections', '4', '--warmup', '0.5', '--no-half-peak', '--out', file]);
  t.equal(res.code, 0, res.stderr);
  const out = JSON.parse(readFileSync(file, 'utf8'));
  checkCommon(t, out, 'http-ingest');
  t.equal(out.params.connections, 4);
  t.notOk('ratio' in out, 'no baseline for http-ingest');
  t.match(res.stdout, /check: queue depth [\d,]+ = acked/, 'acked = persisted check held');
  t.notMatch(res.stdout, /WARNING/);
});

t.test('ws-ingest writes the contract JSON with the bare-sink baseline', { skip: notBuilt }, async (t) => {
  const file = join(t.testdir(), 'ws.json');
  const res = await runBench(['ws-ingest', '--seconds', '1', '--producers', '2', '--warmup', '0.5', '--no-half-peak', '--out', file]);
  t.equal(res.code, 0, res.stderr);
  const out = JSON.parse(readFileSync(file, 'utf8'));
  checkCommon(t, out, 'ws-ingest');
  t.ok(out.baseline_ops_per_sec > 0, 'baseline measured');
  t.ok(Math.abs(out.ratio - out.ops_per_sec / out.baseline_ops_per_sec) < 0.001, 'ratio = ops / baseline');
  t.equal(out.params.producers, 2);
  t.equal(out.params.window_frames, 200, "the client's window: 20 000 ops in frames of 100");
  t.match(res.stdout, /check: queue depth [\d,]+ = acked/, 'acked = persisted check held');
  t.notMatch(res.stdout, /WARNING/);
});
