/**
 * The daemon under test, in its own process, exactly as users start it (bin/datacat-daemon),
 * plus the helpers every measured target shares: peak-RSS sampling from /proc and a closed port
 * to point `--server-url` at when the upstream should be down.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { eachLine, spawnTracked, stopChild, trackTmpDir, untrackTmpDir, waitForJsonLine, type ExitInfo } from './children.js';

export const DAEMON_BIN = fileURLToPath(new URL('../../bin/datacat-daemon', import.meta.url));

export interface DaemonOptions {
  serverUrl: string;
  workers: number | null;
  durability: 'process' | 'fsync';
  /** More config keys, passed as flags. */
  extra: Record<string, string>;
}

export interface DaemonProcess {
  child: ChildProcess;
  pid: number;
  port: number;
  dataDir: string;
  /** warn/error log lines the daemon wrote during the run (printed by the CLI). */
  problems: string[];
  health(): Promise<Record<string, any>>;
  stop(): Promise<ExitInfo & { forced: boolean }>;
}

export async function startDaemon(options: DaemonOptions): Promise<DaemonProcess> {
  // A fresh store per run: each run measures an empty LevelDB and its queue-depth check
  // counts only its own ops.
  const dataDir = mkdtempSync(join(tmpdir(), 'datacat-bench-'));
  trackTmpDir(dataDir);
  const args = ['--port', '0', '--data-dir', dataDir, '--server-url', options.serverUrl, '--log-level', 'info', '--durability', options.durability];
  if (options.workers !== null) args.push('--workers', String(options.workers));
  for (const [key, value] of Object.entries(options.extra)) args.push(`--${key.replaceAll('_', '-')}`, value);
  // `cwd: dataDir` so a daemon_config.json in the caller's directory cannot change the setup;
  // DATACAT_* variables are dropped for the same reason.
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('DATACAT_')) env[k] = v;
  const child = spawnTracked(DAEMON_BIN, args, { cwd: dataDir, env, stdio: ['ignore', 'ignore', 'pipe'] });
  const listening = await waitForJsonLine(child, child.stderr!, (m) => m['msg'] === 'datacat daemon listening' && typeof m['port'] === 'number', 'datacat-daemon');
  const port = listening['port'] as number;
  // Keep draining stderr: a full pipe would block the daemon's logger (and so the daemon).
  const problems: string[] = [];
  eachLine(child.stderr!, (line) => {
    try {
      const m = JSON.parse(line) as { level?: number; msg?: string };
      if ((m.level ?? 0) >= 40 && problems.length < 20) problems.push(line);
    } catch {
      if (problems.length < 20 && line.trim()) problems.push(line);
    }
  });
  const base = `http://127.0.0.1:${port}`;
  return {
    child,
    pid: child.pid!,
    port,
    dataDir,
    problems,
    async health() {
      const res = await fetch(`${base}/health`);
      return (await res.json()) as Record<string, any>;
    },
    async stop() {
      const info = await stopChild(child, 8000);
      untrackTmpDir(dataDir);
      return info;
    },
  };
}

/**
 * A port nothing listens on: bind an ephemeral port and release it. The daemon then gets
 * ECONNREFUSED at once, which is the "upstream down" case DataCat users hit most.
 */
export function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** Resident-set size of a process from /proc/<pid>/status, in MiB: current (VmRSS) and peak (VmHWM). */
export function readRss(pid: number): { rss: number; hwm: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
    return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
  } catch {
    return null; // exited, or not Linux
  }
}

/** CPU time of a process (user + system) in seconds, from /proc/<pid>/stat. */
export function readCpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces): state is [0], utime [11], stime [12].
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return null;
  }
}

/** USER_HZ: 100 on every Linux that Node supports. */
const CLOCK_TICKS = 100;

/** Busy and total CPU seconds of the whole machine (all cores), from /proc/stat. */
export function readMachineCpu(): { busy: number; total: number } | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return { busy: (total - idle) / CLOCK_TICKS, total: total / CLOCK_TICKS };
  } catch {
    return null;
  }
}

export interface CpuMark {
  at: number;
  proc: number | null;
  machine: { busy: number; total: number } | null;
}

/**
 * Samples a process every 250 ms for its resident memory. The peak is the larger of the sampled
 * VmRSS and the kernel's own high-water mark VmHWM (which catches spikes between samples).
 * `mark()` snapshots CPU counters so the CLI can tell how busy the target and the machine were
 * over the measured window (is the target saturated? is something else eating the cores?).
 */
export class ProcSampler {
  peakMb = 0;
  lastMb = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pid: number) {
    this.sample();
    this.timer = setInterval(() => this.sample(), 250);
    this.timer.unref();
  }

  sample(): void {
    const r = readRss(this.pid);
    if (!r) return;
    this.lastMb = r.rss;
    this.peakMb = Math.max(this.peakMb, r.rss, r.hwm);
  }

  mark(): CpuMark {
    return { at: performance.now(), proc: readCpuSeconds(this.pid), machine: readMachineCpu() };
  }

  /** Takes a last sample (call before the process is stopped) and stops sampling. */
  stop(): number {
    this.sample();
    clearInterval(this.timer);
    return this.peakMb;
  }
}

/** CPU use between two marks: the process in % of one core, the machine in % of all its cores. */
export function cpuBetween(a: CpuMark, b: CpuMark): { proc_pct: number | null; machine_pct: number | null } {
  const wall = (b.at - a.at) / 1000;
  const proc = a.proc !== null && b.proc !== null && wall > 0 ? ((b.proc - a.proc) / wall) * 100 : null;
  const mt = a.machine && b.machine ? b.machine.total - a.machine.total : 0;
  const machine = a.machine && b.machine && mt > 0 ? ((b.machine.busy - a.machine.busy) / mt) * 100 : null;
  return { proc_pct: proc === null ? null : Math.round(proc), machine_pct: machine === null ? null : Math.round(machine) };
}
