/**
 * The configuration schema: one row per key in CONFIG_KEYS.
 *
 * Defaults, env var names, flag names, validation and the README table are all
 * derived from that table, so adding a key means adding one DaemonConfig
 * property and one row — nothing else.
 */
import os from 'node:os';
import path from 'node:path';

export type OverflowPolicy = 'block' | 'drop_oldest' | 'drop_newest';
export type Durability = 'process' | 'fsync';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

/**
 * The resolved daemon configuration. Property names are the config keys
 * verbatim (snake_case), so the JSON file, the docs and the code grep the same.
 */
export interface DaemonConfig {
  readonly daemon_port: number;
  readonly host: string;
  readonly server_url: string;
  readonly api_key: string | null;
  readonly enable_compression: boolean;
  readonly tls_insecure_skip_verify: boolean;
  readonly batch_interval_seconds: number;
  readonly max_batch_size: number;
  readonly heartbeat_timeout_seconds: number;
  readonly data_dir: string;
  readonly retry_base_ms: number;
  readonly retry_max_ms: number;
  readonly queue_max_bytes: number;
  readonly overflow: OverflowPolicy;
  readonly durability: Durability;
  readonly workers: number;
  readonly auth_token: string | null;
  readonly max_body_bytes: number;
  readonly max_depth: number;
  readonly max_string_length: number;
  readonly max_name_length: number;
  readonly max_frame_bytes: number;
  readonly max_ops_per_frame: number;
  readonly ws_max_inflight_ops: number;
  readonly max_pending_bytes: number;
  readonly session_idle_seconds: number;
  readonly register_timeout_ms: number;
  readonly upstream_timeout_ms: number;
  readonly sync_concurrency: number;
  readonly recent_events_limit: number;
  readonly recent_metrics_limit: number;
  readonly exit_with_parent: boolean;
  readonly exit_drain_seconds: number;
  readonly upstream_heartbeat_seconds: number;
  readonly log_level: LogLevel;
}

export type ConfigKeyName = keyof DaemonConfig;

// ---------------------------------------------------------------------------
// Value types: one small parser per type.
//
// A raw value is whatever a source supplied: any JSON value from the config
// file, a string from env/flags, or a boolean from a bare `--flag` /
// `--no-flag`. Every parser accepts its native JSON type *and* the string
// form, because env and flags only carry strings and DataCat itself writes
// daemon_port into the JSON file as either a string or a number; accepting
// strings uniformly keeps one parser per type instead of per-key exceptions.
// ---------------------------------------------------------------------------

/** Returned by a parser for an unacceptable value; the loader turns it into a ConfigError. */
export const INVALID: unique symbol = Symbol('invalid config value');

export interface ParseContext {
  /** Relative paths resolve against this directory. */
  readonly cwd: string;
}

export interface ValueType<T> {
  readonly kind: 'integer' | 'number' | 'boolean' | 'string' | 'nullable-string' | 'enum' | 'url' | 'path';
  /** Short form for the README, e.g. "integer 0..65535". */
  readonly doc: string;
  /** Completes "<key> must be …" in error messages, e.g. "an integer between 0 and 65535". */
  readonly expected: string;
  parse(raw: unknown, ctx: ParseContext): T | typeof INVALID;
}

// Plain decimal notation only: Number('') is 0 and Number('0x1f') is 31,
// neither of which anyone means in a port or a timeout.
const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

function toNumber(raw: unknown): number {
  if (typeof raw === 'number') return raw;
  if (typeof raw === 'string' && DECIMAL.test(raw)) return Number(raw);
  return Number.NaN;
}

/** Integer in [min, max]; with no max, just ≥ min. */
export function int(min: number, max?: number): ValueType<number> {
  const hi = max ?? Number.MAX_SAFE_INTEGER;
  return {
    kind: 'integer',
    doc: max === undefined ? `integer ≥ ${min}` : `integer ${min}..${max}`,
    expected: max === undefined ? `an integer >= ${min}` : `an integer between ${min} and ${max}`,
    parse(raw) {
      const n = toNumber(raw);
      return Number.isSafeInteger(n) && n >= min && n <= hi ? n : INVALID;
    },
  };
}

/** Finite number strictly greater than zero (intervals and timeouts in seconds); with a max, at most that. */
export function positiveNumber(max?: number): ValueType<number> {
  const hi = max ?? Number.MAX_VALUE;
  return {
    kind: 'number',
    doc: max === undefined ? 'number > 0' : `number > 0, at most ${max}`,
    expected: max === undefined ? 'a number > 0' : `a number > 0 and <= ${max}`,
    parse(raw) {
      const n = toNumber(raw);
      return Number.isFinite(n) && n > 0 && n <= hi ? n : INVALID;
    },
  };
}

