import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/**
 * The optional `auth_token` check, shared by HTTP requests and the WebSocket upgrade. Tokens are
 * compared as SHA-256 digests with timingSafeEqual: equal-length inputs, constant time, so the
 * comparison leaks neither the token nor its length.
 */
export class AuthCheck {
  private readonly digest: Buffer | null;

  constructor(token: string | null) {
    this.digest = token ? sha256(token) : null;
  }

  get enabled(): boolean {
    return this.digest !== null;
  }

  /** `Authorization: Bearer <token>`, or `?token=` for WebSocket clients that cannot set headers. */
  allows(req: IncomingMessage, queryToken?: string | null): boolean {
    if (!this.digest) return true;
    const header = req.headers['authorization'];
    const presented = header?.startsWith('Bearer ') ? header.slice(7) : (queryToken ?? null);
    if (presented === null) return false;
    return timingSafeEqual(sha256(presented), this.digest);
  }
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}
