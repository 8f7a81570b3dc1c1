import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { FORMAT_VERSION, META_VERSION } from './keys.js';

/** The one LevelDB handle of the process. Keys are strings (keys.ts), values are bytes. */
export type Db = ClassicLevel<string, Uint8Array>;

export class StoreError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreError';
  }
}

/**
 * Opens (creating if needed) the store in `dir` and checks its format version. LevelDB's own
 * tuning: a larger write buffer means fewer level-0 files under ingest bursts, and open files
 * are capped because a daemon per application must not eat the process's descriptor limit.
 */
export async function openStore(dir: string): Promise<Db> {
  try {
    makeDirectories(dir);
  } catch (err) {
    throw new StoreError(`cannot create data_dir ${dir}: ${(err as Error).message}`, { cause: err });
  }
  const db: Db = new ClassicLevel<string, Uint8Array>(dir, {
    keyEncoding: 'utf8',
    valueEncoding: 'view',
    writeBufferSize: 32 * 1024 * 1024,
    maxOpenFiles: 256,
    cacheSize: 16 * 1024 * 1024,
  });
  try {
    await db.open();
  } catch (err) {
    throw new StoreError(describeOpenFailure(dir, err), { cause: err });
  }
  const stored = await db.get(META_VERSION);
  if (stored === undefined) {
    await db.put(META_VERSION, Uint8Array.of(FORMAT_VERSION));
  } else if (stored[0] !== FORMAT_VERSION) {
    await db.close();
    throw new StoreError(
      `the store in data_dir ${dir} has format version ${stored[0]}, this daemon reads version ${FORMAT_VERSION}; ` +
        `use a daemon release that reads it, or point data_dir elsewhere`,
    );
  }
  return db;
}

/**
 * `mkdir -p`, one component at a time. Node's own `recursive: true` spins forever at 100% CPU
 * where mkdir answers ENOENT for a directory whose parent exists (under /proc, for one); this
 * answers with that error instead.
 */
export function makeDirectories(dir: string): void {
  const path = resolve(dir);
  const parent = dirname(path);
  let exists: boolean;
  try {
    exists = statSync(path).isDirectory() || fail(`${path} is not a directory`, 'ENOTDIR');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    exists = false;
  }
  if (exists) return;
  if (parent !== path) makeDirectories(parent);
  try {
    mkdirSync(path);
  } catch (err) {
    // Made meanwhile by someone else: as good as made here.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || !statSync(path).isDirectory()) throw err;
  }
}

function fail(message: string, code: string): never {
  throw Object.assign(new Error(`${code}: ${message}`), { code });
}

/** One line saying what is wrong with the store and what to do about it. */
export function describeOpenFailure(dir: string, err: unknown): string {
  const cause = ((err as { cause?: unknown }).cause ?? err) as { code?: string; message?: string };
  const message = String(cause?.message ?? err).replace(/\s+/g, ' ');
  if (cause?.code === 'LEVEL_LOCKED')
    return `the store in data_dir ${dir} is in use by another daemon (${message}): stop it, or give this one another data_dir`;
  if (/corrupt/i.test(message))
    return `the store in data_dir ${dir} is damaged (${message}): run \`datacat-daemon repair --data-dir ${dir}\` (LevelDB repair, which may drop damaged records), then start again`;
  return `cannot open the store in data_dir ${dir} (${message}); if it is damaged, \`datacat-daemon repair --data-dir ${dir}\` may recover it`;
}