/**
 * Node's timers take at most 2^31-1 ms (~24.8 days): a longer delay is replaced by 1 ms, with a
 * TimeoutOverflowWarning, so a "once a month" heartbeat would fire a thousand times a second and
 * a long retry delay would retry in a tight loop. Every key that becomes a timer delay is
 * therefore bounded by this, refused at startup past it.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** The same bound in whole seconds (2147483 s), for the keys given in seconds. */
export const MAX_TIMER_SECONDS = Math.floor(MAX_TIMER_MS / 1000);

/** Says why the bound is what it is, in the error message: the number alone looks arbitrary. */
const timerBound = (type: ValueType<number>): ValueType<number> => ({ ...type, expected: `${type.expected}, Node's timer limit of ~24.8 days` });
/** A delay in milliseconds that ends up in setTimeout/setInterval. */
const timerMs = (min: number): ValueType<number> => timerBound(int(min, MAX_TIMER_MS));
/** The same in seconds: whole ones (min..MAX_TIMER_SECONDS), or any number > 0 up to it. */
const timerSeconds = (min?: number): ValueType<number> => timerBound(min === undefined ? positiveNumber(MAX_TIMER_SECONDS) : int(min, MAX_TIMER_SECONDS));

const TRUE_WORDS = new Set(['true', '1', 'yes']);
const FALSE_WORDS = new Set(['false', '0', 'no']);

/** Whether `word` spells a boolean (any case): what a boolean flag takes as a separate value. */
export function isBooleanWord(word: string): boolean {
  const w = word.toLowerCase();
  return TRUE_WORDS.has(w) || FALSE_WORDS.has(w);
}

export function bool(): ValueType<boolean> {
  return {
    kind: 'boolean',
    doc: 'boolean',
    expected: 'a boolean (true/false/1/0/yes/no)',
    parse(raw) {
      if (typeof raw === 'boolean') return raw;
      if (typeof raw !== 'string') return INVALID;
      const word = raw.toLowerCase();
      if (TRUE_WORDS.has(word)) return true;
      if (FALSE_WORDS.has(word)) return false;
      return INVALID;
    },
  };
}

/** Non-empty string. */
export function str(): ValueType<string> {
  return {
    kind: 'string',
    doc: 'string',
    expected: 'a non-empty string',
    parse: (raw) => (typeof raw === 'string' && raw !== '' ? raw : INVALID),
  };
}

/**
 * String or null (a secret that may be absent). The empty string also means
 * null, so `DATACAT_API_KEY=` can clear a key set in the config file.
 * (JSON null is handled by the loader: it means "unset" for every key.)
 */
export function nullableStr(): ValueType<string | null> {
  return {
    kind: 'nullable-string',
    doc: 'string or null',
    expected: 'a string or null',
    parse: (raw) => (typeof raw === 'string' ? raw || null : INVALID),
  };
}

export function oneOf<const V extends readonly string[]>(values: V): ValueType<V[number]> {
  const allowed: readonly string[] = values;
  return {
    kind: 'enum',
    doc: `one of ${values.join(', ')}`,
    expected: `one of ${values.map((v) => JSON.stringify(v)).join(', ')}`,
    parse: (raw) => (typeof raw === 'string' && allowed.includes(raw) ? (raw as V[number]) : INVALID),
  };
}

/**
 * http(s) base URL. One trailing slash is stripped so callers can append
 * "/api/..." paths without producing "//".
 */
export function httpUrl(): ValueType<string> {
  return {
    kind: 'url',
    doc: 'http(s) URL',
    expected: 'an http:// or https:// URL',
    parse(raw) {
      // `new URL` silently trims surrounding whitespace; reject it instead of
      // keeping a string that differs from what was parsed.
      if (typeof raw !== 'string' || /\s/.test(raw)) return INVALID;
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        return INVALID;
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') return INVALID;
      return raw.endsWith('/') ? raw.slice(0, -1) : raw;
    },
  };
}

/** Filesystem path; relative paths resolve against cwd so the result is always absolute. */
export function filePath(): ValueType<string> {
  return {
    kind: 'path',
    doc: 'path',
    expected: 'a non-empty path',
    parse: (raw, ctx) => (typeof raw === 'string' && raw !== '' ? path.resolve(ctx.cwd, raw) : INVALID),
  };
}

// ---------------------------------------------------------------------------
// Defaults
// ---------------------------------------------------------------------------

/**
 * A default that depends on the environment or on other keys' final values.
 * Computed defaults run after every plain key is resolved, so they may read
 * plain keys from `config` (but not other computed keys).
 */
