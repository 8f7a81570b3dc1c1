import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Counters } from '../outbox/counters.js';

/** Everything /metrics reports, read when scraped (the daemon keeps plain counts; no prom-client on hot paths). */
export interface MetricsSources {
  counters(): Readonly<Counters>;
  /** Receive time of the oldest queued op (ms), or null. */
  oldestQueued(): number | null;
  acceptedByKind(): ReadonlyMap<string, number>;
  sentByKind(): Readonly<Record<string, number>>;
  retriedByKind(): Readonly<Record<string, number>>;
  inDoubt(): number;
  sessions(): { active: number; hung: number; known: number };
  workers(): { size: number; alive: number; restarts: number };
  upstreamOnline(): boolean;
}

/**
 * GET /metrics, Prometheus text through prom-client (the standard exposition, default process
 * metrics included: event-loop lag, heap, CPU). It is loaded after the daemon listens (it takes
 * ~60 ms to import), so the two latency histograms start counting a moment after startup.
 *
 * Gauges and counters read the daemon's own cumulative counts at scrape time; histograms are fed
 * by the two hooks the daemon exposes (ack latency per submission, upstream latency per request).
 */
export class DaemonMetrics {
  readonly registry = new Registry();
  readonly ackLatency: Histogram;
  readonly upstreamLatency: Histogram<'outcome'>;

  constructor(src: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const gauge = (name: string, help: string, read: () => number): void =>
      void new Gauge({ name, help, registers, collect() { this.set(read()); } });
    /** A counter whose value is a cumulative count kept elsewhere, per label value. */
    const counter = <L extends string>(name: string, help: string, label: L, read: () => Iterable<[string, number]>): void =>
      void new Counter({
        name,
        help,
        labelNames: [label],
        registers,
        collect() {
          this.reset();
          for (const [value, n] of read()) if (n > 0) this.inc({ [label]: value } as Record<L, string>, n);
        },
      });

    const plainCounter = (name: string, help: string, read: () => number): void =>
      void new Counter({ name, help, registers, collect() { this.reset(); this.inc(read()); } });

    gauge('datacat_queue_depth', 'Ops in the outbox, not yet delivered or dead-lettered', () => src.counters().depth);
    gauge('datacat_queue_bytes', 'Bytes of outbox chunks stored', () => src.counters().bytes);
    gauge('datacat_queue_oldest_age_seconds', 'Age of the oldest queued op', () => {
      const t = src.oldestQueued();
      return t === null ? 0 : Math.max(0, (Date.now() - t) / 1000);
    });
    gauge('datacat_queue_dead_letters', 'Dead letters stored (4xx answers), waiting for a replay', () => src.counters().dead);
    counter('datacat_ops_accepted_total', 'Ops persisted (acked), by kind', 'kind', () => src.acceptedByKind());
    counter('datacat_ops_sent_total', 'Ops delivered upstream, by kind', 'kind', () => Object.entries(src.sentByKind()));
    counter('datacat_ops_retried_total', 'Upstream tries that failed and will be retried, by kind', 'kind', () => Object.entries(src.retriedByKind()));
    counter('datacat_ops_dropped_total', 'Ops discarded by the overflow policy, by reason', 'reason', () => {
      const c = src.counters();
      return [
        ['drop_newest', c.dropped_newest],
        ['drop_oldest', c.dropped_oldest],
      ];
    });
    plainCounter('datacat_upstream_in_doubt_total', 'Requests whose outcome could not be known (possible duplicates upstream)', () => src.inDoubt());
    gauge('datacat_upstream_online', '1 while the upstream answers', () => (src.upstreamOnline() ? 1 : 0));
    plainCounter('datacat_remaps_total', 'Sessions created locally and later given their server id', () => src.counters().remaps);
    const sessions = new Gauge({
      name: 'datacat_sessions',
      help: 'Sessions known to the daemon, by status: active and inactive add up to all of them; hung counts the active ones that are hung',
      labelNames: ['status'],
      registers,
      collect() {
        const s = src.sessions();
        this.set({ status: 'active' }, s.active);
        this.set({ status: 'hung' }, s.hung);
        this.set({ status: 'inactive' }, s.known - s.active);
      },
    });
    void sessions;
    gauge('datacat_workers', 'Session-actor workers configured', () => src.workers().size);
    gauge('datacat_workers_alive', 'Session-actor workers running', () => src.workers().alive);
    plainCounter('datacat_worker_restarts_total', 'Workers replaced after dying', () => src.workers().restarts);
    this.ackLatency = new Histogram({
      name: 'datacat_ack_latency_seconds',
      help: 'From an HTTP request or WebSocket frame being taken to its ops being durable',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers,
    });
    this.upstreamLatency = new Histogram({
      name: 'datacat_upstream_request_seconds',
      help: 'Upstream requests, by outcome (ok, retry, dead)',
      labelNames: ['outcome'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers,
    });
  }

  async render(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.registry.contentType, text: await this.registry.metrics() };
  }
}
