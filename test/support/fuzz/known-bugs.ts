/**
 * The entries of test/fuzz-regressions.json. While a bug is open, the random cases steer around
 * its input (the entry's `steering` says how), so that one known crash does not hide everything
 * else a run could find.
 */
import { readFileSync } from 'node:fs';

export interface RegressionEntry {
  id: string;
  status: 'open' | 'fixed';
  found?: string;
  bug: string;
  expect?: string;
  steering?: string;
  replay: { kind: string; [key: string]: unknown };
}

export const REGRESSIONS_FILE = new URL('../../fuzz-regressions.json', import.meta.url);

export const REGRESSIONS: RegressionEntry[] = (JSON.parse(readFileSync(REGRESSIONS_FILE, 'utf8')) as { entries: RegressionEntry[] }).entries;
