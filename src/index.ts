/**
 * The package entry: the TypeScript client (the usual reason to import this package), and the
 * daemon itself for programs that embed it. `datacat-daemon/client` is the client alone.
 */
export * from './client/index.js';
export { Daemon, startDaemon, type DaemonOptions } from './daemon.js';
export { loadConfig, ConfigError, type DaemonConfig } from './config/index.js';
