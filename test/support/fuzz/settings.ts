/**
 * Run settings from the environment (documented in test/fuzz.test.ts):
 *   FUZZ_SEED=1,0x2a     seeds (decimal or 0x hex); default DEFAULT_SEEDS
 *   FUZZ_CASES=N         cases per run, split evenly over the seeds; default 100 000 (issue 6: at least 100 k per CI run)
 *   FUZZ_ONLY=5,17-20    only these case indices (with one FUZZ_SEED): a failure's replay
 *   DATACAT_SOAK=1       soak: seed after seed (the defaults, then random ones, printed) for
 *                        FUZZ_SOAK_SECONDS (default 600), FUZZ_CASES per seed (default 200 000)
 */
export const DEFAULT_SEEDS = [0xdc01, 0xdc02, 0xdc03];
export const DEFAULT_CASES = 100_000;

export interface Settings {
  seeds: number[];
  /** Case indices per seed. */
  indices: (seed: number) => Iterable<number>;
  casesPerSeed: number;
  only: number[] | null;
  soak: { seconds: number } | null;
}

function parseSeed(s: string): number {
  const n = s.trim().toLowerCase().startsWith('0x') ? parseInt(s.trim(), 16) : Number(s.trim());
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`FUZZ_SEED: "${s}" is not a 32-bit unsigned integer`);
  return n;
}

function parseOnly(s: string): number[] {
  const out: number[] = [];
  for (const part of s.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw new Error(`FUZZ_ONLY: "${part}" is not an index or a range a-b`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    for (let i = a; i <= b; i++) out.push(i);
  }
  return out;
}

export function readSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const soak = env['DATACAT_SOAK'] === '1' ? { seconds: Number(env['FUZZ_SOAK_SECONDS'] ?? 600) } : null;
  let seeds = env['FUZZ_SEED'] ? env['FUZZ_SEED'].split(',').map(parseSeed) : DEFAULT_SEEDS;
  const only = env['FUZZ_ONLY'] ? parseOnly(env['FUZZ_ONLY']) : null;
  if (only && seeds.length !== 1) throw new Error('FUZZ_ONLY needs exactly one FUZZ_SEED (the seed the failure printed)');
  if (soak && !env['FUZZ_SEED']) {
    // The defaults first, then fresh seeds (printed by the test, so a failure can be replayed).
    const base = (Date.now() ^ (process.pid << 16)) >>> 0;
    seeds = [...seeds, ...Array.from({ length: 1000 }, (_, i) => (base + i * 0x9e3779b9) >>> 0)];
  }
  const total = Number(env['FUZZ_CASES'] ?? (soak ? 200_000 * DEFAULT_SEEDS.length : DEFAULT_CASES));
  if (!Number.isInteger(total) || total < 1) throw new Error(`FUZZ_CASES: "${env['FUZZ_CASES']}" is not a positive integer`);
  const casesPerSeed = soak ? Math.ceil(total / DEFAULT_SEEDS.length) : Math.ceil(total / seeds.length);
  return {
    seeds,
    casesPerSeed,
    only,
    soak,
    indices: (): Iterable<number> => only ?? range(casesPerSeed),
  };
}

function* range(n: number): Iterable<number> {
  for (let i = 0; i < n; i++) yield i;
}
