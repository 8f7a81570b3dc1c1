/**
 * The last line of defence against orphans: a tiny process the CLI starts first and tells, on
 * stdin, about every child and temporary directory (`pid N`, `dir PATH`, `done pid N`). If the
 * CLI dies without cleaning up (SIGKILL, an out-of-memory kill), its end of the pipe closes and
 * the reaper kills what is left and removes the directories. The daemon in particular cannot
 * notice its parent going away by itself, and would keep a port, a LevelDB lock and a core.
 */
import { rmSync } from 'node:fs';
import { createInterface } from 'node:readline';

const pids = new Set<number>();
const dirs = new Set<string>();

createInterface({ input: process.stdin, crlfDelay: Infinity })
  .on('line', (line) => {
    const [cmd, ...rest] = line.split(' ');
    const arg = rest.join(' ');
    if (cmd === 'pid') pids.add(Number(arg));
    else if (cmd === 'unpid') pids.delete(Number(arg));
    else if (cmd === 'dir') dirs.add(arg);
    else if (cmd === 'undir') dirs.delete(arg);
  })
  .on('close', () => {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    // Give the kernel a moment to release the killed processes' files before removing dirs.
    setTimeout(() => {
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
      process.exit(0);
    }, 200);
  });

// Ctrl-C reaches the whole process group: the CLI handles it; the reaper just waits for stdin to close.
process.on('SIGINT', () => undefined);