export class ComputedDefault<T> {
  constructor(
    /** How the README describes the default. */
    readonly doc: string,
    readonly compute: (config: DaemonConfig, env: NodeJS.ProcessEnv) => T,
  ) {}
}

function computed<T>(doc: string, compute: (config: DaemonConfig, env: NodeJS.ProcessEnv) => T): ComputedDefault<T> {
  return new ComputedDefault(doc, compute);
}

/** `<XDG_DATA_HOME or ~/.local/share>/datacat-daemon/port-<daemon_port>`: one store per port so several daemons can coexist. */
function defaultDataDir(config: DaemonConfig, env: NodeJS.ProcessEnv): string {
  // The XDG spec says relative values are invalid and must be ignored.
  const xdg = env.XDG_DATA_HOME;
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(env.HOME || os.homedir(), '.local', 'share');
  return path.join(base, 'datacat-daemon', `port-${config.daemon_port}`);
}

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

export interface ConfigKey<K extends ConfigKeyName = ConfigKeyName> {
  readonly name: K;
  readonly type: ValueType<DaemonConfig[K]>;
  readonly default: DaemonConfig[K] | ComputedDefault<DaemonConfig[K]>;
  /** Extra flag names (without "--") accepted besides the one derived from `name`. */
  readonly flagAliases?: readonly string[];
  readonly description: string;
}

/** Any row of the table; each member ties a key's parser and default to its DaemonConfig type. */
export type AnyConfigKey = { [K in ConfigKeyName]: ConfigKey<K> }[ConfigKeyName];

const KEY_TABLE = [
  { name: 'daemon_port', type: int(0, 65535), default: 8079, flagAliases: ['port'],
    description: 'port for HTTP + WebSocket (0 = pick a free port; used by tests)' },
  { name: 'host', type: str(), default: '127.0.0.1',
    description: 'bind address' },
  { name: 'server_url', type: httpUrl(), default: 'http://localhost:9090',
    description: 'DataCat server base URL (one trailing slash is stripped)' },
  { name: 'api_key', type: nullableStr(), default: null,
    description: 'sent upstream as `Authorization: Bearer`' },
  { name: 'enable_compression', type: bool(), default: false,
    description: 'gzip request bodies upstream' },
  { name: 'tls_insecure_skip_verify', type: bool(), default: false,
    description: 'skip upstream TLS certificate verification' },
  // Bounded like the timers: the duty tick is derived from it (dutyTickMs), and past ~1e305 s
  // that arithmetic gives NaN, which setInterval takes for 1 ms.
  { name: 'batch_interval_seconds', type: timerSeconds(), default: 5,
    description: 'how often counter/histogram aggregates are sent upstream (fractions allowed; at most 10 times a second)' },
  { name: 'max_batch_size', type: int(1), default: 100,
    description: "ops one session sends upstream before its sync slot goes to the next waiting session" },
  { name: 'heartbeat_timeout_seconds', type: positiveNumber(), default: 60,
    description: 'no heartbeat for this long marks a session hung' },
  { name: 'data_dir', type: filePath(),
    default: computed('$XDG_DATA_HOME/datacat-daemon/port-<daemon_port> (XDG_DATA_HOME defaults to ~/.local/share)', defaultDataDir),
    description: 'LevelDB location; relative paths resolve against the working directory' },
  { name: 'retry_base_ms', type: timerMs(1), default: 500,
    description: 'first retry delay' },
  { name: 'retry_max_ms', type: timerMs(1), default: 30000,
    description: 'retry delay cap; must be >= retry_base_ms' },
  { name: 'queue_max_bytes', type: int(1), default: 1073741824,
    description: 'outbox size bound' },
  { name: 'overflow', type: oneOf(['block', 'drop_oldest', 'drop_newest']), default: 'block',
    description: 'what happens when the outbox is full' },
  { name: 'durability', type: oneOf(['process', 'fsync']), default: 'process',
    description: 'process: acked ops survive a daemon crash; fsync: also power loss' },
  { name: 'workers', type: int(1, 64),
    // Enough parallelism to matter, without one actor thread per core on big boxes.
    default: computed('max(2, min(8, available CPUs))', () => Math.max(2, Math.min(8, os.availableParallelism()))),
    description: 'session-actor pool size' },
  { name: 'auth_token', type: nullableStr(), default: null,
    description: 'when set, clients must present it' },
  { name: 'max_body_bytes', type: int(1024), default: 4194304,
    description: 'HTTP body limit' },
  { name: 'max_depth', type: int(1, 1000), default: 64,
    description: 'nesting limit for JSON/MessagePack values' },
  { name: 'max_string_length', type: int(16), default: 65536,
    description: 'longest string value accepted' },
  { name: 'max_name_length', type: int(8), default: 256,
    description: 'longest name/id/product/version/category/tag accepted' },
  { name: 'max_frame_bytes', type: int(1024), default: 4194304,
    description: 'WebSocket frame limit' },
  { name: 'max_ops_per_frame', type: int(1), default: 10000,
    description: 'WebSocket ops per frame' },
  { name: 'ws_max_inflight_ops', type: int(1), default: 100000,
    description: 'ops one WebSocket connection may have received and not yet acked before the daemon stops reading it' },
  { name: 'max_pending_bytes', type: int(1048576), default: 268435456,
    description: 'bytes accepted and not yet written to LevelDB past which the daemon stops reading WebSocket connections' },
  { name: 'session_idle_seconds', type: positiveNumber(), default: 60,
    description: 'an ended session idle this long leaves worker memory (it is reloaded from its snapshot if needed)' },
  { name: 'register_timeout_ms', type: timerMs(0), default: 500,
    description: "how long /register waits for the server's id before answering a local id" },
  { name: 'upstream_timeout_ms', type: timerMs(100), default: 10000,
    description: 'per upstream request timeout' },
  { name: 'sync_concurrency', type: int(1, 1024), default: 32,
    description: 'sessions synced concurrently' },
  { name: 'recent_events_limit', type: int(0, 10000), default: 100,
    description: 'recent events kept per session for offline reads' },
  { name: 'recent_metrics_limit', type: int(0, 10000), default: 100,
    description: 'recent metrics kept per session' },
  { name: 'exit_with_parent', type: bool(),
    // DataCat clients start a per-application daemon through DATACAT_CONFIG and expect it to go
    // with them, so that is the default there; but only the default: an explicit false from any
    // layer (file, env, flag) keeps a daemon started that way running on its own.
    default: computed('true when started through DATACAT_CONFIG, else false', (_config, env) => Boolean(env['DATACAT_CONFIG'])),
    description: 'exit when the process that started the daemon exits, after marking its active sessions crashed' },
  { name: 'exit_drain_seconds', type: timerSeconds(0), default: 10,
    description: 'when the daemon exits with its parent: how long it may keep syncing queued ops first (0 = exit once persisted)' },
  { name: 'upstream_heartbeat_seconds', type: timerSeconds(), default: 30,
    description: 'how often upstream heartbeats are sent for live sessions while online' },
  { name: 'log_level', type: oneOf(['debug', 'info', 'warn', 'error', 'silent']), default: 'info',
    description: 'log verbosity' },
] as const satisfies readonly AnyConfigKey[];

