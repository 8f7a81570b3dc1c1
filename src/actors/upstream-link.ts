import { Backoff, MAX_RETRY_AFTER_MS } from './backoff.js';
import { redactUrl } from '../upstream/redact.js';

export interface LinkHealth {
  url: string;
  online: boolean;
  attempt: number;
  next_retry_at: string | null;
  last_error: string | null;
  last_success_at: string | null;
  /**
   * Every failed try since the last op the server took, online or not: while it answers some
   * requests with errors (a 500 for everything, say) `attempt` stays 0, and a probe of its
   * /health that answers resets `attempt` but not this.
   */
  failures_since_success: number;
}

/**
 * Whether the upstream as a whole can be talked to: the state /health shows and the gate every
 * session lane passes before sending.
 *
 * - `unknown` (startup) and `up`: lanes send freely.
 * - `down`: an upstream-wide failure (network error, timeout, 429/502/503/504) closed the gate
 *   until `next_retry_at`, growing exponentially with jitter and honouring Retry-After.
 * - `probing`: the wait is over; exactly one request (a lane's next op, or a health probe) tests
 *   the upstream, so a recovering server is not hit by every session at once.
 */
export class UpstreamLink {
  state: 'unknown' | 'up' | 'down' | 'probing' = 'unknown';
  private readonly backoff: Backoff;
  /** Failed tries since the last success, of any kind (CONTRACT §4 `attempt`). */
  attempt = 0;
  /** Failed tries since the server last took an op (probes of its /health do not count as taking one). */
  private failuresSinceDelivery = 0;
  nextRetryAt: number | null = null;
  lastError: string | null = null;
  lastSuccessAt: number | null = null;
  probeInFlight = false;
  private timer: NodeJS.Timeout | null = null;

  private readonly url: string;

  constructor(
    serverUrl: string,
    baseMs: number,
    maxMs: number,
    /** Called when lanes may send again: the wait ended (probing) or the upstream answered (up). */
    private readonly onChange: () => void,
  ) {
    this.backoff = new Backoff(baseMs, maxMs);
    this.url = redactUrl(serverUrl);
  }

  get online(): boolean {
    return this.state === 'up';
  }

  /**
   * May a sender go now? `'probe'` means it holds the single probe of a recovering link and must
   * give it back (`releaseProbe`) if it ends without an answer from the upstream.
   */
  admit(): 'free' | 'probe' | false {
    if (this.state === 'up' || this.state === 'unknown') return 'free';
    if (this.state === 'probing' && !this.probeInFlight) {
      this.probeInFlight = true;
      return 'probe';
    }
    return false;
  }

  /** The probe holder ended without hearing from the upstream: the next sender may probe. */
  releaseProbe(): void {
    if (this.state === 'probing') this.probeInFlight = false;
  }

  /**
   * A 2xx. While the gate is down no lane sends, so a success now answers a request sent before
   * it closed: it says nothing about the upstream since, and must not cut the wait short (that
   * turned a failing op into a tight loop, and ignored Retry-After). It is noted, nothing more.
   */
  succeeded(delivered = true): void {
    if (delivered) this.failuresSinceDelivery = 0;
    if (this.state === 'down') {
      this.lastSuccessAt = Date.now();
      return;
    }
    const was = this.state;
    this.state = 'up';
    this.attempt = 0;
    this.backoff.reset();
    this.nextRetryAt = null;
    this.lastSuccessAt = Date.now();
    this.probeInFlight = false;
    this.clearTimer();
    if (was !== 'up') this.onChange();
  }

  /** A failure of this request only (its session backs off); counted, the gate stays open. */
  requestFailed(reason: string): void {
    this.attempt++;
    this.failuresSinceDelivery++;
    this.lastError = reason;
    if (this.state === 'probing') this.succeeded(false); // the server answered: it is reachable
  }

  /**
   * A definitive refusal (a 4xx that makes a dead letter): the server answered, so it is
   * reachable, and there is nothing to retry, so it is not a failed try (`attempt` stays).
   */
  refused(reason: string): void {
    this.lastError = reason;
    if (this.state === 'probing') this.succeeded(false);
  }

  /** An upstream-wide failure: close the gate for the next backoff delay. */
  upstreamFailed(reason: string, retryAfterMs?: number): void {
    this.attempt++;
    this.failuresSinceDelivery++;
    this.lastError = reason;
    this.probeInFlight = false;
    if (this.state === 'down') {
      // Already waiting (a lane that was in flight reports late); a longer Retry-After still
      // extends the wait: the server asked for it.
      const wait = retryAfterMs === undefined ? 0 : Math.min(retryAfterMs, MAX_RETRY_AFTER_MS);
      if (Date.now() + wait > (this.nextRetryAt ?? 0)) this.closeFor(wait);
      return;
    }
    this.closeFor(this.backoff.fail(retryAfterMs));
  }

  private closeFor(delay: number): void {
    this.state = 'down';
    this.nextRetryAt = Date.now() + delay;
    this.clearTimer();
    this.timer = setTimeout(() => this.open(), delay);
    this.timer.unref();
  }

  /** POST /flush: stop waiting and probe now. */
  openNow(): void {
    this.backoff.reset();
    if (this.state === 'down' || this.state === 'probing') this.open();
  }

  health(): LinkHealth {
    return {
      url: this.url,
      online: this.online,
      // CONTRACT §4: 0 when online. Failures of single requests while the upstream answers
      // others are each session's own (GET /queue shows their attempts and last error).
      attempt: this.online ? 0 : this.attempt,
      next_retry_at: this.nextRetryAt !== null && this.state === 'down' ? new Date(this.nextRetryAt).toISOString() : null,
      last_error: this.lastError,
      last_success_at: this.lastSuccessAt !== null ? new Date(this.lastSuccessAt).toISOString() : null,
      failures_since_success: this.failuresSinceDelivery,
    };
  }

  close(): void {
    this.clearTimer();
  }

  private open(): void {
    this.clearTimer();
    this.state = 'probing';
    this.probeInFlight = false;
    this.nextRetryAt = null;
    this.onChange();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
