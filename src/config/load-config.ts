/**
 * Builds a DaemonConfig from four layers, later wins:
 *
 *   built-in defaults < JSON file < DATACAT_* env vars < --flags
 *
 * Everything key-specific comes from CONFIG_KEYS; the only per-key rules here
 * are the ones the table can't express: the retry_max_ms >= retry_base_ms
 * cross-check (and computed defaults, which the table declares).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

import {
  CONFIG_KEYS,
  ComputedDefault,
  INVALID,
  envVarName,
  flagName,
  isBooleanWord,
  type AnyConfigKey,
  type ConfigKeyName,
  type DaemonConfig,
} from './config-keys.js';

/** Thrown for any configuration problem; the message is always a single line. */
export class ConfigError extends Error {
  override name = 'ConfigError';

  constructor(message: string) {
    // One line, because the CLI prints it as a single log line. Node's own
    // error texts (fs, JSON.parse) are folded in and may contain newlines.
    super(message.replace(/\s*[\r\n]+\s*/g, ' '));
  }
}

export interface LoadConfigOptions {
  /** Arguments after the program name (e.g. process.argv.slice(2)). Positional arguments are skipped (see ignoredArgs). */
  readonly argv: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  /** Relative paths (config file, data_dir) resolve against this. */
  readonly cwd: string;
}

export interface LoadedConfig {
  readonly config: DaemonConfig;
  /** Non-fatal problems (unknown keys/flags), for the caller to log. */
  readonly warnings: string[];
  /** Absolute path of the JSON file that was read, or null if none. */
  readonly configFile: string | null;
  /**
   * Arguments that are neither a flag nor a flag's value (positionals, single-dash ones like
   * `-p`, anything after `--`), in order. loadConfig skips them because a command's name is one
   * (that is the CLI's business); the daemon, which takes none, warns about them
   * (ignoredArgWarnings).
   */
  readonly ignoredArgs: string[];
}

/** File looked for in cwd when no file is named explicitly. */
export const DEFAULT_CONFIG_FILE = 'daemon_config.json';
/** Env var naming the config file; not itself a config key. */
export const CONFIG_FILE_ENV = 'DATACAT_CONFIG';

/** One value supplied by one layer, before parsing. */
interface RawSetting {
  readonly key: AnyConfigKey;
  readonly raw: unknown;
  /** Where it came from, for error messages: "env DATACAT_HOST", "flag --port", "file /x.json". */
  readonly source: string;
}

interface Resolved {
  readonly value: unknown;
  readonly source: string;
}

const KEYS_BY_NAME = new Map<string, AnyConfigKey>(CONFIG_KEYS.map((k) => [k.name, k]));

const KEYS_BY_FLAG = new Map<string, AnyConfigKey>(
  CONFIG_KEYS.flatMap((k) => [flagName(k.name), ...(k.flagAliases ?? [])].map((f) => [f, k] as const)),
);

export function loadConfig(opts: LoadConfigOptions): LoadedConfig {
  const cli = parseArgv(opts.argv);
  const file = readConfigFile(cli.configFile, opts);

  // Later layers overwrite earlier ones. Every supplied value is validated,
  // even one that a later layer overrides: a typo in the file is still a typo.
  const resolved = new Map<ConfigKeyName, Resolved>();
  for (const setting of [...file.settings, ...envSettings(opts.env), ...cli.settings]) {
    resolved.set(setting.key.name, { value: parseSetting(setting, opts.cwd), source: setting.source });
  }

  // Plain defaults first, then computed ones, which may read the plain keys'
  // final values (data_dir depends on the final daemon_port).
  const values: Record<string, unknown> = {};
  for (const key of CONFIG_KEYS) {
    const given = resolved.get(key.name);
    if (given) values[key.name] = given.value;
    else if (!(key.default instanceof ComputedDefault)) values[key.name] = key.default;
  }
  // The casts are safe: the table has a row for every DaemonConfig key
  // (checked at compile time in config-keys.ts), and computed defaults only
  // read plain keys, which are all present at this point.
  for (const key of CONFIG_KEYS) {
    if (key.name in values || !(key.default instanceof ComputedDefault)) continue;
    const raw = key.default.compute(values as unknown as DaemonConfig, opts.env);
    values[key.name] = parseSetting({ key, raw, source: 'computed default' }, opts.cwd);
  }
  // Rebuild in table order so logs and dumps list keys the way the docs do.
  const config = Object.freeze(
    Object.fromEntries(CONFIG_KEYS.map((k) => [k.name, values[k.name]])),
  ) as unknown as DaemonConfig;

  checkRetryBounds(config, resolved);
  return { config, warnings: [...file.warnings, ...cli.warnings], configFile: file.path, ignoredArgs: cli.ignored };
}

