/**
 * The daemon under fuzz: a child process (bin/datacat-daemon, through the harness's
 * spawnDaemon), so that its memory is its own. Small limits (limits.ts), the upstream down
 * (127.0.0.1:9 refuses), and an inspector port, through which the test forces a full GC before
 * it reads the heap (the daemon has no GC hook of its own), and looks at Object.prototype.
 */
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { spawnDaemon, until, type ChildDaemon } from '../daemon-harness.js';
import { LIMITS } from './limits.js';
import { RECENT_LIMIT } from './good.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface Memory {
  /** Main-thread heap in use after a full GC (bytes). */
  heapUsed: number;
  /** The session-actor workers' heaps in use after a full GC, summed (bytes). */
  workersHeapUsed: number;
  /** Main-thread memory outside the heap: Buffers and other external allocations (bytes). */
  external: number;
  /** Resident set of the whole process, workers and LevelDB included (bytes). */
  rss: number;
}

export class FuzzDaemon {
  private constructor(
    readonly child: ChildDaemon,
    private readonly inspectorUrl: string,
  ) {}

  /**
   * Runs `fn` with an inspector session, attached only for as long as it takes (an attached
   * session was seen to stall the daemon's main thread under load).
   */
  private async inspect<T>(fn: (i: Inspector) => Promise<T>): Promise<T> {
    const inspector = await Inspector.connect(this.inspectorUrl);
    try {
      return await fn(inspector);
    } finally {
      inspector.close();
    }
  }

  get url(): string {
    return this.child.url;
  }

  get pid(): number {
    return this.child.proc.pid!;
  }

  get alive(): boolean {
    return this.child.proc.exitCode === null && this.child.proc.signalCode === null;
  }

  /** Starts one; the upstream is down (127.0.0.1:9 refuses) unless `serverUrl` names one. */
  static async start(t: Teardown, dataDir: string, options: { serverUrl?: string } = {}): Promise<FuzzDaemon> {
    const flags: Record<string, string | number> = {
      'data-dir': dataDir,
      'server-url': options.serverUrl ?? 'http://127.0.0.1:9',
      workers: 2,
      'max-body-bytes': LIMITS.max_body_bytes,
      'max-frame-bytes': LIMITS.max_frame_bytes,
      'max-ops-per-frame': LIMITS.max_ops_per_frame,
      'max-depth': LIMITS.max_depth,
      'max-string-length': LIMITS.max_string_length,
      'max-name-length': LIMITS.max_name_length,
      'recent-events-limit': RECENT_LIMIT,
      'recent-metrics-limit': RECENT_LIMIT,
      // No session of the run may turn hung (a daemon-made event in a good session's history).
      'heartbeat-timeout-seconds': 3600,
      'register-timeout-ms': 50,
    };
    const args = Object.entries(flags).flatMap(([k, v]) => [`--${k}`, String(v)]);
    const child = await spawnDaemon(t, args, { env: { NODE_OPTIONS: '--inspect=127.0.0.1:0' } });
    let inspectorUrl = '';
    await until(() => {
      const line = child.stderr.find((l) => l.includes('Debugger listening on ws://'));
      inspectorUrl = line ? line.slice(line.indexOf('ws://')).trim() : '';
      return inspectorUrl !== '';
    }, 'the inspector url', 5000);
    return new FuzzDaemon(child, inspectorUrl);
  }

  /** Heap after a full GC, and RSS. */
  async memory(): Promise<Memory> {
    const usage = 'JSON.stringify(process.memoryUsage())';
    const { main, workers } = await this.inspect(async (inspector) => {
      await inspector.call('HeapProfiler.collectGarbage');
      await inspector.call('HeapProfiler.collectGarbage');
      const main = JSON.parse((await inspector.call('Runtime.evaluate', { expression: usage, returnByValue: true })).result.value);
      const workers: number[] = [];
      for (const worker of await inspector.workers()) {
        await worker('HeapProfiler.collectGarbage');
        await worker('HeapProfiler.collectGarbage');
        workers.push(JSON.parse((await worker('Runtime.evaluate', { expression: usage, returnByValue: true })).result.value).heapUsed);
      }
      return { main, workers };
    });
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
    return { heapUsed: main.heapUsed, external: main.external, workersHeapUsed: workers.reduce((a, b) => a + b, 0), rss: rssKb * 1024 };
  }

