/**
 * Good sessions: well-behaved producers that run alongside the fuzz traffic and must not notice
 * it. Each keeps its own record of what the daemon accepted, and at the end the daemon must hold
 * exactly that:
 *   - GET /session: `state` equals the producer's own merge of its updates; `events` and
 *     `metrics` are the last recent_events_limit / recent_metrics_limit it sent, in order; the
 *     session is active, not crashed, not hung;
 *   - GET /queue?session_id=: `total` is 1 (the create: the upstream is down) + every state
 *     update, event and gauge it had acked (each state update changes the state, so none is
 *     dropped as a no-op; gauges are not aggregated).
 *
 * Three producers: one over HTTP, one with the reference client (`connect` from dist/), one with
 * raw `batch` frames.
 */
import { connect } from '../../../dist/src/client/index.js';
import { STATE_KEYS } from './values.js';
import { FuzzSocket } from './ws-client.js';
import { arrayOf, encode } from './msgpack.js';
import { describe } from './json.js';

export const RECENT_LIMIT = 100;

export abstract class GoodProducer {
  id = '';
  readonly state: Record<string, number> = {};
  readonly events: string[] = [];
  readonly gauges: number[] = [];
  states = 0;
  readonly problems: string[] = [];
  protected n = 0;

  constructor(
    readonly name: string,
    protected readonly url: string,
  ) {}

  abstract start(): Promise<void>;
  /** One round: a state update, an event, a gauge, each recorded once accepted. */
  protected abstract round(n: number, state: Record<string, number>): Promise<void>;
  abstract stop(): Promise<void>;
  /** Drops everything at once (test teardown after a failure). */
  abstract abort(): void;

