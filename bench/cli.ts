/**
 * `npm run bench -- <scenario> [flags]` (CONTRACT.md §6; flags in args.ts).
 *
 * Orchestration only: every measured party runs in its own process so none of them steals the
 * others' event loop: the daemon (bin/datacat-daemon, as users run it), the bare sink, the fake
 * upstream, and the load generator, which reports progress and its result as JSON lines.
 *
 * Runs, in order:
 *   ws-ingest:  bare sink (baseline) → daemon at peak → daemon at 50% of that peak
 *   http-ingest: daemon at peak → daemon at 50% of that peak
 * Each daemon run gets a fresh daemon and data dir, and ends with a check that the daemon's
 * queue depth equals what the generator saw acked (acked = persisted).
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { formatMix, parseArgs, USAGE, UsageError, type BenchArgs } from './args.js';
import { benchScript, eachLine, jsonLine, spawnTracked, stopChild, waitForJsonLine } from './children.js';
import { closedPort, cpuBetween, ProcSampler, readMachineCpu, startDaemon, type CpuMark, type DaemonProcess } from './daemon-process.js';
import type { LoadResult, Progress } from './load-common.js';
import type { HttpLoadParams } from './load-http.js';
import type { WsLoadParams } from './load-ws.js';
import { progressLine, table, toJson, writeJson, type RunRecord } from './report.js';

const WS_GATEWAY = fileURLToPath(new URL('../src/gateway/ws-gateway.js', import.meta.url));

interface Upstream {
  url: string;
  /** Counts of what the fake upstream received (only with --upstream up). */
  counts: (() => Promise<Record<string, number>>) | null;
  stop(): Promise<void>;
}

async function startUpstream(mode: 'down' | 'up'): Promise<Upstream> {
  if (mode === 'down') return { url: `http://127.0.0.1:${await closedPort()}`, counts: null, stop: async () => undefined };
  const child = spawnTracked(benchScript('upstream-sink.js'), ['{}']);
  const ready = await waitForJsonLine(child, child.stdout!, (m) => m['msg'] === 'upstream sink listening', 'upstream sink');
  const url = `http://127.0.0.1:${ready['port']}`;
  return {
    url,
    counts: async () => (await (await fetch(`${url}/__bench/counts`)).json()) as Record<string, number>,
    stop: async () => void (await stopChild(child, 2000)),
  };
}

/** How busy all cores are over `ms`, in % of the machine (null off Linux). */
async function machineBusyPct(ms: number): Promise<number | null> {
  const a = readMachineCpu();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const b = readMachineCpu();
  if (!a || !b || b.total <= a.total) return null;
  return Math.round(((b.busy - a.busy) / (b.total - a.total)) * 100);
}

/** The measured process: a daemon or the bare sink. */
interface Target {
  pid: number;
  url: string;
  daemon: DaemonProcess | null;
  stop(): Promise<void>;
}

async function startTarget(kind: 'daemon' | 'sink', args: BenchArgs, upstream: Upstream): Promise<Target> {
  if (kind === 'daemon') {
    const d = await startDaemon({ serverUrl: upstream.url, workers: args.workers, durability: args.durability, extra: args.daemonOpts });
    return {
      pid: d.pid,
      url: `127.0.0.1:${d.port}`,
      daemon: d,
      stop: async () => {
        const info = await d.stop();
        if (info.forced || (info.code !== 0 && info.code !== null)) console.log(`warning: the daemon did not stop cleanly (${info.forced ? 'killed after 8 s' : `exit code ${info.code}`})`);
      },
    };
  }
  const child = spawnTracked(benchScript('bare-sink.js'), ['{}']);
  const ready = await waitForJsonLine(child, child.stdout!, (m) => m['msg'] === 'bare sink listening', 'bare sink');
  return { pid: child.pid!, url: `127.0.0.1:${ready['port']}`, daemon: null, stop: async () => void (await stopChild(child, 2000)) };
}

/**
 * Runs the load generator to completion, printing its progress lines. CPU counters are marked
 * at the end of warmup and at the last progress line, to tell how busy the target was while
 * measured.
 */
