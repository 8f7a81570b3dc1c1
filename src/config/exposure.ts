import type { DaemonConfig } from './config-keys.js';

/**
 * A daemon reachable from other machines must not take ops from anyone. Bound to anything but a
 * loopback address without auth_token, it still starts (the operator asked for that address) but
 * serves only clients on this machine, like Redis's protected mode; this says so once, at start.
 * Returns null when there is nothing to warn about.
 */
export function exposureWarning(config: DaemonConfig): string | null {
  if (!servesOnlyLocalClients(config)) return null;
  return `host is ${JSON.stringify(config.host)} but auth_token is not set: only clients on this machine are served (others get 401); set auth_token to accept them`;
}

/** Bound beyond loopback with no token to check: requests from other machines are refused. */
export function servesOnlyLocalClients(config: DaemonConfig): boolean {
  return !config.auth_token && !isLoopback(config.host);
}

/** Loopback host names and addresses, including IPv4 loopback seen through an IPv6 socket. */
export function isLoopback(host: string): boolean {
  const h = host
    .replace(/^\[|\]$/g, '')
    .toLowerCase()
    .replace(/^::ffff:/, '');
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
}
