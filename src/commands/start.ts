import { loadConfig, ConfigError } from '../config/index.js';
import { Daemon } from '../daemon.js';
import { createLogger } from '../logger.js';

/**
 * `datacat-daemon [flags]` starts the daemon (CONTRACT §1). Every failure to start is one clear
 * line on stderr and a non-zero exit: 2 for configuration, 1 for anything else.
 */
export async function start(argv: string[]): Promise<void> {
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
  const { config, warnings, configFile } = loaded;
  const logger = createLogger(config.log_level);
  for (const w of warnings) logger.warn(w);

  // Per-application mode: started by a DataCat client (DATACAT_CONFIG), or exit_with_parent.
  const perApplication = Boolean(process.env['DATACAT_CONFIG']) || config.exit_with_parent;
  const onParentExit = (err?: unknown): void => {
    if (err) logger.error({ err }, 'error while stopping after the parent exited');
    process.exit(err ? 1 : 0);
  };
  let daemon: Daemon;
  try {
    daemon = await Daemon.start(config, { logger, ...(perApplication ? { watchParent: { onExit: onParentExit } } : {}) });
  } catch (err) {
    process.stderr.write(`datacat-daemon: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(err instanceof ConfigError ? 2 : 1); // 2: a configuration the daemon refuses
  }
  if (configFile) logger.info({ config_file: configFile }, 'configuration read');

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) {
      process.exit(1); // a second signal: the operator insists
    }
    stopping = true;
    logger.info({ signal }, 'stopping: persisting accepted ops');
    // Everything accepted is already durable; this bound only guards against a stuck close.
    setTimeout(() => process.exit(0), 10_000).unref();
    daemon.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
