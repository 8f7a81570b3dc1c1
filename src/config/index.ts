export {
  CONFIG_KEYS,
  describeConfigKeys,
  envVarName,
  flagName,
  flagSpellings,
  type AnyConfigKey,
  type ConfigKey,
  type ConfigKeyName,
  type DaemonConfig,
  type Durability,
  type LogLevel,
  type OverflowPolicy,
} from './config-keys.js';
export {
  CONFIG_FILE_ENV,
  ConfigError,
  DEFAULT_CONFIG_FILE,
  loadConfig,
  type LoadConfigOptions,
  type LoadedConfig,
} from './load-config.js';
