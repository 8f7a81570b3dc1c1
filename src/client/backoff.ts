export interface BackoffOptions {
  /** First delay (before jitter), in ms. */
  baseMs: number;
  /** Largest delay, in ms. */
  maxMs: number;
  /** Random source in [0, 1); injectable for tests. */
  random?: () => number;
}

/**
 * Reconnect delays: exponential from `baseMs`, capped at `maxMs`, with "equal jitter" (a
 * uniform pick in [d/2, d]). Jitter spreads the reconnects of many clients after a daemon
 * restart; keeping half of the delay fixed means a client never hammers a daemon that is down.
 * Unlike ±50 % jitter, this keeps the spread at the cap too.
 */
export class Backoff {
  private attempt = 0;
  private readonly random: () => number;

  constructor(private readonly options: BackoffOptions) {
    if (!(options.baseMs > 0) || !(options.maxMs >= options.baseMs))
      throw new RangeError(`backoff needs 0 < baseMs <= maxMs (got ${options.baseMs}, ${options.maxMs})`);
    this.random = options.random ?? Math.random;
  }

  /** The delay before the next attempt; each call counts one attempt. */
  next(): number {
    // Cap the exponent too, so that a client retrying for days never computes Infinity.
    const exp = Math.min(this.options.maxMs, this.options.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.round(exp / 2 + (this.random() * exp) / 2);
  }

  /** Back to `baseMs` (after progress was made). */
  reset(): void {
    this.attempt = 0;
  }

  /** Attempts since the last reset. */
  get attempts(): number {
    return this.attempt;
  }
}
