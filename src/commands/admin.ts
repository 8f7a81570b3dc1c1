/**
 * What the admin subcommands (status, queue, flush, replay) share: splitting their own flags from
 * the daemon's configuration flags, finding the running daemon from that configuration, one
 * HTTP request to it, and turning every failure into one line and an exit code.
 */
import { CONFIG_KEYS, ConfigError, flagName, loadConfig, type DaemonConfig } from '../config/index.js';

/** A failure the CLI reports as `datacat-daemon: <message>` and exits with `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    /** 1: the daemon is unreachable or answered an error; 2: bad usage or configuration. */
    readonly exitCode: 1 | 2,
  ) {
    super(message);
  }
}

export const usageError = (message: string): CliError => new CliError(message, 2);

/** The flags a subcommand itself understands, as parsed from the command line. */
export interface CommandFlags {
  has(name: string): boolean;
  get(name: string): string | undefined;
}

export interface CommandContext {
  flags: CommandFlags;
  /** The resolved configuration (the same sources the daemon reads). */
  config: DaemonConfig;
  daemon: DaemonClient;
  /** Writes to stdout; a command prints its result and nothing else there. */
  print(text: string): void;
}

export interface AdminCommand {
  name: string;
  /** One line for the command overview. */
  summary: string;
  /** The full `--help` text. */
  usage: string;
  booleanFlags: readonly string[];
  valueFlags: readonly string[];
  run(ctx: CommandContext): Promise<void>;
}

// Every configuration flag loadConfig accepts, and whether it consumes the next argument, so the
// subcommand parser can pass them through untouched and still reject what neither side knows
// (loadConfig would only warn, and a typo like `--lmit 5` must not be silently ignored).
const CONFIG_FLAGS = new Map<string, { takesValue: boolean }>([['config', { takesValue: true }]]);
for (const key of CONFIG_KEYS) {
  const takesValue = key.type.kind !== 'boolean';
  for (const name of [flagName(key.name), ...(key.flagAliases ?? [])]) CONFIG_FLAGS.set(name, { takesValue });
  if (!takesValue) CONFIG_FLAGS.set(`no-${flagName(key.name)}`, { takesValue: false });
}

export interface ParsedArgs {
  flags: CommandFlags;
  /** What is left for loadConfig: the configuration flags, in their order. */
  configArgv: string[];
  help: boolean;
}

/** Splits `args` (after the subcommand name) into the command's flags and configuration flags. */
export function parseArgs(command: AdminCommand, args: readonly string[]): ParsedArgs {
  const values = new Map<string, string>();
  const booleans = new Set<string>();
  const configArgv: string[] = [];
  let help = false;

  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    if (!arg.startsWith('--')) throw usageError(`${command.name}: unexpected argument "${arg}" (see \`datacat-daemon ${command.name} --help\`)`);
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const inline = eq === -1 ? undefined : arg.slice(eq + 1);

    if (command.booleanFlags.includes(name)) {
      if (inline !== undefined) throw usageError(`${command.name}: --${name} takes no value (got "${arg}")`);
      booleans.add(name);
    } else if (command.valueFlags.includes(name)) {
      const value = inline ?? args[++i];
      if (value === undefined || (inline === undefined && value.startsWith('--'))) throw usageError(`${command.name}: --${name} needs a value`);
      values.set(name, value);
    } else if (CONFIG_FLAGS.has(name)) {
      configArgv.push(arg);
      // A missing value is left for loadConfig to report, in its words.
      const next = args[i + 1];
      if (CONFIG_FLAGS.get(name)!.takesValue && inline === undefined && next !== undefined && !next.startsWith('--')) configArgv.push(args[++i]!);
    } else {
      throw usageError(`${command.name}: unknown flag --${name} (see \`datacat-daemon ${command.name} --help\`)`);
    }
  }
  return { flags: { has: (n) => booleans.has(n), get: (n) => values.get(n) }, configArgv, help };
}

/**
 * The daemon's configuration, read from the same sources the daemon reads (flags, DATACAT_*,
 * DATACAT_CONFIG / --config, ./daemon_config.json), so a subcommand finds the daemon that the
 * same environment started. Warnings (unknown keys in the file) are the daemon's business.
 */
export function readConfig(configArgv: readonly string[]): DaemonConfig {
  try {
    return loadConfig({ argv: configArgv, env: process.env, cwd: process.cwd() }).config;
  } catch (err) {
    if (err instanceof ConfigError) throw usageError(err.message);
    throw err;
  }
}