  /** Own properties Object.prototype should not have (prototype pollution), in the daemon's main thread. */
  async prototypePollution(): Promise<string[]> {
    const expression = `(() => { const extra = Object.getOwnPropertyNames(Object.prototype).filter((k) => !${JSON.stringify(BUILTIN_OBJECT_PROTO)}.includes(k)); if (({}).polluted !== undefined) extra.push('polluted'); return extra; })()`;
    const { result } = await this.inspect((inspector) => inspector.call('Runtime.evaluate', { expression, returnByValue: true }));
    return result.value as string[];
  }
}

const BUILTIN_OBJECT_PROTO = Object.getOwnPropertyNames(Object.prototype);

type Call = (method: string, params?: Record<string, unknown>) => Promise<any>;

/** A minimal Chrome DevTools Protocol client over the inspector's WebSocket (workers through NodeWorker). */
class Inspector {
  private id = 0;
  private readonly pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  private readonly events: Array<{ method: string; params: any }> = [];
  private readonly workerPending = new Map<string, (msg: any) => void>();

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const msg = JSON.parse(String(data)) as { id?: number; method?: string; params?: any; result?: unknown; error?: { message: string } };
      if (msg.method === 'NodeWorker.receivedMessageFromWorker') {
        const inner = JSON.parse(msg.params.message) as { id?: number };
        const key = `${msg.params.sessionId}/${inner.id}`;
        this.workerPending.get(key)?.(inner);
        this.workerPending.delete(key);
        return;
      }
      if (msg.method) this.events.push({ method: msg.method, params: msg.params });
      const p = msg.id !== undefined ? this.pending.get(msg.id) : undefined;
      if (!p) return;
      this.pending.delete(msg.id!);
      if (msg.error) p.reject(new Error(msg.error.message));
      else p.resolve(msg.result);
    });
    ws.on('error', () => undefined);
  }

  /** A call function per worker thread (the session-actor pool). */
  async workers(): Promise<Call[]> {
    await this.call('NodeWorker.enable', { waitForDebuggerOnStart: false });
    await new Promise((r) => setTimeout(r, 200)); // attachedToWorker events for the running workers
    const sessions = this.events.filter((e) => e.method === 'NodeWorker.attachedToWorker').map((e) => e.params.sessionId as string);
    return sessions.map((sessionId) => {
      let id = 0;
      return (method, params = {}) =>
        new Promise((resolve, reject) => {
          const msgId = ++id;
          this.workerPending.set(`${sessionId}/${msgId}`, (inner: { result?: unknown; error?: { message: string } }) => (inner.error ? reject(new Error(inner.error.message)) : resolve(inner.result)));
          void this.call('NodeWorker.sendMessageToWorker', { sessionId, message: JSON.stringify({ id: msgId, method, params }) }).catch(reject);
          setTimeout(() => {
            if (this.workerPending.delete(`${sessionId}/${msgId}`)) reject(new Error(`worker inspector ${method}: no answer in 30 s`));
          }, 30_000).unref();
        });
    });
  }

  static connect(url: string): Promise<Inspector> {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new Inspector(ws)));
      ws.once('error', reject);
    });
  }

  call(method: string, params: Record<string, unknown> = {}): Promise<any> {
    const id = ++this.id;
    this.ws.send(JSON.stringify({ id, method, params }));
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      setTimeout(() => {
        if (this.pending.delete(id)) reject(new Error(`inspector ${method}: no answer in 30 s`));
      }, 30_000).unref();
    });
  }

  close(): void {
    this.ws.close();
  }
}
