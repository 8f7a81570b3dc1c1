/**
 * Command-line parsing for `npm run bench -- <scenario> [flags]`.
 *
 * Hand-written (no dependency): the flag set is small, and every flag must end up in the
 * output's `params` so a result file always says exactly how it was produced.
 */

import { CLIENT_DEFAULTS } from '../src/client/defaults.js';

export const SCENARIOS = ['ws-ingest', 'http-ingest'] as const;
export type Scenario = (typeof SCENARIOS)[number];

/** Op kinds the generators can produce; each one is a 1:1 outbox entry in the daemon. */
export const MIX_KINDS = ['event', 'metric', 'state'] as const;
export type MixKind = (typeof MIX_KINDS)[number];
export type Mix = Partial<Record<MixKind, number>>;

/** ws-ingest targets: `both` is the real measurement; the others are for development/debugging. */
export type Target = 'both' | 'daemon' | 'sink';

export interface BenchArgs {
  scenario: Scenario;
  seconds: number;
  /** Seconds of load before measuring starts (JIT, LevelDB warm-up); not counted. */
  warmup: number;
  out: string | null;
  producers: number;
  batch: number;
  /**
   * Unacked frames each WebSocket producer keeps in flight. Default: the reference client's own
   * window (maxInflightOps, 20 000 ops) in frames of `batch`, so the bench loads the daemon the
   * way a producer using src/client does.
   */
  window: number;
  /** ws-ingest frame type: `batch` (one session's ops in a bin, the fast path) or `ops`. */
  frame: 'batch' | 'ops';
  mix: Mix;
  /** Daemon `workers`; null = the daemon's default (the resolved size is read from /health). */
  workers: number | null;
  durability: 'process' | 'fsync';
  /** Total ops/s for the main run; null = as fast as acks allow (peak). */
  rate: number | null;
  connections: number;
  upstream: 'down' | 'up';
  halfPeak: boolean;
  target: Target;
  /**
   * Daemon config beyond the bench's own (`key=value` → `--key value`): BENCH_DAEMON_DEFAULTS,
   * then every `--daemon-opt` (experiments: --daemon-opt recent_events_limit=0).
   */
  daemonOpts: Record<string, string>;
}

/**
 * Config the bench gives every daemon it starts, unless a `--daemon-opt` says otherwise.
 *
 * queue_max_bytes: with the upstream down everything acked stays in the outbox, and at peak a
 * 10 s run queues ~1.2 GB, past the daemon's default bound of 1 GiB. Under `overflow: block` the
 * daemon then stops reading its sockets (as it should), so the run would measure the bound, not
 * ingest: measured, a default 10 s peak run gave 1.18 M ops/s with ops still unacked 15 s after
 * the load stopped, against 1.34 M for 8 s. 1 TiB is out of reach of any run; the store on disk
 * is compressed (~15x for the bench's ops).
 */
export const BENCH_DAEMON_DEFAULTS: Readonly<Record<string, string>> = { queue_max_bytes: String(2 ** 40) };

export const USAGE = `usage: npm run bench -- <scenario> [flags]

scenarios:
  ws-ingest     acked durable ops/s through the WebSocket gateway, plus the same load
                against a bare ws+msgpackr sink in the same run (baseline, ratio)
  http-ingest   ops/s through the HTTP JSON API (POST /event, /metric, /state)

flags:
  --seconds N          measured duration of each run (default 10)
  --warmup N           unmeasured load before each run's measurement (default 3: a fresh
                       daemon settles in about 2 s, see bench/README.md)
  --out FILE           write the result as JSON (CONTRACT.md section 6)
  --producers N        ws-ingest: WebSocket connections, one client_id + session each (default 8)
  --batch N            ws-ingest: ops per frame (default 100)
  --window N           ws-ingest: unacked frames per connection (default: the client's
                       window, 20 000 ops, in frames of --batch: 200 frames of 100)
  --frame batch|ops    ws-ingest: frame type (default batch, the protocol's fast path)
  --mix K=W,...        op mix by weight, kinds event, metric, state (default event=100)
  --workers N          daemon session-actor pool size (default: the daemon's own)
  --durability D       daemon durability: process | fsync (default process)
  --rate N             limit the main run to N ops/s in total, spread evenly (default: peak)
  --connections N      http-ingest: concurrent keep-alive connections (default 64)
  --upstream down|up   down: server_url points at a closed port (default);
                       up: a fast fake DataCat server in its own process
  --no-half-peak       skip the second run at 50% of the measured peak rate
  --target T           ws-ingest: both (default) | daemon | sink (sink only: no daemon needed)
  --daemon-opt K=V     extra daemon config key (repeatable), e.g. --daemon-opt recent_events_limit=0;
                       the bench sets queue_max_bytes=1 TiB itself, so a run never fills the outbox
  --help               this text
`;

export class UsageError extends Error {}

function positiveInt(flag: string, raw: string, min = 1): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`${flag} needs an integer >= ${min}, got "${raw}"`);
  return n;
}

function positiveNumber(flag: string, raw: string, allowZero = false): number {
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0 || (!allowZero && n === 0)) throw new UsageError(`${flag} needs a number ${allowZero ? '>= 0' : '> 0'}, got "${raw}"`);
  return n;
}