function parseSetting({ key, raw, source }: RawSetting, cwd: string): unknown {
  const value = key.type.parse(raw, { cwd });
  if (value === INVALID) {
    throw new ConfigError(`invalid config: ${key.name} must be ${key.type.expected} (got ${showRaw(raw)} from ${source})`);
  }
  return value;
}

/** JSON-ish rendering so strings are quoted and nothing spans lines; long values are cut. */
function showRaw(raw: unknown): string {
  const text = JSON.stringify(raw) ?? String(raw);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function checkRetryBounds(config: DaemonConfig, resolved: Map<ConfigKeyName, Resolved>): void {
  if (config.retry_max_ms >= config.retry_base_ms) return;
  const from = (key: ConfigKeyName) => resolved.get(key)?.source ?? 'default';
  throw new ConfigError(
    `invalid config: retry_max_ms must be >= retry_base_ms (got ${config.retry_max_ms} from ${from('retry_max_ms')}, ` +
      `retry_base_ms is ${config.retry_base_ms} from ${from('retry_base_ms')})`,
  );
}

// ---------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------

interface ParsedArgv {
  /** Value of --config, or null if not given. */
  readonly configFile: string | null;
  readonly settings: RawSetting[];
  readonly warnings: string[];
  /** Arguments skipped: see LoadedConfig.ignoredArgs. */
  readonly ignored: string[];
}

/**
 * Accepted forms: `--key value`, `--key=value`; for booleans also bare
 * `--key` (true) and `--no-key` (false). A boolean flag takes the next argument
 * only when it spells a boolean: `--tls-insecure-skip-verify false` is false (a
 * dropped `false` would silently turn certificate checks off), while
 * `--enable-compression start` leaves `start` positional.
 */
function parseArgv(argv: readonly string[]): ParsedArgv {
  const settings: RawSetting[] = [];
  const warnings: string[] = [];
  const ignored: string[] = [];
  let configFile: string | null = null;

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      // Conventional end of options: the rest is positional.
      ignored.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--')) {
      // Positional (or single-dash): subcommands are the CLI's business.
      ignored.push(arg);
      continue;
    }

    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const inline = eq === -1 ? undefined : arg.slice(eq + 1);
    const flag = `--${name}`;
    const takeValue = (): string => {
      if (inline !== undefined) return inline;
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) {
        throw new ConfigError(`invalid config: flag ${flag} needs a value`);
      }
      i++;
      return next;
    };
    const booleanValue = (): string | true => {
      const next = argv[i + 1];
      if (next === undefined || !isBooleanWord(next)) return true;
      i++;
      return next;
    };

    if (name === 'config') {
      configFile = takeValue();
      if (configFile === '') throw new ConfigError(`invalid config: flag ${flag} needs a file path`);
      continue;
    }

    const key = KEYS_BY_FLAG.get(name);
    if (key) {
      const raw = key.type.kind === 'boolean' ? (inline ?? booleanValue()) : takeValue();
      settings.push({ key, raw, source: `flag ${flag}` });
      continue;
    }

    const negated = name.startsWith('no-') ? KEYS_BY_FLAG.get(name.slice(3)) : undefined;
    if (negated?.type.kind === 'boolean') {
      if (inline !== undefined) throw new ConfigError(`invalid config: flag ${flag} takes no value (got "${arg}")`);
      settings.push({ key: negated, raw: false, source: `flag ${flag}` });
      continue;
    }

    warnings.push(`unknown flag "${flag}" (ignored)`);
  }
  return { configFile, settings, warnings, ignored };
}

/**
 * What the daemon says about the arguments loadConfig skipped: it takes flags only, so each was
 * ignored, and an operator who typed `-p 1234` or `--port 0 extra` must hear so.
 */
export function ignoredArgWarnings(args: readonly string[]): string[] {
  return args.map((arg) =>
    /^-[^-]/.test(arg)
      ? `unknown flag ${showRaw(arg)} (ignored: flags have two dashes, e.g. --port)`
      : `unexpected argument ${showRaw(arg)} (ignored: the daemon takes only --flags)`,
  );
}

// ---------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------