async function runLoad(
  script: string,
  params: WsLoadParams | HttpLoadParams,
  proc: ProcSampler,
  baseline: number | null,
): Promise<{ result: LoadResult; from: CpuMark; to: CpuMark }> {
  const child = spawnTracked(benchScript(script), [JSON.stringify(params)]);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    if (stderr.length < 8000) stderr += d.toString();
  });
  let from = proc.mark();
  let to = from;
  return new Promise((resolve, reject) => {
    let result: LoadResult | null = null;
    let fatalMessage: string | null = null;
    eachLine(child.stdout!, (line) => {
      const msg = jsonLine(line);
      if (!msg) return;
      if (msg['type'] === 'progress') {
        const p = msg as Progress;
        if (p.phase === 'warmup') from = proc.mark();
        else to = proc.mark();
        console.log(progressLine(params.label, p, proc.lastMb, baseline));
      } else if (msg['type'] === 'result') result = msg as LoadResult;
      else if (msg['type'] === 'fatal') fatalMessage = String(msg['message']);
    });
    child.on('exit', (code, signal) => {
      if (result) resolve({ result, from, to: to === from ? proc.mark() : to });
      else reject(new Error(fatalMessage ?? `the load generator exited (${signal ?? `code ${code}`}) without a result\n${stderr.trim()}`));
    });
  });
}

/**
 * acked = persisted: with the upstream down nothing leaves the queue, so the daemon's queue
 * depth must be exactly the acked ops plus one create per locally created session. With the
 * upstream up, ops also leave for the fake upstream: queued + delivered must cover them all
 * (more is possible: requests in flight when we looked, counted on both sides).
 */
async function depthCheck(d: DaemonProcess, res: LoadResult, upstream: Upstream, before: Record<string, number> | null): Promise<{ ok: boolean; line: string }> {
  const health = await d.health();
  const depth = Number(health['queue']?.['depth']);
  const creates = res.sessions.filter((id) => id.startsWith('local-session-')).length;
  const expected = res.total_acked_ops + creates;
  if (!upstream.counts || !before) {
    const ok = depth === expected;
    const line = `queue depth ${depth.toLocaleString('en-US')} ${ok ? '=' : '!='} acked ${res.total_acked_ops.toLocaleString('en-US')} + creates ${creates}`;
    return { ok, line: ok ? `check: ${line} (acked = persisted)` : `WARNING: ${line}: acked ops missing from the queue` };
  }
  const after = await upstream.counts();
  const delta = (k: string): number => (after[k] ?? 0) - (before[k] ?? 0);
  // Sessions the upstream created during /register (server ids) never enter the queue.
  const serverCreates = res.sessions.length - creates;
  const delivered = delta('create') - serverCreates + delta('event') + delta('metric') + delta('state');
  const ok = depth + delivered >= expected;
  const line = `queue depth ${depth.toLocaleString('en-US')} + delivered ${delivered.toLocaleString('en-US')} ${ok ? '>=' : '<'} acked ${res.total_acked_ops.toLocaleString('en-US')} + queued creates ${creates}`;
  return { ok, line: ok ? `check: ${line}${depth + delivered > expected ? ` (${depth + delivered - expected} in flight or duplicates)` : ''}` : `WARNING: ${line}` };
}

async function measure(kind: 'daemon' | 'sink', name: string, rate: number | null, args: BenchArgs, upstream: Upstream, baseline: number | null): Promise<RunRecord & { workers?: number }> {
  const target = await startTarget(kind, args, upstream);
  const notes: string[] = [];
  try {
    const proc = new ProcSampler(target.pid);
    const before = upstream.counts && kind === 'daemon' ? await upstream.counts() : null;
    const label = `${args.scenario} ${kind === 'daemon' ? 'daemon' : 'sink'}${rate !== null ? ' @' + Math.round(rate) : ''}`;
    const common = { label, seconds: args.seconds, warmup: args.warmup, rate, mix: args.mix };
    const { result, from, to } =
      args.scenario === 'ws-ingest'
        ? await runLoad('load-ws.js', { ...common, url: `ws://${target.url}/ws`, producers: args.producers, batch: args.batch, window: args.window, frame: args.frame }, proc, baseline)
        : await runLoad('load-http.js', { ...common, url: `http://${target.url}`, connections: args.connections }, proc, baseline);
    const rssMb = proc.stop();
    const cpu = cpuBetween(from, to);
    const others = cpu.machine_pct !== null && cpu.proc_pct !== null ? Math.max(0, Math.round((cpu.machine_pct * availableParallelism()) - cpu.proc_pct - result.generator.cpu_pct)) : null;
    if (result.drain_timed_out) notes.push(`${name}: some ops were still unacked 15 s after the load stopped`);
    if (result.refused_ops > 0) notes.push(`${name}: ${result.refused_ops} ops refused, e.g. ${result.errors.join(' | ')}`);
    const record: RunRecord & { workers?: number } = {
      name,
      target: kind,
      rate,
      result,
      rss_mb: rssMb,
      cpu: { target_pct: cpu.proc_pct, machine_pct: cpu.machine_pct, others_pct: others },
      notes,
    };
    if (others !== null && others > 25)
      notes.push(`${name}: other processes used ~${others}% of a core during the run; the numbers are lower than on an idle machine`);
    if (target.daemon) {
      record.check = await depthCheck(target.daemon, result, upstream, before);
      record.workers = Number((await target.daemon.health())['workers']?.['size']);
      for (const p of target.daemon.problems.slice(0, 5)) notes.push(`${name}: daemon log: ${p.slice(0, 300)}`);
    }
    console.log(record.check ? `[${label}] done: ${record.check.line}` : `[${label}] done`);
    return record;
  } finally {
    await target.stop();
  }
}

