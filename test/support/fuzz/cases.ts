/**
 * Case `index` of seed `seed`: its category (by the mix below), then its own generator, all from
 * a PRNG seeded with (seed, index) alone. So any case is rebuilt exactly by
 * `FUZZ_SEED=<seed> FUZZ_ONLY=<index>`, whatever else runs.
 */
import { Rng } from './prng.js';
import { opCase, type OpCase } from './op-cases.js';
import { httpCase, type HttpCase } from './http-cases.js';
import { frameCase, killCase, readCase, type FrameCase, type KillCase, type ReadCase } from './frame-cases.js';

export type Case =
  | { cat: 'ws-op'; seed: number; index: number; c: OpCase }
  | { cat: 'batch-op'; seed: number; index: number; c: OpCase }
  | { cat: 'http'; seed: number; index: number; c: HttpCase }
  | { cat: 'read'; seed: number; index: number; c: ReadCase }
  | { cat: 'frame'; seed: number; index: number; c: FrameCase }
  | { cat: 'kill'; seed: number; index: number; c: KillCase };
export type Category = Case['cat'];

/**
 * The mix, per 1000 cases. Per-op cases dominate: each is one op in a frame shared with up to
 * 199 others, so they cost microseconds. HTTP cases are one request each on a keep-alive pool.
 * Reads and whole-frame cases are cheap but repetitive; connection-killing frames cost a
 * connection each, so they are the rarest.
 */
export const MIX: ReadonlyArray<readonly [number, Category]> = [
  [560, 'ws-op'],
  [200, 'batch-op'],
  [200, 'http'],
  [20, 'read'],
  [10, 'frame'],
  [10, 'kill'],
];

export function caseAt(seed: number, index: number): Case {
  const rng = new Rng(seed, 'case', index);
  const cat = rng.weighted(MIX);
  switch (cat) {
    case 'ws-op':
      return { cat, seed, index, c: opCase(rng, 'ws') };
    case 'batch-op':
      return { cat, seed, index, c: opCase(rng, 'batch') };
    case 'http':
      return { cat, seed, index, c: httpCase(rng) };
    case 'read':
      return { cat, seed, index, c: readCase(rng) };
    case 'frame':
      return { cat, seed, index, c: frameCase(rng) };
    case 'kill':
      return { cat, seed, index, c: killCase(rng) };
  }
}

/** The mutation name of a case, for counts. */
export function mutationOf(c: Case): string {
  return `${c.cat}/${c.c.mutation}`;
}
