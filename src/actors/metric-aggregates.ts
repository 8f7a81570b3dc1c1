import type { JsonObject, MetricBody } from '../protocol/ops.js';
import { parseBucketBound } from '../protocol/validate.js';

/** DataCat's default histogram bounds (seconds), used when a histogram gives no metadata.buckets. */
export const DEFAULT_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export interface CounterAggregate {
  name: string;
  tags?: string[];
  unit?: string;
  /** Running total of every delta ever accepted (DataCat counters are never reset). */
  total: number;
  /** Changed since last sent upstream. */
  dirty: boolean;
}

export interface HistogramAggregate {
  name: string;
  tags?: string[];
  unit?: string;
  /** Upper bounds, ascending; Infinity for "inf". */
  bounds: number[];
  /** Samples per bucket: a sample goes into the first bucket whose bound it does not exceed. */
  counts: number[];
  sum: number;
  count: number;
  /** The sample's other metadata (not buckets), passed upstream with the snapshot. */
  metadata?: JsonObject;
  dirty: boolean;
}

/**
 * A session's counter and histogram aggregates, part of its persisted snapshot (so an acked delta
 * survives a crash). Counters with `delta` accumulate per name + sorted tags; histograms per name
 * + sorted tags + bucket bounds. Both go upstream as snapshots once per batch_interval_seconds
 * while they change (CONTRACT §3).
 */
export interface Aggregates {
  counters: Record<string, CounterAggregate>;
  histograms: Record<string, HistogramAggregate>;
  /** When dirty aggregates were last sent upstream (ms). */
  flushed_at: number;
}

export function emptyAggregates(now: number): Aggregates {
  return { counters: {}, histograms: {}, flushed_at: now };
}

/** Whether a metric is aggregated by the daemon rather than passed through one by one. */
export function isAggregated(m: MetricBody): boolean {
  return (m.type === 'counter' && m.delta !== undefined) || m.type === 'histogram';
}

/** Adds one counter delta or histogram sample. */
export function aggregate(aggs: Aggregates, m: MetricBody): void {
  const tags = m.tags ? [...m.tags].sort() : undefined;
  if (m.type === 'counter') {
    const key = `${m.name}\u0000${JSON.stringify(tags ?? [])}`;
    const c = (aggs.counters[key] ??= withOptional({ name: m.name, total: 0, dirty: false }, tags, m.unit));
    c.total += m.delta!;
    c.dirty = true;
    return;
  }
  const { buckets, ...rest } = m.metadata ?? {};
  const bounds = Array.isArray(buckets) ? buckets.map((b) => parseBucketBound(b)!) : [...DEFAULT_BUCKETS];
  const key = `${m.name}\u0000${JSON.stringify(tags ?? [])}\u0000${JSON.stringify(bounds.map(String))}`;
  const h = (aggs.histograms[key] ??= withOptional(
    { name: m.name, bounds, counts: bounds.map(() => 0), sum: 0, count: 0, dirty: false } as HistogramAggregate,
    tags,
    m.unit,
  ));
  if (Object.keys(rest).length > 0) h.metadata = rest;
  // The first bucket the value does not exceed; past the last bound, the last bucket (as DataCat).
  let i = bounds.findIndex((b) => m.value <= b);
  if (i < 0) i = bounds.length - 1;
  h.counts[i]! += 1;
  h.sum += m.value;
  h.count += 1;
  h.dirty = true;
}

/** The upstream metric bodies for every aggregate changed since the last call; marks them sent. */
export function takeChanged(aggs: Aggregates, now: number): JsonObject[] {
  const out: JsonObject[] = [];
  for (const c of Object.values(aggs.counters)) {
    if (!c.dirty) continue;
    c.dirty = false;
    out.push(withOptional({ name: c.name, type: 'counter', value: c.total }, c.tags, c.unit));
  }
  for (const h of Object.values(aggs.histograms)) {
    if (!h.dirty) continue;
    h.dirty = false;
    const buckets = h.bounds.map((le, i) => ({ le: Number.isFinite(le) ? le : '+Inf', count: h.counts[i]! }));
    out.push(
      withOptional(
        { name: h.name, type: 'histogram', value: h.count > 0 ? h.sum / h.count : 0, metadata: { ...h.metadata, buckets, sum: h.sum, count: h.count } },
        h.tags,
        h.unit,
      ),
    );
  }
  aggs.flushed_at = now;
  return out;
}

export function hasChanged(aggs: Aggregates): boolean {
  for (const c of Object.values(aggs.counters)) if (c.dirty) return true;
  for (const h of Object.values(aggs.histograms)) if (h.dirty) return true;
  return false;
}

function withOptional<T extends object>(o: T, tags: string[] | undefined, unit: string | undefined): T {
  if (tags && tags.length > 0) (o as JsonObject)['tags'] = tags;
  if (unit !== undefined) (o as JsonObject)['unit'] = unit;
  return o;
}
