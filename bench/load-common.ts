/**
 * What the two load generators (load-ws.ts, load-http.ts) share: latency histograms, the
 * warmup → measure → drain timeline, per-second progress lines, the generator's own CPU cost,
 * and the op mix.
 *
 * A generator is a child process of the CLI. It takes one JSON argument and writes JSON lines
 * on stdout: `progress` once per second, then one `result` (or `fatal`).
 */
import * as hdr from 'hdr-histogram-js';
import type { Mix, MixKind } from './args.js';

export interface LoadParams {
  /** e.g. "ws-ingest daemon"; echoed in fatal messages. */
  label: string;
  seconds: number;
  warmup: number;
  /** Total ops/s for all connections together; null = peak (as fast as acks allow). */
  rate: number | null;
  mix: Mix;
}

export interface LatencySummary {
  p50: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
  /** Histogram samples: frames (ws) or requests (http). */
  count: number;
}

export interface GeneratorCost {
  /** The generator process's CPU time during the measured window, as % of one core. */
  cpu_pct: number;
  /** Ops/s the generator could drive with a whole core to itself: ops / CPU-seconds it used. */
  ceiling_ops_per_sec: number;
  /** Time spent building request payloads (copy + patch for ws, string concat for http). */
  build_ns_per_op: number;
  /** Time spent in the transport's send call (ws framing + socket write, or undici dispatch). */
  send_ns_per_op: number;
}

export interface LoadResult {
  type: 'result';
  /** Acked (durable) ops in the measured window / its length. */
  ops_per_sec: number;
  /** Acked ops in the measured window. */
  acked_ops: number;
  /** Every acked op of the run, warmup and drain included (the queue-depth check uses it). */
  total_acked_ops: number;
  /** Ops refused by the target (errors in acks, non-200 answers); not counted as acked. */
  refused_ops: number;
  /** Sessions registered; each queues one create in the daemon while the upstream is down. */
  sessions: string[];
  /** First few distinct error messages. */
  errors: string[];
  latency_ms: LatencySummary;
  generator: GeneratorCost;
  measured_seconds: number;
  /** True when the drain after the window timed out with ops still unacked. */
  drain_timed_out: boolean;
}

export interface Progress {
  type: 'progress';
  phase: 'warmup' | 'measure';
  /** Seconds since the load started. */
  t: number;
  ops_per_sec: number;
  p99_ms: number;
}

export function emit(msg: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(msg) + '\n');
}

export function fatal(label: string, err: unknown): never {
  emit({ type: 'fatal', message: `${label}: ${err instanceof Error ? err.message : String(err)}` });
  process.exit(1);
}

/** Latencies are recorded in microseconds (integers), reported in milliseconds. */
export function newHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
}

export function summarize(h: hdr.Histogram): LatencySummary {
  const ms = (us: number): number => Math.round(us) / 1000;
  if (h.totalCount === 0) return { p50: 0, p99: 0, p999: 0, max: 0, mean: 0, count: 0 };
  return {
    p50: ms(h.getValueAtPercentile(50)),
    p99: ms(h.getValueAtPercentile(99)),
    p999: ms(h.getValueAtPercentile(99.9)),
    max: ms(h.maxValue),
    mean: ms(h.mean),
    count: h.totalCount,
  };
}

/**
 * The kinds of a cycle of `length` ops, spread by smooth weighted round robin so that any
 * stretch of the cycle follows the mix closely (80/15/5 over 100 ops gives exactly 80/15/5).
 */
export function kindCycle(mix: Mix, length: number): MixKind[] {
  const entries = Object.entries(mix) as Array<[MixKind, number]>;
  const total = entries.reduce((s, [, w]) => s + w, 0);
  const current = entries.map(() => 0);
  const out: MixKind[] = [];
  for (let i = 0; i < length; i++) {
    let best = 0;
    for (let j = 0; j < entries.length; j++) {
      current[j]! += entries[j]![1];
      if (current[j]! > current[best]!) best = j;
    }
    current[best]! -= total;
    out.push(entries[best]![0]);
  }
  return out;
}

/**
 * The bodies of the ops, the same for both transports (fields as in README.md "HTTP API").
 * Only state bodies must change from op to op: the daemon does not queue a state update that
 * changes nothing, and the queue-depth check expects one outbox entry per acked op.
 */
export const EVENT_FIELDS = {
  name: 'bench.event',
  category: 'bench',
  labels: ['load', 'bench'],
  message: 'a benchmark event of typical size',
  data: { level: 3, zone: 'north', score: 12345, ok: true },
} as const;

export const METRIC_FIELDS = { name: 'bench.gauge', value: 42.5, type: 'gauge', unit: 'ms' } as const;

export function stateValue(seq: number): Record<string, unknown> {
  return { bench: { seq } };
}

export const REGISTER_FIELDS = { product: 'datacat-bench', version: '1.0.0' } as const;

/**
 * The run's timeline and its bookkeeping: `warmup` seconds unmeasured, then `seconds`
 * measured, then the generator stops sending and waits for outstanding acks (the drain), so
 * that every sent op ends up acked or refused before the CLI checks the daemon's queue depth.
 */
export class Timeline {
  readonly total = newHistogram();
  private readonly interval = newHistogram();
  phase: 'warmup' | 'measure' | 'drain' = 'warmup';
  private startedAt = 0;
  private measureStart = 0;
  private measureEnd = 0;
  private cpuAtMeasure = process.cpuUsage();
  private cpuMicros = 0;
  ackedInWindow = 0;
  totalAcked = 0;
  refused = 0;
  private intervalAcked = 0;
  buildNs = 0;
  sendNs = 0;
  private opsBuilt = 0;
  private readonly errors = new Set<string>();
  private ticker: NodeJS.Timeout | null = null;

