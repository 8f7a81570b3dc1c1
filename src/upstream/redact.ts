/**
 * The server URL as shown to people (/health, logs): a password in it (http://user:secret@host)
 * is replaced by ***. api_key is never shown anywhere; it only goes upstream in its header.
 */
export function redactUrl(serverUrl: string): string {
  const u = new URL(serverUrl);
  if (u.password) u.password = '***';
  return u.toString().replace(/\/$/, '');
}
