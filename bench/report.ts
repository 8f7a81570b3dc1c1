/**
 * What the bench prints and writes: the per-second progress line, the table of runs, and the
 * JSON result of CONTRACT.md §6 (exactly its keys; everything else is only printed).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { LoadResult, Progress } from './load-common.js';

export interface RunRecord {
  /** "daemon peak", "daemon half-peak", "bare sink". */
  name: string;
  target: 'daemon' | 'sink';
  /** The rate limit of this run (ops/s), or null for peak. */
  rate: number | null;
  result: LoadResult;
  /** Peak RSS of the target process (daemon or sink) during the run. */
  rss_mb: number;
  /**
   * CPU while measured, in % of one core: the target process, everything else on the machine
   * apart from the target and the generator (noise), and the machine as % of all its cores.
   */
  cpu: { target_pct: number | null; machine_pct: number | null; others_pct: number | null };
  /** The queue-depth check (daemon runs): a line to print, and whether it held. */
  check?: { ok: boolean; line: string };
  notes: string[];
}

export interface LatencyJson {
  p50: number;
  p99: number;
  p999: number;
}

/** CONTRACT.md §6. */
export interface BenchJson {
  scenario: string;
  ops_per_sec: number;
  baseline_ops_per_sec?: number;
  ratio?: number;
  latency_ms: LatencyJson;
  rss_mb: number;
  params: Record<string, unknown>;
  half_peak?: { ops_per_sec: number; latency_ms: LatencyJson };
}

/** 812345 → "812k", 1234567 → "1.23M". */
export function compact(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e4) return `${Math.round(n / 1e3)}k`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}

const grouped = (n: number): string => Math.round(n).toLocaleString('en-US');

/** `[ws-ingest daemon] 3s  812k ops/s  p99 2.1ms  rss 180MB` */
export function progressLine(label: string, p: Progress, rssMb: number, baseline: number | null): string {
  const phase = p.phase === 'warmup' ? ' (warmup)' : '';
  const ratio = baseline ? `  ${(p.ops_per_sec / baseline).toFixed(2)}x sink` : '';
  return `[${label}] ${Math.round(p.t)}s${phase}  ${compact(p.ops_per_sec)} ops/s${ratio}  p99 ${p.p99_ms.toFixed(1)}ms  rss ${Math.round(rssMb)}MB`;
}

function pad(cells: string[][]): string {
  const widths = cells[0]!.map((_, c) => Math.max(...cells.map((row) => row[c]!.length)));
  return cells.map((row) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')).join('\n');
}

export function table(runs: RunRecord[]): string {
  const head = ['run', 'rate limit', 'ops/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'rss MB', 'acked ops', 'refused', 'target cpu', 'gen cpu', 'other cpu', 'gen ceiling'];
  const pct = (v: number | null): string => (v === null ? '?' : `${v}%`);
  const rows = runs.map((r) => {
    const res = r.result;
    const l = res.latency_ms;
    return [
      r.name,
      r.rate === null ? 'peak' : `${compact(r.rate)}/s`,
      grouped(res.ops_per_sec),
      l.p50.toFixed(3),
      l.p99.toFixed(3),
      l.p999.toFixed(3),
      l.max.toFixed(1),
      r.rss_mb.toFixed(0),
      grouped(res.acked_ops),
      grouped(res.refused_ops),
      pct(r.cpu.target_pct),
      `${res.generator.cpu_pct.toFixed(0)}%`,
      pct(r.cpu.others_pct),
      `${compact(res.generator.ceiling_ops_per_sec)}/s`,
    ];
  });
  return pad([head, ...rows]);
}

const latencyJson = (r: LoadResult): LatencyJson => ({ p50: r.latency_ms.p50, p99: r.latency_ms.p99, p999: r.latency_ms.p999 });

export function toJson(scenario: string, main: RunRecord, baseline: RunRecord | null, half: RunRecord | null, params: Record<string, unknown>): BenchJson {
  const ops = main.result.ops_per_sec;
  // Keys in the contract's order.
  return {
    scenario,
    ops_per_sec: ops,
    ...(baseline
      ? { baseline_ops_per_sec: baseline.result.ops_per_sec, ratio: Math.round((ops / Math.max(1, baseline.result.ops_per_sec)) * 1000) / 1000 }
      : {}),
    latency_ms: latencyJson(main.result),
    rss_mb: Math.round(main.rss_mb * 10) / 10,
    params,
    ...(half ? { half_peak: { ops_per_sec: half.result.ops_per_sec, latency_ms: latencyJson(half.result) } } : {}),
  };
}

export function writeJson(file: string, data: BenchJson): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(data, null, 2) + '\n');
}
