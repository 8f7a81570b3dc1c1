import type { UpstreamOp } from './chunk.js';

/**
 * A dead letter as stored under `d!<seq>`: an op the upstream refused with a non-retryable
 * answer (any 4xx but 408 and 429), kept with the answer as its reason until replayed.
 */
export interface DeadLetter {
  sn: number;
  seq: number;
  op: UpstreamOp;
  reason: string;
  attempts: number;
  failed_at: number;
}
