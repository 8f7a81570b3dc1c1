import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isLoopback } from '../config/exposure.js';

/**
 * Who may send to the daemon, checked on HTTP requests and on the WebSocket upgrade.
 *
 * With `auth_token`, every client must present it. Tokens are compared as SHA-256 digests with
 * timingSafeEqual: equal-length inputs, constant time, so the comparison leaks neither the token
 * nor its length. Without one, a daemon bound to a non-loopback address serves only clients on
 * this machine (see config/exposure.ts): it starts, as asked, but takes no ops from the network.
 */
export class AuthCheck {
  private readonly digest: Buffer | null;

  constructor(
    token: string | null,
    /** Refuse clients from other machines (bound beyond loopback, with no token to check). */
    private readonly localOnly = false,
  ) {
    this.digest = token ? sha256(token) : null;
  }

  get enabled(): boolean {
    return this.digest !== null;
  }

  /**
   * Null when the request may go on, else what the client must do (the 401's details).
   * `Authorization: Bearer <token>`, or `?token=` for WebSocket clients that cannot set headers.
   */
  refusal(req: IncomingMessage, queryToken?: string | null): string | null {
    if (!this.digest) {
      if (!this.localOnly || isLoopback(req.socket.remoteAddress ?? '')) return null;
      return 'this daemon has no auth_token, so it serves only clients on its own machine; set auth_token to accept others';
    }
    // The scheme name is case-insensitive (RFC 9110 §11.1); the token is not.
    const bearer = /^bearer +(.*)$/i.exec(req.headers['authorization'] ?? '');
    const presented = bearer ? bearer[1]!.trim() : (queryToken ?? null);
    if (presented !== null && timingSafeEqual(sha256(presented), this.digest)) return null;
    return queryToken === undefined
      ? 'missing or wrong auth token: send "Authorization: Bearer <auth_token>"'
      : 'missing or wrong auth token: send "Authorization: Bearer <auth_token>" or ?token=';
  }
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}
