/**
 * What a run found: counts per mutation, and failures, each with what is needed to replay it
 * (`FUZZ_SEED=<seed> FUZZ_ONLY=<index>`) and the case itself.
 */
import type { Case } from './cases.js';
import { mutationOf } from './cases.js';
import { describe, oneLine } from './json.js';

export interface Failure {
  seed: number;
  index: number | null;
  what: string;
  expected: string;
  got: string;
  /** The case (or the frame it travelled in), for the report. */
  payload: string;
}

export class Report {
  readonly failures: Failure[] = [];
  readonly counts = new Map<string, number>();
  /** Cases not sent, by reason (a known open bug the generator steers around, ...). */
  readonly skipped = new Map<string, number>();
  cases = 0;

  count(c: Case): void {
    this.cases++;
    const m = mutationOf(c);
    this.counts.set(m, (this.counts.get(m) ?? 0) + 1);
  }

  fail(c: Case | null, expected: string, got: string, extra?: { seed?: number; what?: string; payload?: unknown }): void {
    this.failures.push({
      seed: c?.seed ?? extra?.seed ?? 0,
      index: c?.index ?? null,
      what: oneLine(extra?.what ?? (c ? `${mutationOf(c)}: ${c.c.note}` : 'stream')),
      expected: oneLine(expected),
      got: oneLine(got),
      payload: describe(extra?.payload ?? c?.c ?? null, 120).slice(0, 1500),
    });
  }

  skip(reason: string): void {
    this.skipped.set(reason, (this.skipped.get(reason) ?? 0) + 1);
  }

  /** Lines for the test log (each failure with its replay command), at most `max` failures. */
  lines(max = 20): string[] {
    const lines = this.failures.slice(0, max).flatMap((f) => {
      const replay = f.index === null ? `seed ${f.seed}` : `FUZZ_SEED=${f.seed} FUZZ_ONLY=${f.index}`;
      return [`FAILED [${replay}] ${f.what}`, `  expected: ${f.expected}`, `  got:      ${f.got}`, `  case:     ${f.payload}`];
    });
    if (this.failures.length > max) lines.push(`... and ${this.failures.length - max} more failures`);
    return lines;
  }

  /** Counts per category/mutation, sorted, for the test log. */
  summary(): string {
    const byCat = new Map<string, number>();
    for (const [m, n] of this.counts) byCat.set(m.split('/')[0]!, (byCat.get(m.split('/')[0]!) ?? 0) + n);
    const cats = [...byCat].map(([c, n]) => `${c} ${n}`).join(', ');
    const muts = [...this.counts].sort((a, b) => b[1] - a[1]).map(([m, n]) => `${m} ${n}`).join(', ');
    return `${this.cases} cases (${cats})\n  by mutation: ${muts}`;
  }
}
