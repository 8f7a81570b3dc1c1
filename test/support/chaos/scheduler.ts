/**
 * A chaos scheduler over the fake upstream: for a bounded time it runs a seeded random sequence
 * of phases, each installing a few probabilistic fault rules (5xx, 429 + Retry-After, slow
 * answers below and above the daemon's upstream timeout, resets before and after the body,
 * dropped answers) or taking the whole server down for 0.5-2 s.
 *
 * Every fault it injects on a request with a body is noted against that body object (the fake
 * hands rules the very object it records in `requests[]`), so the analysis can tell, per
 * request, whether the daemon could have known its outcome.
 *
 * Support code only: tap does not run this file.
 */
import type { FakeUpstream, FaultMatchInput, FaultRule } from '../fake-upstream.js';

/** Small, fast, seeded PRNG (mulberry32): the same seed gives the same plan. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const between = (rng: () => number, lo: number, hi: number): number => Math.round(lo + rng() * (hi - lo));
export const pick = <T>(rng: () => number, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;

/** What an injected fault did to one request (keyed by the request's parsed body object). */
export type FaultNote =
  | { action: 'status'; status: number; retryAfter?: number; phase: number }
  | { action: 'delay'; delayMs: number; phase: number }
  | { action: 'reset-after'; phase: number }
  | { action: 'drop'; phase: number }
  | { action: 'poison'; status: number };

export type PhaseKind = 'calm' | 'down' | 'errors' | 'throttle' | 'slow' | 'resets' | 'drops' | 'mixed' | 'outage503' | 'outage500';

/** One fault of a phase: an action taken by a request with probability `p`. */
export interface PlannedFault {
  p: number;
  status?: number;
  retryAfter?: number;
  delayMs?: number;
  reset?: 'before-body' | 'after-body';
  dropAnswer?: boolean;
}

export interface PlannedPhase {
  kind: PhaseKind;
  durationMs: number;
  faults: PlannedFault[];
}

export interface PhaseRecord {
  index: number;
  kind: PhaseKind;
  start: number;
  end: number;
  /** /health upstream.attempt when the phase started and ended (down phases: taken while down). */
  attemptAtStart: number;
  attemptAtEnd: number;
  faults: PlannedFault[];
}

export interface ChaosOptions {
  seed: number;
  durationMs: number;
  /** The daemon's upstream_timeout_ms: slow answers are planned clearly below or clearly above it. */
  upstreamTimeoutMs: number;
  /** Reads the daemon's /health upstream.attempt (failed tries since the last success). */
  linkAttempt: () => number;
}

/** Every phase kind that injects something, dealt in a shuffled deck so that each shows up. */
const DECK: PhaseKind[] = ['down', 'down', 'down', 'errors', 'throttle', 'slow', 'resets', 'drops', 'mixed', 'outage503', 'outage500', 'calm'];