  private readonly measureHooks: Array<() => void> = [];

  constructor(private readonly params: LoadParams) {}

  /** Runs `fn` when the measured window starts (schedules drop the warmup's backlog then). */
  onMeasureStart(fn: () => void): void {
    this.measureHooks.push(fn);
  }

  /** Starts the clock; resolves when the measured window ends (then: stop sending, drain). */
  run(): Promise<void> {
    this.startedAt = performance.now();
    return new Promise((resolve) => {
      const startMeasure = (): void => {
        this.phase = 'measure';
        for (const fn of this.measureHooks) fn();
        this.measureStart = performance.now();
        this.cpuAtMeasure = process.cpuUsage();
        this.total.reset();
        this.ackedInWindow = 0;
        this.buildNs = this.sendNs = this.opsBuilt = 0;
        setTimeout(() => {
          this.measureEnd = performance.now();
          const cpu = process.cpuUsage(this.cpuAtMeasure);
          this.cpuMicros = cpu.user + cpu.system;
          this.phase = 'drain';
          // No progress line for the sliver since the last tick: its rate would be noise.
          if (this.ticker) clearInterval(this.ticker);
          resolve();
        }, this.params.seconds * 1000);
      };
      this.ticker = setInterval(() => this.progress(), 1000);
      if (this.params.warmup > 0) setTimeout(startMeasure, this.params.warmup * 1000);
      else startMeasure();
    });
  }

  private lastProgressAt = 0;
  private progress(): void {
    const now = performance.now();
    const since = this.lastProgressAt || this.startedAt;
    this.lastProgressAt = now;
    const msg: Progress = {
      type: 'progress',
      phase: this.phase === 'warmup' ? 'warmup' : 'measure',
      t: Math.round((now - this.startedAt) / 100) / 10,
      ops_per_sec: Math.round((this.intervalAcked * 1000) / Math.max(1, now - since)),
      p99_ms: this.interval.totalCount ? this.interval.getValueAtPercentile(99) / 1000 : 0,
    };
    this.intervalAcked = 0;
    this.interval.reset();
    emit(msg as unknown as Record<string, unknown>);
  }

  /** Ops acked (durable), with the latency of the frame/request that carried them, in µs. */
  acked(ops: number, latencyUs: number): void {
    this.totalAcked += ops;
    if (this.phase === 'drain') return;
    this.intervalAcked += ops;
    const v = Math.max(1, Math.round(latencyUs));
    this.interval.recordValue(v);
    if (this.phase === 'measure') {
      this.ackedInWindow += ops;
      this.total.recordValue(v);
    }
  }

  refuse(ops: number, message: string): void {
    this.refused += ops;
    if (this.errors.size < 5) this.errors.add(message);
  }

  /** Accounts the generator's own time spent building and sending `ops` ops. */
  cost(ops: number, buildNs: number, sendNs: number): void {
    if (this.phase !== 'measure') return;
    this.opsBuilt += ops;
    this.buildNs += buildNs;
    this.sendNs += sendNs;
  }

  result(sessions: string[], drainTimedOut: boolean): LoadResult {
    const seconds = (this.measureEnd - this.measureStart) / 1000;
    const opsPerSec = this.ackedInWindow / seconds;
    const cpuSeconds = this.cpuMicros / 1e6;
    return {
      type: 'result',
      ops_per_sec: Math.round(opsPerSec),
      acked_ops: this.ackedInWindow,
      total_acked_ops: this.totalAcked,
      refused_ops: this.refused,
      sessions,
      errors: [...this.errors],
      latency_ms: summarize(this.total),
      generator: {
        cpu_pct: Math.round((cpuSeconds / seconds) * 1000) / 10,
        ceiling_ops_per_sec: cpuSeconds > 0 ? Math.round(this.ackedInWindow / cpuSeconds) : 0,
        build_ns_per_op: this.opsBuilt ? Math.round(this.buildNs / this.opsBuilt) : 0,
        send_ns_per_op: this.opsBuilt ? Math.round(this.sendNs / this.opsBuilt) : 0,
      },
      measured_seconds: Math.round(seconds * 1000) / 1000,
      drain_timed_out: drainTimedOut,
    };
  }
}

/**
 * Even spacing for rate-limited runs: each connection gets `perConnectionRate` sends/s at
 * absolute times start + k·interval (no drift). `due()` says whether the next send is due.
 */
export class Schedule {
  readonly intervalMs: number;
  next: number;

  constructor(perConnectionRate: number, start: number) {
    this.intervalMs = 1000 / perConnectionRate;
    // Stagger connections over one interval so they do not all fire on the same tick.
    this.next = start + Math.random() * this.intervalMs;
  }

  due(now: number): boolean {
    return now >= this.next;
  }

  /**
   * Forgets slots already missed. Called when the measured window starts: a backlog built up
   * during warmup (the target's cold start, JIT) would otherwise be charged to the measurement,
   * since late sends count from their slot.
   */
  rebase(now: number): void {
    if (this.next < now) this.next = now;
  }

  /** Takes the current slot; returns its scheduled time. */
  take(): number {
    const at = this.next;
    this.next += this.intervalMs;
    return at;
  }
}

export function hrNow(): bigint {
  return process.hrtime.bigint();
}