  /** Sends rounds until `done()`, pausing `pauseMs` between them (the fuzz keeps the CPU busy enough). */
  async run(done: () => boolean, pauseMs = 5): Promise<void> {
    while (!done() && this.problems.length === 0) {
      const n = ++this.n;
      try {
        await this.round(n, { score: n, [STATE_KEYS[n % STATE_KEYS.length]!]: n });
      } catch (err) {
        this.problems.push(`round ${n}: ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, pauseMs));
    }
  }

  protected accepted(n: number, state: Record<string, number>): void {
    Object.assign(this.state, state);
    this.states++;
    this.events.push(`good-${n}`);
    this.gauges.push(n);
  }

  /** What the daemon holds for this session, against what was accepted: a list of differences. */
  async check(): Promise<string[]> {
    const out = [...this.problems];
    const res = await fetch(`${this.url}/session?session_id=${encodeURIComponent(this.id)}`);
    const view = (await res.json()) as any;
    if (res.status !== 200) return [...out, `GET /session answered ${res.status} ${describe(view)}`];
    if (JSON.stringify(sortKeys(view.state)) !== JSON.stringify(sortKeys(this.state))) out.push(`state ${describe(view.state)} instead of ${describe(this.state)}`);
    if (!view.active || view.crashed || view.hung) out.push(`active ${view.active}, crashed ${view.crashed}, hung ${view.hung}`);
    const names = (view.events as Array<{ name: string }>).map((e) => e.name);
    const wantNames = this.events.slice(-RECENT_LIMIT);
    if (names.join() !== wantNames.join()) out.push(`recent events ${describe(names)} instead of ${describe(wantNames)}`);
    const values = (view.metrics as Array<{ value: number }>).map((m) => m.value);
    const wantValues = this.gauges.slice(-RECENT_LIMIT);
    if (values.join() !== wantValues.join()) out.push(`recent metrics ${describe(values)} instead of ${describe(wantValues)}`);
    const q = await fetch(`${this.url}/queue?session_id=${encodeURIComponent(this.id)}&limit=1`);
    const queue = (await q.json()) as any;
    const want = 1 + this.states + this.events.length + this.gauges.length;
    if (q.status !== 200 || queue.total !== want) out.push(`GET /queue total ${q.status} ${queue.total} instead of ${want} (1 create + ${this.states} states + ${this.events.length} events + ${this.gauges.length} gauges)`);
    return out;
  }

  get rounds(): number {
    return this.events.length;
  }
}

function sortKeys(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o ?? {}).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** DataCat's HTTP API, one request at a time, each answered 200. */
export class HttpProducer extends GoodProducer {
  constructor(url: string) {
    super('http', url);
  }

  private async post(path: string, body: unknown): Promise<any> {
    const res = await fetch(this.url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const answer = (await res.json()) as any;
    if (res.status !== 200) throw new Error(`POST ${path} answered ${res.status} ${describe(answer)}`);
    return answer;
  }

  async start(): Promise<void> {
    this.id = (await this.post('/register', { product: 'good-http', version: '1' })).session_id;
  }

  protected async round(n: number, state: Record<string, number>): Promise<void> {
    await this.post('/state', { session_id: this.id, state });
    await this.post('/event', { session_id: this.id, name: `good-${n}`, data: { n } });
    await this.post('/metric', { session_id: this.id, name: 'good.gauge', value: n, type: 'gauge' });
    this.accepted(n, state);
  }

  async stop(): Promise<void> {}
  abort(): void {}
}

/** The reference TypeScript client: batched, windowed; must see no error and no disconnect. */
export class ClientProducer extends GoodProducer {
  private client: ReturnType<typeof connect> | null = null;
  private session: Awaited<ReturnType<ReturnType<typeof connect>['register']>> | null = null;
  private stopping = false;

  constructor(
    url: string,
    private readonly clientId: string,
  ) {
    super('client', url);
  }

  async start(): Promise<void> {
    const client = connect({ url: this.url, clientId: this.clientId });
    this.client = client;
    client.on('error', (err) => this.problems.push(`client error: ${err.code} ${err.message}`));
    // The one disconnect expected is the one stop() makes (close() reports it too).
    client.on('disconnected', (e) => this.stopping || this.problems.push(`disconnected: ${e.code} ${e.reason}`));
    this.session = await client.register({ product: 'good-client', version: '1' });
    this.id = this.session.id;
  }

  protected async round(n: number, state: Record<string, number>): Promise<void> {
    const s = this.session!;
    const room = [s.updateState(state), s.logEvent(`good-${n}`, { data: { n } }), s.logGauge('good.gauge', n)].every(Boolean);
    // Every op is acked (persisted) before it is counted: the check compares with what is durable.
    await this.client!.flush();
    if (!room) await this.client!.waitForCapacity();
    this.accepted(n, state);
  }

  async stop(): Promise<void> {
    const client = this.client!;
    await client.flush();
    const stats = client.stats;
    if (stats.opsRefused !== 0 || stats.errors !== 0) this.problems.push(`client stats: ${describe(stats)}`);
    this.stopping = true;
    await client.close();
  }

  abort(): void {
    this.client?.close({ timeoutMs: 1 }).catch(() => undefined);
  }
}

/** Raw `batch` frames of one session; every ack must cover them with no error. */
export class BatchProducer extends GoodProducer {
  private sock: FuzzSocket | null = null;
  private q = 0;

  constructor(
    url: string,
    private readonly clientId: string,
  ) {
    super('batch', url);
  }

  async start(): Promise<void> {
    const sock = await FuzzSocket.connect(this.url, this.clientId);
    this.sock = sock;
    await sock.waitWelcome();
    this.q = sock.welcome.acked + 1;
    sock.send(encode({ t: 'ops', ops: [{ q: this.q, k: 'register', product: 'good-batch', version: '1' }] }, 'plain'));
    await sock.waitAcked(this.q);
    this.id = sock.registered.get(this.q)!;
  }

  protected async round(n: number, state: Record<string, number>): Promise<void> {
    const sock = this.sock!;
    const ops = [
      { k: 'state', state },
      { k: 'event', name: `good-${n}`, data: { n } },
      { k: 'metric', name: 'good.gauge', value: n, type: 'gauge' },
    ];
    const q = this.q + 1;
    this.q += ops.length;
    sock.send(encode({ t: 'batch', session_id: this.id, q, n: ops.length, ops: arrayOf(ops.map((o) => encode(o, 'plain'))) }, 'records'));
    await sock.waitAcked(this.q);
    if (sock.errorsByQ.size > 0) throw new Error(`refused: ${describe([...sock.errorsByQ])}`);
    this.accepted(n, state);
  }

  async stop(): Promise<void> {
    if (this.sock?.closed) this.problems.push(`closed ${this.sock.closed.code} ${this.sock.closed.reason}`);
    this.sock?.close();
  }

  abort(): void {
    this.sock?.close();
  }
}