// Compile-time guard: every DaemonConfig property has a row. If this line
// errors, the type shows which keys are missing from KEY_TABLE.
type MissingKeys = Exclude<ConfigKeyName, (typeof KEY_TABLE)[number]['name']>;
const everyKeyHasARow: [MissingKeys] extends [never] ? true : MissingKeys = true;
void everyKeyHasARow;

/** Every config key, in documentation order. */
export const CONFIG_KEYS: readonly AnyConfigKey[] = KEY_TABLE;

// ---------------------------------------------------------------------------
// Names derived from the table
// ---------------------------------------------------------------------------

/** `daemon_port` → `DATACAT_DAEMON_PORT` */
export function envVarName(key: ConfigKeyName): string {
  return `DATACAT_${key.toUpperCase()}`;
}

/** `daemon_port` → `daemon-port` (without the leading "--"). */
export function flagName(key: ConfigKeyName): string {
  return key.replace(/_/g, '-');
}

/** Every flag spelling a key accepts, with "--", for docs and help text. */
export function flagSpellings(key: AnyConfigKey): string[] {
  const names = [flagName(key.name), ...(key.flagAliases ?? [])].map((n) => `--${n}`);
  if (key.type.kind === 'boolean') names.push(`--no-${flagName(key.name)}`);
  return names;
}

function describeDefault(key: AnyConfigKey): string {
  return key.default instanceof ComputedDefault ? key.default.doc : JSON.stringify(key.default);
}

/** Markdown table of every key (key | flag | env | default | description) for the README. */
export function describeConfigKeys(): string {
  const code = (s: string) => '`' + s + '`';
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  const rows = CONFIG_KEYS.map((key) =>
    [
      code(key.name),
      flagSpellings(key).map(code).join(', '),
      code(envVarName(key.name)),
      code(describeDefault(key)),
      `${key.description} — ${key.type.doc}`,
    ].map(cell),
  );
  return [
    '| key | flag | env | default | description |',
    '| --- | --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n') + '\n';
}