async function main(): Promise<number> {
  let args: BenchArgs;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    if (err.message) console.error(`bench: ${err.message}\n`);
    console.error(USAGE);
    return err.message ? 2 : 0;
  }
  const ws = args.scenario === 'ws-ingest';
  const primary: 'daemon' | 'sink' = ws && args.target === 'sink' ? 'sink' : 'daemon';
  if (ws && primary === 'daemon' && !existsSync(WS_GATEWAY))
    console.log(`note: ${WS_GATEWAY} does not exist; the daemon may not serve /ws yet (--target sink measures the sink alone)`);

  // Other work on the machine lowers every number; say so up front. (Not the load average: it
  // lags by a minute. Half a second of /proc/stat says what the cores are doing now.)
  const busy = await machineBusyPct(500);
  if (busy !== null && busy > 20) console.log(`note: the machine was ${busy}% busy just before the bench started: other processes are running; numbers will be noisy`);
  const upstream = await startUpstream(args.upstream);
  try {
    const runs: RunRecord[] = [];
    let baseline: RunRecord | null = null;
    if (ws && args.target === 'both') {
      baseline = await measure('sink', 'bare sink', args.rate, args, upstream, null);
      runs.push(baseline);
    }
    const main = await measure(primary, `${primary === 'daemon' ? 'daemon' : 'bare sink'} ${args.rate === null ? 'peak' : 'rated'}`, args.rate, args, upstream, baseline?.result.ops_per_sec ?? null);
    runs.push(main);
    let half: RunRecord | null = null;
    if (args.halfPeak) {
      const halfRate = Math.max(1, Math.round(main.result.ops_per_sec / 2));
      half = await measure(primary, `${primary === 'daemon' ? 'daemon' : 'bare sink'} half-peak`, halfRate, args, upstream, null);
      runs.push(half);
    }

    const params: Record<string, unknown> = {
      scenario: args.scenario,
      seconds: args.seconds,
      warmup: args.warmup,
      mix: args.mix,
      rate: args.rate,
      upstream: args.upstream,
      durability: args.durability,
      workers: main.workers ?? args.workers,
      ...(ws ? { producers: args.producers, batch: args.batch, window_frames: args.window, frame: args.frame, target: args.target } : { connections: args.connections }),
      daemon_opts: args.daemonOpts,
      half_peak: args.halfPeak,
      ...(half ? { half_peak_rate: half.rate } : {}),
      latency: ws ? 'per frame: send → first ack covering its last q; one sample per frame' : 'per request: send → end of answer',
      cpus: availableParallelism(),
      node: process.version,
    };

    console.log('');
    const shape = ws ? `producers ${args.producers}, ${args.frame} frames of ${args.batch} ops, window ${args.window} frames` : `connections ${args.connections}`;
    console.log(`${args.scenario}: ${shape}, mix ${formatMix(args.mix)}, ${args.seconds} s + ${args.warmup} s warmup, upstream ${args.upstream}, durability ${args.durability}, workers ${params['workers'] ?? 'default'}`);
    console.log(table(runs));
    console.log('cpu columns: % of one core while measured; target = daemon or sink process, gen = load generator, other = the rest of the machine');
    if (baseline && primary === 'daemon') {
      const ratio = main.result.ops_per_sec / Math.max(1, baseline.result.ops_per_sec);
      console.log(`ratio daemon/sink: ${ratio.toFixed(3)} (target >= 0.5)`);
    }
    if (half) console.log(`p99 at half peak: ${half.result.latency_ms.p99.toFixed(3)} ms (target <= 5 ms)`);
    for (const r of runs) {
      if (r.check) console.log(`${r.name}: ${r.check.line}`);
      const g = r.result.generator;
      console.log(`${r.name}: generator cpu ${g.cpu_pct}% of a core, build ${g.build_ns_per_op} ns/op, send ${g.send_ns_per_op} ns/op, ceiling ~${Math.round(g.ceiling_ops_per_sec).toLocaleString('en-US')} ops/s`);
      for (const n of r.notes) console.log(`warning: ${n}`);
    }
    if (args.out) {
      writeJson(args.out, toJson(args.scenario, main, primary === 'daemon' ? baseline : null, half, params));
      console.log(`wrote ${args.out}`);
    }
    return 0;
  } finally {
    await upstream.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