/** `event=80,metric=15,state=5` → weights; weights need not sum to 100. */
export function parseMix(raw: string): Mix {
  const mix: Mix = {};
  for (const part of raw.split(',')) {
    const [kind, weight] = part.split('=');
    if (!kind || weight === undefined || !(MIX_KINDS as readonly string[]).includes(kind.trim()))
      throw new UsageError(`--mix: "${part}" is not kind=weight with kind one of ${MIX_KINDS.join(', ')}`);
    const w = Number(weight);
    if (!Number.isFinite(w) || w < 0) throw new UsageError(`--mix: weight of ${kind} must be a number >= 0`);
    if (w > 0) mix[kind.trim() as MixKind] = w;
  }
  if (Object.keys(mix).length === 0) throw new UsageError('--mix: at least one kind needs a weight > 0');
  return mix;
}

export function formatMix(mix: Mix): string {
  return Object.entries(mix)
    .map(([k, w]) => `${k}=${w}`)
    .join(',');
}

/**
 * Every run starts a fresh daemon, and its first ~2 s under load are not its steady state: the
 * worker threads are still starting and compiling their hot paths, the heaps are growing, and the
 * backlog of frames queued meanwhile (a full window per producer) drains through the next second.
 * Measured at half peak (444 k ops/s, 2026-12-06): per-second p99 108–236 ms in the first second,
 * 12–68 ms in the second, 3–15 ms from the third on. A 1 s warmup put that second second into the
 * half-peak p99 (50 ms against 8–13 ms measured from the third second).
 */
const DEFAULT_WARMUP_SECONDS = 3;

export function parseArgs(argv: readonly string[]): BenchArgs {
  const args: BenchArgs = {
    scenario: 'ws-ingest',
    seconds: 10,
    warmup: DEFAULT_WARMUP_SECONDS,
    out: null,
    producers: 8,
    batch: 100,
    window: 0, // 0: resolved from --batch below
    frame: 'batch',
    mix: { event: 100 },
    workers: null,
    durability: 'process',
    rate: null,
    connections: 64,
    upstream: 'down',
    halfPeak: true,
    target: 'both',
    daemonOpts: { ...BENCH_DAEMON_DEFAULTS },
  };
  let scenario: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i]!;
    if (!arg.startsWith('--')) {
      if (scenario !== null) throw new UsageError(`unexpected argument "${arg}"`);
      scenario = arg;
      continue;
    }
    // Both `--flag value` and `--flag=value`.
    let value: string | undefined;
    const eq = arg.indexOf('=');
    if (eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const next = (): string => {
      if (value !== undefined) return value;
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${arg} needs a value`);
      return v;
    };
    switch (arg) {
      case '--help':
        throw new UsageError('');
      case '--seconds':
        args.seconds = positiveNumber(arg, next());
        break;
      case '--warmup':
        args.warmup = positiveNumber(arg, next(), true);
        break;
      case '--out':
        args.out = next();
        break;
      case '--producers':
        args.producers = positiveInt(arg, next());
        break;
      case '--batch':
        args.batch = positiveInt(arg, next());
        break;
      case '--window':
        args.window = positiveInt(arg, next());
        break;
      case '--frame': {
        const v = next();
        if (v !== 'batch' && v !== 'ops') throw new Error(`--frame must be batch or ops (got ${v})`);
        args.frame = v;
        break;
      }
      case '--mix':
        args.mix = parseMix(next());
        break;
      case '--workers':
        args.workers = positiveInt(arg, next());
        break;
      case '--durability': {
        const d = next();
        if (d !== 'process' && d !== 'fsync') throw new UsageError(`--durability is process or fsync, got "${d}"`);
        args.durability = d;
        break;
      }
      case '--rate':
        args.rate = positiveNumber(arg, next());
        break;
      case '--connections':
        args.connections = positiveInt(arg, next());
        break;
      case '--upstream': {
        const u = next();
        if (u !== 'down' && u !== 'up') throw new UsageError(`--upstream is down or up, got "${u}"`);
        args.upstream = u;
        break;
      }
      case '--half-peak':
        args.halfPeak = true;
        break;
      case '--no-half-peak':
        args.halfPeak = false;
        break;
      case '--target': {
        const t = next();
        if (t !== 'both' && t !== 'daemon' && t !== 'sink') throw new UsageError(`--target is both, daemon or sink, got "${t}"`);
        args.target = t;
        break;
      }
      case '--daemon-opt': {
        const kv = next();
        const m = /^([a-z_]+)=(.*)$/.exec(kv);
        if (!m) throw new UsageError(`--daemon-opt takes key=value with a daemon config key (README.md), got "${kv}"`);
        if (['daemon_port', 'data_dir', 'server_url'].includes(m[1]!)) throw new UsageError(`--daemon-opt ${m[1]} is set by the bench itself`);
        args.daemonOpts[m[1]!] = m[2]!;
        break;
      }
      default:
        throw new UsageError(`unknown flag ${arg}`);
    }
  }
  if (scenario === null) throw new UsageError('missing scenario');
  if (!(SCENARIOS as readonly string[]).includes(scenario)) throw new UsageError(`unknown scenario "${scenario}" (one of ${SCENARIOS.join(', ')})`);
  args.scenario = scenario as Scenario;
  if (args.window === 0) args.window = Math.ceil(CLIENT_DEFAULTS.maxInflightOps / args.batch);
  return args;
}
