import { ClassicLevel } from 'classic-level';
import { CliError, printJson, type AdminCommand } from './admin.js';
import { describeOpenFailure, openStore } from '../outbox/store.js';
import { recountCounters, writeCounters } from '../outbox/recount.js';

/**
 * `datacat-daemon repair`: the documented way back from a damaged store, rather than refusing
 * to start forever. LevelDB's own repair rebuilds the store from its files (damaged records are
 * dropped), then the daemon's counters are recounted from what survived, so depth and bytes are
 * exact again and no sequence number or local id is ever reused.
 *
 * LevelDB's repair does not take the store's lock, so this first makes sure no daemon has it.
 */
export const repair: AdminCommand = {
  name: 'repair',
  summary: 'repair a damaged store (LevelDB repair, then recount the queue); the daemon must be stopped',
  usage: `Usage: datacat-daemon repair [--json] [config flags, e.g. --data-dir DIR]

Repairs the LevelDB store in data_dir when the daemon refuses to start because it is damaged:
LevelDB rebuilds the store from its files (records it cannot read are dropped), then the queue's
counters are recounted from what remains. Stop the daemon that uses data_dir first.

  --json   print the recounted counters as JSON`,
  booleanFlags: ['json'],
  valueFlags: [],
  async run(ctx) {
    const dir = ctx.config.data_dir;
    const probe = new ClassicLevel(dir, { createIfMissing: false });
    try {
      await probe.open();
      await probe.close();
    } catch (err) {
      const code = ((err as { cause?: { code?: string } }).cause ?? {}).code;
      if (code === 'LEVEL_LOCKED') throw new CliError(describeOpenFailure(dir, err), 1);
      // Damaged or unreadable: that is what repair is for; go on.
    }
    try {
      await ClassicLevel.repair(dir);
    } catch (err) {
      throw new CliError(`LevelDB could not repair the store in data_dir ${dir}: ${(err as Error).message}`, 1);
    }
    const db = await openStore(dir).catch((err: Error) => {
      throw new CliError(`the store in data_dir ${dir} still cannot be opened after repair: ${err.message}`, 1);
    });
    try {
      const { stored, counted } = await recountCounters(db);
      await writeCounters(db, counted);
      if (ctx.flags.has('json')) return printJson(ctx, { status: 'ok', data_dir: dir, before: stored, after: counted });
      ctx.print(`repaired ${dir}: ${counted.depth} ops queued (${counted.bytes} bytes), ${counted.dead} dead letters`);
      if (stored.depth !== counted.depth || stored.bytes !== counted.bytes || stored.dead !== counted.dead)
        ctx.print(`the counters said ${stored.depth} ops, ${stored.bytes} bytes, ${stored.dead} dead letters: corrected`);
    } finally {
      await db.close();
    }
  },
};
