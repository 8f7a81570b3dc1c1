import { loadConfig, ConfigError, ignoredArgWarnings, unknownEnvWarnings } from '../config/index.js';
import { Daemon } from '../daemon.js';
import { createLogger, type Logger } from '../logger.js';
import { tuneHeapGrowth } from '../heap-growth.js';
import { ListenError } from '../gateway/http-server.js';
import { makeDirectories } from '../outbox/store.js';

/**
 * `datacat-daemon [flags]` starts the daemon (CONTRACT §1). Every failure to start is one clear
 * line on stderr and a non-zero exit: 2 for configuration, 1 for anything else.
 */
export async function start(argv: string[]): Promise<void> {
  // Before the daemon allocates anything (and before its workers start): see heap-growth.ts.
  tuneHeapGrowth();
  // Signals count from the first moment: one that comes while the daemon is still starting
  // stops it as soon as it is up (it cannot have accepted anything yet), with exit 0.
  let daemon: Daemon | null = null;
  let logger: Logger | null = null;
  let stoppingSince: number | null = null;
  const stop = (signal: string): void => {
    if (stoppingSince !== null) {
      // A terminal's Ctrl-C reaches `npm start` and the daemon at once, and npm passes its copy
      // on: a second signal within DUPLICATE_SIGNAL_MS is that copy. Later, the operator insists.
      if (Date.now() - stoppingSince >= DUPLICATE_SIGNAL_MS) process.exit(1);
      return;
    }
    stoppingSince = Date.now();
    logger?.info({ signal }, 'stopping: persisting accepted ops');
    if (daemon) closeAndExit(daemon);
  };
  const closeAndExit = (d: Daemon): void => {
    // Everything accepted is already durable; this bound only guards against a stuck close.
    setTimeout(() => process.exit(0), 10_000).unref();
    d.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger?.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  // bin/datacat-daemon's handlers covered the loading of this module; from here on, these. Ours
  // go on before theirs come off: node drops its signal watcher when the last listener goes, and
  // a signal caught meanwhile would be lost (seen: a SIGTERM during module loading, never acted on).
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const before = process.listeners(signal);
    process.on(signal, () => stop(signal));
    for (const listener of before) process.removeListener(signal, listener);
  }

  let loaded;
  try {
    loaded = loadConfig({ argv, env: process.env, cwd: process.cwd() });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`datacat-daemon: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const { config, warnings, configFile, ignoredArgs } = loaded;
  logger = createLogger(config.log_level);
  // Unknown input is ignored, never silently (CONTRACT §1): keys and flags loadConfig did not
  // know, arguments the daemon takes none of, DATACAT_* variables that name no key.
  for (const w of [...warnings, ...ignoredArgWarnings(ignoredArgs), ...unknownEnvWarnings(process.env)]) logger.warn(w);

  // A data_dir that cannot be made is a value that cannot work, like a host that is not ours:
  // exit 2 (README, "Configuration"). It is made here because every failure inside the store
  // exits 1 (in use by another daemon, damaged: not bad values); opening the store finds it made.
  try {
    makeDirectories(config.data_dir);
  } catch (err) {
    process.stderr.write(`datacat-daemon: cannot create data_dir ${config.data_dir}: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  }

  // Per-application mode (watch the parent, exit with it): exit_with_parent, which defaults to
  // true when a DataCat client started the daemon through DATACAT_CONFIG (config-keys.ts).
  const perApplication = config.exit_with_parent;
  const onParentExit = (err?: unknown): void => {
    if (err) logger?.error({ err }, 'error while stopping after the parent exited');
    process.exit(err ? 1 : 0);
  };
  try {
    daemon = await Daemon.start(config, { logger, ...(perApplication ? { watchParent: { onExit: onParentExit } } : {}) });
  } catch (err) {
    process.stderr.write(`datacat-daemon: ${err instanceof Error ? err.message : String(err)}\n`);
    // 2: a configuration the daemon refuses (a host that cannot work here is one too).
    process.exit(err instanceof ConfigError || (err instanceof ListenError && err.badValue) ? 2 : 1);
  }
  if (configFile) logger.info({ config_file: configFile }, 'configuration read');
  if (stoppingSince !== null) closeAndExit(daemon);
}

/** How soon after the first stop signal another one is taken for a copy of it (see stop). */
const DUPLICATE_SIGNAL_MS = 1000;
