/**
 * Exponential backoff with jitter, capped, reset on success, honouring Retry-After (DESIGN
 * invariant 5). The delay for attempt n is base·2^(n-1), jittered to 50-150% so that lanes and
 * daemons that failed together do not retry together, then clamped to [base, max]. A server's
 * Retry-After wins when it asks for longer (up to an hour, so a silly header cannot park a
 * session for days).
 */
export const MAX_RETRY_AFTER_MS = 3_600_000;

export class Backoff {
  attempt = 0;

  constructor(
    private readonly baseMs: number,
    private readonly maxMs: number,
    private readonly random: () => number = Math.random,
  ) {}

  /** Records a failure and returns how long to wait before the next try. */
  fail(retryAfterMs?: number): number {
    this.attempt++;
    const exp = this.baseMs * 2 ** Math.min(this.attempt - 1, 30);
    const jittered = exp * (0.5 + this.random());
    const delay = Math.min(this.maxMs, Math.max(this.baseMs, jittered));
    if (retryAfterMs !== undefined && retryAfterMs > delay) return Math.min(retryAfterMs, MAX_RETRY_AFTER_MS);
    return Math.round(delay);
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** Parses a Retry-After header: delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  if (/^\s*\d+(\.\d+)?\s*$/.test(v)) return Math.round(parseFloat(v) * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
