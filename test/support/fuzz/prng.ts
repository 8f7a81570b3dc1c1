/**
 * A small seeded PRNG for the fuzzer: sfc32 (fast, 128-bit state, passes PractRand to 2^40+),
 * seeded from (seed, stream, index) through a 32-bit hash, so that every case is reproducible
 * from its seed and index alone, whatever ran before it.
 */

/** murmur3's 32-bit finalizer: spreads a word over all bits. */
function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A 32-bit hash of a string (FNV-1a, then mixed): names a stream. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return mix32(h);
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** A generator for (seed, stream, index): the same triple always gives the same sequence. */
  constructor(seed: number, stream: string, index = 0) {
    const s = hashString(stream);
    this.a = mix32(seed ^ 0x9e3779b9);
    this.b = mix32(s ^ Math.imul(index, 0x27d4eb2d));
    this.c = mix32((index * 0x165667b1) ^ seed ^ s);
    this.d = 1;
    for (let i = 0; i < 12; i++) this.u32(); // warm up: decorrelate nearby seeds and indices
  }

  /** sfc32: the next 32 random bits. */
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** A float in [0, 1). */
  float(): number {
    return this.u32() / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** An integer in [lo, hi] (inclusive). */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** An integer in [lo, hi], small values far more likely (log-uniform): sizes and depths. */
  logRange(lo: number, hi: number): number {
    const l = Math.log(lo + 1);
    const h = Math.log(hi + 1);
    return Math.min(hi, Math.max(lo, Math.floor(Math.exp(l + this.float() * (h - l)) - 1)));
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** Picks by weight: `[[weight, value], ...]`. */
  weighted<T>(table: ReadonlyArray<readonly [number, T]>): T {
    let total = 0;
    for (const [w] of table) total += w;
    let r = this.float() * total;
    for (const [w, v] of table) {
      r -= w;
      if (r < 0) return v;
    }
    return table[table.length - 1]![1];
  }

  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) out.writeUInt32LE(this.u32(), i);
    for (; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }

  /** A random subset of `items` (each kept with probability p), in order. */
  subset<T>(items: readonly T[], p: number): T[] {
    return items.filter(() => this.chance(p));
  }
}
