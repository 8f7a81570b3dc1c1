/**
 * The WebSocket URL for a daemon base URL: `ws://host:port` becomes
 * `ws://host:port/ws?client_id=<id>`. `http(s)://` is accepted too (the daemon serves HTTP and
 * WebSocket on one port, so users often have the HTTP URL at hand). A path that already ends in
 * `/ws` (or `/ws/`) ends in `/ws`; any other path gets `/ws` appended (a daemon behind a
 * path-routing proxy).
 */
export function buildWsUrl(base: string, clientId: string): string {
  const url = new URL(base);
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new TypeError(`url must be ws://, wss://, http:// or https:// (got ${url.protocol}//)`);
  // The daemon serves exactly `/ws`: a trailing slash would be refused with 404 forever.
  const path = url.pathname.replace(/\/+$/, '');
  url.pathname = /\/ws$/.test(path) ? path : path + '/ws';
  url.searchParams.set('client_id', clientId);
  return url.toString();
}

/** The `client_id` already present in a URL, if any. */
export function clientIdInUrl(base: string): string | undefined {
  try {
    return new URL(base).searchParams.get('client_id') ?? undefined;
  } catch {
    return undefined;
  }
}
