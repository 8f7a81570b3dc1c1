/**
 * Child processes of the bench CLI: every one is tracked, and all are killed however the CLI
 * ends (normal exit, an error, Ctrl-C, SIGTERM). Measuring in separate processes keeps the
 * daemon, the sinks and the load generator from sharing one event loop, but it also means a
 * crashed CLI must not leave a daemon holding a port and a LevelDB lock behind. Even a SIGKILL of
 * the CLI is covered: our own scripts exit when their stdin pipe closes, and bench/reaper.ts
 * kills the daemon.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const live = new Set<ChildProcess>();
const tmpDirs = new Set<string>();
let hooked = false;

/** Compiled bench scripts live beside this file in dist/bench. */
export function benchScript(name: string): string {
  return fileURLToPath(new URL(`./${name}`, import.meta.url));
}

/** Synchronous on purpose: it also runs from the 'exit' handler, where nothing async runs. */
function killAll(): void {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  live.clear();
  for (const dir of tmpDirs) rmSync(dir, { recursive: true, force: true });
  tmpDirs.clear();
}

/** bench/reaper.ts: cleans up after us if this process dies without running its handlers. */
let reaper: ChildProcess | null = null;

function tellReaper(line: string): void {
  if (reaper?.stdin?.writable) reaper.stdin.write(line + '\n');
}

function hookProcess(): void {
  if (hooked) return;
  hooked = true;
  reaper = spawn(process.execPath, [benchScript('reaper.js')], { stdio: ['pipe', 'ignore', 'ignore'] });
  // Neither the reaper nor its pipe may keep the CLI alive.
  reaper.unref();
  (reaper.stdin as unknown as { unref?: () => void }).unref?.();
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      process.stderr.write(`\nbench: ${signal}, stopping child processes\n`);
      killAll();
      process.exit(130);
    });
  }
}

/** A directory removed when the CLI exits (if the caller has not removed it already). */
export function trackTmpDir(dir: string): void {
  hookProcess();
  tmpDirs.add(dir);
  tellReaper(`dir ${dir}`);
}

export function untrackTmpDir(dir: string): void {
  tmpDirs.delete(dir);
  rmSync(dir, { recursive: true, force: true });
  tellReaper(`undir ${dir}`);
}

/**
 * Spawns `node <script> [...args]`, tracked. stdin is a pipe that the child watches (see
 * `exitWithParent`): if the CLI dies even by SIGKILL, the pipe closes and our own children exit.
 */
export function spawnTracked(script: string, args: string[], options: SpawnOptions = {}): ChildProcess {
  hookProcess();
  const child = spawn(process.execPath, [script, ...args], { stdio: ['pipe', 'pipe', 'pipe'], ...options });
  live.add(child);
  tellReaper(`pid ${child.pid}`);
  child.on('exit', () => {
    live.delete(child);
    tellReaper(`unpid ${child.pid}`);
  });
  return child;
}

/** Called by child scripts: exit when the parent's end of stdin closes (the parent is gone). */
export function exitWithParent(): void {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export function exited(child: ChildProcess): Promise<ExitInfo> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** SIGTERM, then SIGKILL after `graceMs`. Resolves with how the child ended. */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<ExitInfo & { forced: boolean }> {
  if (child.exitCode !== null || child.signalCode !== null) return { code: child.exitCode, signal: child.signalCode, forced: false };
  child.kill('SIGTERM');
  let forced = false;
  const timer = setTimeout(() => {
    forced = true;
    child.kill('SIGKILL');
  }, graceMs);
  const info = await exited(child);
  clearTimeout(timer);
  return { ...info, forced };
}

/** Calls `onLine` for every line of a stream (stdout/stderr of a child). */
export function eachLine(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  createInterface({ input: stream, crlfDelay: Infinity }).on('line', onLine);
}

/** Parses a line as a JSON object, or null when it is not one (a stray log line). */
export function jsonLine(line: string): Record<string, any> | null {
  if (!line.startsWith('{')) return null;
  try {
    return JSON.parse(line) as Record<string, any>;
  } catch {
    return null;
  }
}

/**
 * Waits for the first JSON line on `stream` that `match` accepts; rejects if the child exits
 * first or after `timeoutMs`, with what it wrote to stderr (why a daemon refused to start).
 */
export function waitForJsonLine(
  child: ChildProcess,
  stream: NodeJS.ReadableStream,
  match: (msg: Record<string, any>) => boolean,
  what: string,
  timeoutMs = 15_000,
): Promise<Record<string, any>> {
  return new Promise((resolve, reject) => {
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 4000) stderr += d.toString();
    });
    const timer = setTimeout(() => finish(new Error(`${what}: no ready line after ${timeoutMs} ms\n${stderr}`)), timeoutMs);
    const onExit = (code: number | null, signal: string | null): void =>
      finish(new Error(`${what} exited (${signal ?? `code ${code}`}) before it was ready\n${stderr.trim()}`));
    let done = false;
    function finish(err: Error | null, msg?: Record<string, any>): void {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(msg!);
    }
    child.once('exit', onExit);
    eachLine(stream, (line) => {
      const msg = jsonLine(line);
      if (msg && match(msg)) finish(null, msg);
    });
  });
}