/** Plans the phases: a first down phase (sessions registered meanwhile get local ids), then decks. */
export function planChaos(opts: ChaosOptions): PlannedPhase[] {
  const rng = mulberry32(opts.seed);
  const slowBelow = (): number => between(rng, 30, Math.min(300, opts.upstreamTimeoutMs * 0.4));
  const slowAbove = (): number => between(rng, Math.ceil(opts.upstreamTimeoutMs * 1.25), Math.ceil(opts.upstreamTimeoutMs * 1.75));
  const phase = (kind: PhaseKind): PlannedPhase => {
    switch (kind) {
      case 'down':
        return { kind, durationMs: between(rng, 500, 2000), faults: [] };
      case 'calm':
        return { kind, durationMs: between(rng, 300, 800), faults: [] };
      case 'errors':
        return {
          kind,
          durationMs: between(rng, 700, 1500),
          faults: [
            { p: 0.15, status: 500 },
            { p: 0.15, status: 503 },
            { p: 0.03, status: pick(rng, [502, 504, 408]) },
          ],
        };
      case 'throttle':
        return { kind, durationMs: between(rng, 1000, 2000), faults: [{ p: 0.12, status: 429, retryAfter: 1 }] };
      case 'slow':
        return {
          kind,
          durationMs: between(rng, 1000, 2000),
          faults: [
            { p: 0.08, delayMs: slowAbove() },
            { p: 0.3, delayMs: slowBelow() },
            { p: 0.3, delayMs: slowBelow() },
          ],
        };
      case 'resets':
        return {
          kind,
          durationMs: between(rng, 700, 1500),
          faults: [
            { p: 0.15, reset: 'before-body' },
            { p: 0.15, reset: 'after-body' },
          ],
        };
      case 'drops':
        return { kind, durationMs: between(rng, 700, 1500), faults: [{ p: 0.2, dropAnswer: true }] };
      case 'mixed':
        return {
          kind,
          durationMs: between(rng, 1000, 2000),
          faults: [
            { p: 0.06, reset: 'before-body' },
            { p: 0.05, status: 500 },
            { p: 0.05, status: 503 },
            { p: 0.02, status: 429, retryAfter: 1 },
            { p: 0.03, delayMs: slowAbove() },
            { p: 0.15, delayMs: slowBelow() },
            { p: 0.06, reset: 'after-body' },
            { p: 0.08, dropAnswer: true },
          ],
        };
      case 'outage503':
        return { kind, durationMs: between(rng, 500, 1200), faults: [{ p: 1, status: 503 }] };
      case 'outage500':
        return { kind, durationMs: between(rng, 500, 1000), faults: [{ p: 1, status: 500 }] };
    }
  };
  const phases: PlannedPhase[] = [{ kind: 'down', durationMs: between(rng, 1000, 1500), faults: [] }];
  let total = phases[0]!.durationMs;
  while (total < opts.durationMs) {
    const deck = [...DECK];
    for (let i = deck.length - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [deck[i], deck[j]] = [deck[j]!, deck[i]!];
    }
    for (const kind of deck) {
      // Two down phases in a row would just be a longer down phase: put an up phase between.
      if (kind === 'down' && phases.at(-1)!.kind === 'down') phases.push(phase('calm'));
      const p = phase(kind);
      phases.push(p);
      total = phases.reduce((a, x) => a + x.durationMs, 0);
      if (total >= opts.durationMs) break;
    }
  }
  // The last phase ends at the deadline.
  const last = phases.at(-1)!;
  last.durationMs = Math.max(200, last.durationMs - (total - opts.durationMs));
  return phases;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class ChaosScheduler {
  /** What each injected fault did, by the request's parsed body object (the fake records the same object). */
  readonly notes = new WeakMap<object, FaultNote>();
  readonly plan: PlannedPhase[];
  readonly phases: PhaseRecord[] = [];
  /** Times a fault rule matched, by action. */
  readonly injected: Record<string, number> = {};
  private removers: Array<() => void> = [];
  private stopped = false;
  private wake: (() => void) | null = null;
  private readonly decide: () => number;
  private running: Promise<void> | null = null;
  private entered: () => void = () => undefined;
  /** Resolves once the first phase is in force (e.g. the server is down). */
  readonly firstPhase: Promise<void> = new Promise((resolve) => (this.entered = resolve));

  constructor(
    private readonly fake: FakeUpstream,
    private readonly opts: ChaosOptions,
  ) {
    this.plan = planChaos(opts);
    // Per-request decisions: seeded too, though which request draws which number depends on timing.
    this.decide = mulberry32(opts.seed ^ 0x5eed);
  }

  /** Longest slow answer planned: after the chaos, requests parked in the fake take this long to land. */
  get maxDelayMs(): number {
    return Math.max(0, ...this.plan.flatMap((p) => p.faults.map((f) => f.delayMs ?? 0)));
  }

  describePlan(): string {
    return this.plan
      .map((p) => {
        const faults = p.faults
          .map((f) => {
            const what = f.status !== undefined ? `${f.status}${f.retryAfter !== undefined ? `+RA${f.retryAfter}` : ''}` : f.delayMs !== undefined ? `slow${f.delayMs}` : f.reset ? `reset-${f.reset === 'before-body' ? 'before' : 'after'}` : 'drop';
            return `${what}@${f.p}`;
          })
          .join(',');
        return `${p.kind}(${p.durationMs}ms${faults ? ` ${faults}` : ''})`;
      })
      .join(' ');
  }

  /** Runs the plan; resolves when it is over or stop() was called. */
  run(): Promise<void> {
    if (!this.running) {
      this.running = this.loop();
      this.running.catch(() => undefined); // handled by whoever awaits run(); never an unhandled rejection
    }
    return this.running;
  }

  /** Ends the chaos: removes every chaos rule and brings the server up. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    this.entered();
    await this.running?.catch(() => undefined);
    this.clearRules();
    await this.fake.up();
  }

  private async loop(): Promise<void> {
    for (let i = 0; i < this.plan.length && !this.stopped; i++) {
      const planned = this.plan[i]!;
      const rec: PhaseRecord = { index: i, kind: planned.kind, start: Date.now(), end: 0, attemptAtStart: 0, attemptAtEnd: 0, faults: planned.faults };
      try {
        if (planned.kind === 'down') await this.fake.down();
        else await this.fake.up();
      } catch (err) {
        if (this.stopped) break; // the fake was closed under us (a failed test tearing down)
        throw err;
      }
      rec.start = Date.now();
      rec.attemptAtStart = this.opts.linkAttempt();
      for (const f of planned.faults) this.install(i, f);
      if (i === 0) this.entered();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, planned.durationMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
      rec.attemptAtEnd = this.opts.linkAttempt();
      rec.end = Date.now();
      this.clearRules();
      this.phases.push(rec);
    }
  }

  private clearRules(): void {
    for (const remove of this.removers.splice(0)) remove();
  }

  private install(phase: number, f: PlannedFault): void {
    const note: FaultNote =
      f.status !== undefined
        ? { action: 'status', status: f.status, retryAfter: f.retryAfter, phase }
        : f.delayMs !== undefined
          ? { action: 'delay', delayMs: f.delayMs, phase }
          : f.reset === 'after-body'
            ? { action: 'reset-after', phase }
            : { action: 'drop', phase };
    const action = f.status !== undefined ? `status ${f.status}` : f.delayMs !== undefined ? (f.delayMs >= this.opts.upstreamTimeoutMs ? 'slow (timeout)' : 'slow') : f.reset ? `reset ${f.reset}` : 'dropAnswer';
    const rule: FaultRule = {
      match: (req: FaultMatchInput) => {
        if (this.decide() >= f.p) return false;
        this.injected[action] = (this.injected[action] ?? 0) + 1;
        if (req.body !== null && typeof req.body === 'object') this.notes.set(req.body, note);
        return true;
      },
    };
    if (f.status !== undefined) rule.status = f.status;
    if (f.retryAfter !== undefined) rule.retryAfter = f.retryAfter;
    if (f.delayMs !== undefined) rule.delayMs = f.delayMs;
    if (f.reset !== undefined) rule.reset = f.reset;
    if (f.dropAnswer) rule.dropAnswer = true;
    this.removers.push(this.fake.addFault(rule));
  }
}

/**
 * The ops made to be refused: an event whose `data.poison` is true is answered
 * `data.status` (400 or 422), always, whatever the chaos does. Installed before any chaos rule,
 * so it wins over them (only a 'before-body' reset, decided before the body is read, comes first).
 */
export function addPoisonRules(fake: FakeUpstream, notes: WeakMap<object, FaultNote>): () => void {
  const removers = [400, 422].map((status) =>
    fake.addFault({
      match: (req) => {
        const hit = req.kind === 'event' && req.body?.data?.poison === true && req.body?.data?.status === status;
        if (hit) notes.set(req.body, { action: 'poison', status });
        return hit;
      },
      status,
    }),
  );
  return () => removers.forEach((r) => r());
}
