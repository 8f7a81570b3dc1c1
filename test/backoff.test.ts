import t from 'tap';
import { Backoff, parseRetryAfter, MAX_RETRY_AFTER_MS } from '../src/actors/backoff.js';

t.test('grows exponentially within the jitter band and is capped', async (t) => {
  const mid = new Backoff(100, 30_000, () => 0.5); // jitter factor exactly 1
  t.same([1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(() => mid.fail()), [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000]);
  const low = new Backoff(100, 30_000, () => 0);
  t.equal(low.fail(), 100, 'never below retry_base_ms');
  t.equal(low.fail(), 100, '50% of 200');
  const high = new Backoff(100, 1000, () => 0.999);
  const delays = Array.from({ length: 8 }, () => high.fail());
  t.ok(delays.every((d) => d >= 100 && d <= 1000), 'between base and max');
  t.equal(delays.at(-1), 1000, 'capped at retry_max_ms');
});

t.test('reset starts over; Retry-After wins when longer', async (t) => {
  const b = new Backoff(100, 1000, () => 0.5);
  b.fail();
  b.fail();
  b.reset();
  t.equal(b.attempt, 0);
  t.equal(b.fail(), 100);
  t.equal(b.fail(5000), 5000, 'Retry-After beyond retry_max_ms is honoured');
  t.equal(b.fail(10), 400, 'a shorter Retry-After does not shorten the backoff');
  t.equal(b.fail(10 * MAX_RETRY_AFTER_MS), MAX_RETRY_AFTER_MS, 'an absurd Retry-After is bounded');
});

t.test('parses Retry-After seconds and HTTP dates', async (t) => {
  t.equal(parseRetryAfter('3'), 3000);
  t.equal(parseRetryAfter('0.5'), 500);
  const now = Date.parse('2026-11-25T00:00:00Z');
  t.equal(parseRetryAfter('Wed, 25 Nov 2026 00:00:10 GMT', now), 10_000);
  t.equal(parseRetryAfter(undefined), undefined);
  t.equal(parseRetryAfter('soon'), undefined);
});
