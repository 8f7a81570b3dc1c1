/**
 * Starting daemons for tests. Integration tests drive the compiled daemon in dist/ (`npm test`
 * builds first): that is what users run, and its workers start in ~0.1 s where tap's TypeScript
 * loader takes ~1.8 s per worker pool.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Daemon, type DaemonOptions } from '../../dist/src/daemon.js';
import { loadConfig, type DaemonConfig } from '../../dist/src/config/index.js';

export type { Daemon };
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = fileURLToPath(new URL('../../bin/datacat-daemon', import.meta.url));

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** Test defaults: a free port, fast retries, small pools. */
export function testConfig(dataDir: string, overrides: Partial<Record<keyof DaemonConfig, unknown>> = {}): DaemonConfig {
  const { config } = loadConfig({ argv: [], env: {}, cwd: dataDir });
  return {
    ...config,
    daemon_port: 0,
    data_dir: dataDir,
    workers: 2,
    retry_base_ms: 50,
    retry_max_ms: 400,
    register_timeout_ms: 500,
    upstream_timeout_ms: 2000,
    log_level: 'silent',
    ...overrides,
  } as DaemonConfig;
}

export interface TestDaemon {
  daemon: Daemon;
  url: string;
  api: JsonClient;
  close(): Promise<void>;
}

/**
 * The actor workers of a daemon run inside a test load dist/*.js: tap's module loaders (its
 * TypeScript, mock and process-info hooks, each an `--import`) would only slow every worker's
 * start by ~1.5 s in all. Other flags (source maps) stay.
 */
const WORKER_EXEC_ARGV = process.execArgv.filter((arg) => !/^--(import|loader|experimental-loader|require)\b/.test(arg));

export async function startTestDaemon(
  t: Teardown,
  dataDir: string,
  overrides: Partial<Record<keyof DaemonConfig, unknown>> = {},
  options: DaemonOptions = {},
): Promise<TestDaemon> {
  const daemon = await Daemon.start(testConfig(dataDir, overrides), { workerExecArgv: WORKER_EXEC_ARGV, ...options });
  await daemon.ready();
  const url = `http://127.0.0.1:${daemon.port}`;
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await daemon.close();
  };
  t.teardown(close);
  return { daemon, url, api: new JsonClient(url), close };
}

export interface JsonAnswer<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

/** A minimal JSON client for the daemon's HTTP API. */
export class JsonClient {
  constructor(
    readonly url: string,
    private readonly headers: Record<string, string> = {},
  ) {}

  async post<T = any>(path: string, body?: unknown, raw?: string | Buffer): Promise<JsonAnswer<T>> {
    const res = await fetch(this.url + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...this.headers },
      body: (raw ?? (body === undefined ? undefined : JSON.stringify(body))) as BodyInit | undefined,
    });
    return { status: res.status, body: await parse(res), headers: res.headers };
  }

  async get<T = any>(path: string): Promise<JsonAnswer<T>> {
    const res = await fetch(this.url + path, { headers: this.headers });
    return { status: res.status, body: await parse(res), headers: res.headers };
  }

  /** POST that must answer 200; returns the body. */
  async ok<T = any>(path: string, body?: unknown): Promise<T> {
    const a = await this.post<T>(path, body);
    if (a.status !== 200) throw new Error(`POST ${path} answered ${a.status}: ${JSON.stringify(a.body)}`);
    return a.body;
  }

  async register(product = 'test-app', version = '1.0.0', extra: Record<string, unknown> = {}): Promise<string> {
    return (await this.ok<{ session_id: string }>('/register', { product, version, ...extra })).session_id;
  }

  /**
   * Registers and waits until the upstream has made the session; returns its server id, the id
   * the upstream's records carry. A register slower than register_timeout_ms (cold workers on
   * a loaded machine) answers the local id, so tests that match upstream records use this.
   */
  async registerOnServer(product = 'test-app', version = '1.0.0', extra: Record<string, unknown> = {}): Promise<string> {
    const id = await this.register(product, version, extra);
    let serverId: string | null = null;
    await until(async () => {
      serverId = (await this.get<{ server_id: string | null }>(`/session?session_id=${encodeURIComponent(id)}`)).body.server_id;
      return serverId !== null;
    }, `a server id for ${id}`, 15_000);
    return serverId!;
  }
}

async function parse(res: Response): Promise<any> {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** A daemon in a child process, started through bin/datacat-daemon like a user would. */
export interface ChildDaemon {
  proc: ChildProcess;
  port: number;
  url: string;
  api: JsonClient;
  stderr: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export async function spawnDaemon(
  t: Teardown,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; detached?: boolean } = {},
): Promise<ChildDaemon> {
  const proc = spawn(process.execPath, [BIN, '--port', '0', '--log-level', 'info', ...args], {
    cwd: options.cwd ?? ROOT,
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', ...options.env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const stderr: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const port = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: proc.stderr! });
    lines.on('line', (line) => {
      stderr.push(line);
      try {
        const msg = JSON.parse(line) as { msg?: string; port?: number };
        if (msg.msg === 'datacat daemon listening' && msg.port) resolve(msg.port);
      } catch {
        /* not a log line */
      }
    });
    void exited.then(({ code, signal }) => reject(new Error(`daemon exited (code ${code}, signal ${signal}) before listening:\n${stderr.join('\n')}`)));
  });
  const url = `http://127.0.0.1:${port}`;
  const child: ChildDaemon = {
    proc,
    port,
    url,
    api: new JsonClient(url),
    stderr,
    exited,
    kill(signal = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
  t.teardown(() => child.kill('SIGKILL'));
  return child;
}

/** Whether a process with this pid exists (signal 0 probes without signalling). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls until `pred` holds (or throws after `timeoutMs` with `what`, and `diagnose()` if given). */
export async function until(pred: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000, diagnose?: () => unknown): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > deadline) {
      const extra = diagnose ? `; ${JSON.stringify(await diagnose())}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${extra}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}
