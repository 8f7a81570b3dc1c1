import type { DaemonConfig } from './config-keys.js';
import { ConfigError } from './load-config.js';

/**
 * A daemon reachable from other machines must not take ops from anyone: binding anything but a
 * loopback address requires auth_token (every request but /health must then present it).
 * Checked when the daemon starts, not when config is read (the admin commands read it too).
 */
export function assertSafeToExpose(config: DaemonConfig): void {
  if (config.auth_token || isLoopback(config.host)) return;
  throw new ConfigError(
    `invalid config: auth_token is required when host is not a loopback address (host is ${JSON.stringify(config.host)}); set auth_token, or bind 127.0.0.1`,
  );
}

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
}