/** DATACAT_<KEY> for every key. Other DATACAT_* variables are not read (unknownEnvWarnings reports them). */
function envSettings(env: NodeJS.ProcessEnv): RawSetting[] {
  const settings: RawSetting[] = [];
  for (const key of CONFIG_KEYS) {
    const name = envVarName(key.name);
    const raw = env[name];
    if (raw !== undefined) settings.push({ key, raw, source: `env ${name}` });
  }
  return settings;
}

/**
 * DATACAT_* variables that are no config key but are read by the daemon or its tooling, so not
 * worth a warning when they are in the daemon's environment too.
 */
const OTHER_ENV_VARS = new Set([
  CONFIG_FILE_ENV,
  'DATACAT_URL', // the daemon URL the examples (examples/) connect to
  'DATACAT_SOAK', // test/: soak mode
  'DATACAT_CHAOS_SEED', // test/chaos.test.ts: replay a seed
  'DATACAT_CHAOS_MS', // test/chaos.test.ts: run length
]);

const KEY_ENV_VARS = new Set(CONFIG_KEYS.map((k) => envVarName(k.name)));

/**
 * Near misses, for a hint: a flag alias's spelling (DATACAT_PORT: the variable is
 * DATACAT_DAEMON_PORT; aliases are flags only) and any key's variable without its underscores
 * (DATACAT_SERVERURL).
 */
const ENV_HINTS = new Map<string, string>([
  ...CONFIG_KEYS.map((k) => [envVarName(k.name).replace(/_/g, ''), envVarName(k.name)] as const),
  ...CONFIG_KEYS.flatMap((k) => (k.flagAliases ?? []).map((a) => [`DATACAT_${a.toUpperCase().replace(/-/g, '_')}`, envVarName(k.name)] as const)),
]);

/**
 * One warning per DATACAT_* variable that names no key (CONTRACT §1: unknown keys warn). Kept
 * apart from loadConfig's warnings, which are about what it read: this is about what it did not,
 * and only the daemon reports it (the commands leave warnings to the daemon).
 */
export function unknownEnvWarnings(env: NodeJS.ProcessEnv): string[] {
  return Object.keys(env)
    .filter((name) => name.startsWith('DATACAT_') && !KEY_ENV_VARS.has(name) && !OTHER_ENV_VARS.has(name))
    .sort()
    .map((name) => {
      const hint = ENV_HINTS.get(name) ?? ENV_HINTS.get(name.replace(/_/g, ''));
      return `unknown environment variable ${showRaw(name)} (ignored${hint ? `; did you mean ${hint}?` : ''})`;
    });
}

// ---------------------------------------------------------------------------
// JSON file
// ---------------------------------------------------------------------------

interface FileLayer {
  readonly path: string | null;
  readonly settings: RawSetting[];
  readonly warnings: string[];
}

/**
 * The file named by --config, else by DATACAT_CONFIG, else ./daemon_config.json
 * if it exists. A named file must exist and hold a JSON object; the implicit
 * one is optional but, once found, held to the same standard.
 */
function readConfigFile(flagPath: string | null, opts: LoadConfigOptions): FileLayer {
  // An empty DATACAT_CONFIG counts as unset rather than naming the cwd itself.
  const envPath = opts.env[CONFIG_FILE_ENV] || null;
  const named = flagPath ?? envPath;
  const origin = flagPath !== null ? 'flag --config' : envPath !== null ? `env ${CONFIG_FILE_ENV}` : null;
  const file = path.resolve(opts.cwd, named ?? DEFAULT_CONFIG_FILE);

  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (origin === null && code === 'ENOENT') return { path: null, settings: [], warnings: [] };
    const why = origin ? ` (named by ${origin})` : '';
    throw new ConfigError(`cannot read config file ${file}${why}: ${(err as Error).message}`);
  }

  let data: unknown;
  try {
    // Strip a UTF-8 BOM: some editors write one and JSON.parse rejects it.
    data = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    const got = Array.isArray(data) ? 'an array' : data === null ? 'null' : `a ${typeof data}`;
    throw new ConfigError(`config file ${file} must contain a JSON object (got ${got})`);
  }

  const settings: RawSetting[] = [];
  const warnings: string[] = [];
  for (const [name, raw] of Object.entries(data)) {
    const key = KEYS_BY_NAME.get(name);
    if (!key) {
      warnings.push(`unknown config key "${name}" in ${file} (ignored)`);
      continue;
    }
    // null means "not set here", so the default (or a later layer) applies.
    if (raw === null) continue;
    settings.push({ key, raw, source: `file ${file}` });
  }
  return { path: file, settings, warnings };
}