/** The URL to reach a daemon configured with `config`. */
export function daemonUrl(config: Pick<DaemonConfig, 'host' | 'daemon_port'>): string {
  if (config.daemon_port === 0) {
    throw usageError('daemon_port is 0 (the daemon picks a free port): pass the port it listens on with --port');
  }
  // A daemon bound to every interface is reachable on loopback; the wildcard itself is not an
  // address to connect to on every platform.
  const host = config.host === '0.0.0.0' ? '127.0.0.1' : config.host === '::' ? '::1' : config.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${config.daemon_port}`;
}

export interface RequestOptions {
  method?: 'GET' | 'POST';
  /** Milliseconds before giving up on the daemon. */
  timeoutMs?: number;
}

/** One request at a time to the daemon's HTTP API; every failure becomes a CliError (exit 1). */
export class DaemonClient {
  constructor(
    readonly baseUrl: string,
    private readonly authToken: string | null,
  ) {}

  async request<T>(path: string, { method = 'GET', timeoutMs = 10_000 }: RequestOptions = {}): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.authToken) headers['authorization'] = `Bearer ${this.authToken}`;
    if (method === 'POST') headers['content-type'] = 'application/json';
    let res: Response;
    let text: string;
    try {
      res = await fetch(this.baseUrl + path, {
        method,
        headers,
        body: method === 'POST' ? '{}' : undefined,
        signal: AbortSignal.timeout(timeoutMs),
      });
      text = await res.text();
    } catch (err) {
      if (err instanceof Error && err.name === 'TimeoutError') {
        throw new CliError(`the daemon at ${this.baseUrl} did not answer ${method} ${path} within ${timeoutMs / 1000} s`, 1);
      }
      throw new CliError(`cannot reach the daemon at ${this.baseUrl} (${networkReason(err)}): is it running? (--port/--config pick another one)`, 1);
    }

    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new CliError(`${this.baseUrl}${path} answered ${res.status} with something that is not JSON: is a datacat daemon listening there?`, 1);
    }
    if (res.ok) return body as T;

    const { error, details } = (body ?? {}) as { error?: unknown; details?: unknown };
    let message = `the daemon answered ${method} ${path} with ${res.status}`;
    if (typeof error === 'string') message += ` ${error}`;
    if (typeof details === 'string') message += `: ${details}`;
    if (res.status === 401 && !this.authToken) message += ' (pass --auth-token, or set DATACAT_AUTH_TOKEN or auth_token in the config file)';
    throw new CliError(message, 1);
  }
}

/** The short reason fetch failed: undici hides the socket error (ECONNREFUSED...) in `cause`. */
function networkReason(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string; errors?: Array<{ code?: string }> } })?.cause;
  // `localhost` may resolve to both ::1 and 127.0.0.1: Node then reports an AggregateError.
  return cause?.code ?? cause?.errors?.[0]?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
}

// ---------------------------------------------------------------------------
// Output helpers
// ---------------------------------------------------------------------------

export function printJson(ctx: CommandContext, value: unknown): void {
  ctx.print(JSON.stringify(value, null, 2));
}

/** 850 ms, 8.2 s, 3.5 min, 2.1 h, 4.0 d: enough precision to read an age at a glance. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  const units: Array<[number, string]> = [[86_400_000, 'd'], [3_600_000, 'h'], [60_000, 'min'], [1000, 's']];
  const [size, unit] = units.find(([size]) => ms >= size)!;
  return `${(ms / size).toFixed(1)} ${unit}`;
}

export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return '?';
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let i = 0;
  for (; value >= 1024 && i < units.length - 1; i++) value /= 1024;
  return `${value.toFixed(1)} ${units[i]}`;
}

/** Left-aligned columns separated by two spaces, without trailing blanks. */
export function formatTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const all = [header, ...rows];
  const widths = header.map((_, col) => Math.max(...all.map((row) => (row[col] ?? '').length)));
  return all.map((row) => row.map((cell, col) => cell.padEnd(widths[col]!)).join('  ').trimEnd()).join('\n');
}

/** `1 op`, `2 ops`. */
export const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

// ---------------------------------------------------------------------------
// Running one
// ---------------------------------------------------------------------------

/** Runs `command` with the arguments after its name; resolves to the process exit code. */
export async function runAdminCommand(command: AdminCommand, args: readonly string[]): Promise<number> {
  try {
    const { flags, configArgv, help } = parseArgs(command, args);
    if (help) {
      process.stdout.write(`${command.usage}\n\n${CONFIG_FLAGS_HELP}\n`);
      return 0;
    }
    const config = readConfig(configArgv);
    const daemon = new DaemonClient(daemonUrl(config), config.auth_token);
    await command.run({ flags, config, daemon, print: (text) => process.stdout.write(`${text}\n`) });
    return 0;
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    process.stderr.write(`datacat-daemon: ${err.message}\n`);
    return err.exitCode;
  }
}

export const CONFIG_FLAGS_HELP = `Config flags: every configuration key has a flag (README.md, "Configuration"), e.g. --port,
--host, --config FILE, --auth-token. Commands read the same flags, DATACAT_* variables and
config file (--config, DATACAT_CONFIG, ./daemon_config.json) as the daemon, so they find it
where it listens and send its auth_token.`;
