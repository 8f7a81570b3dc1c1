/**
 * The `datacat-daemon` command. With no command (or flags first) it starts the daemon, exactly as
 * CONTRACT §1 and DataCat's clients expect; `status`, `queue`, `flush` and `replay` talk to a
 * running daemon over its HTTP API; `repair` fixes a damaged store while the daemon is stopped;
 * `version` (or --version, -v, -V) prints the version.
 */
import { CONFIG_FLAGS_HELP, runAdminCommand, type AdminCommand } from './commands/admin.js';
import { flush } from './commands/flush.js';
import { queue } from './commands/queue.js';
import { replay } from './commands/replay.js';
import { repair } from './commands/repair.js';
import { status } from './commands/status.js';
import { VERSION } from './version.js';

const COMMANDS = new Map<string, AdminCommand>([status, queue, flush, replay, repair].map((c) => [c.name, c]));

const USAGE = `Usage: datacat-daemon [config flags]                      start the daemon
       datacat-daemon <command> [flags] [config flags]    talk to a running daemon
       datacat-daemon help [command]                      this text, or a command's
       datacat-daemon version                             print the version (also --version, -v, -V)

Commands:
${[...COMMANDS.values()].map((c) => `  ${c.name.padEnd(8)} ${c.summary}`).join('\n')}

${CONFIG_FLAGS_HELP}

Exit codes: 0 success; 1 the daemon cannot be reached or answered an error; 2 bad usage or a
bad configuration value.`;

const isHelpFlag = (arg: string | undefined): boolean => arg === '--help' || arg === '-h';
// -v and -V both: tools differ (node -v, python -V), and either must not start a daemon.
const isVersionFlag = (arg: string | undefined): boolean => arg === '--version' || arg === '-v' || arg === '-V';

async function main(argv: string[]): Promise<void> {
  const [first, ...rest] = argv;
  const command = first === undefined ? undefined : COMMANDS.get(first);
  // exitCode rather than exit(): stdout may be a pipe, and exit() could cut the output short.
  if (command) {
    process.exitCode = await runAdminCommand(command, rest);
  } else if (first === 'version' || isVersionFlag(first)) {
    // Just the number, for scripts (`datacat-daemon --version` → 0.1.0).
    process.stdout.write(`${VERSION}\n`);
  } else if (first === 'help' || isHelpFlag(first)) {
    const topic = rest[0] === undefined ? undefined : COMMANDS.get(rest[0]);
    if (topic) {
      process.exitCode = await runAdminCommand(topic, ['--help']);
    } else if (rest[0] === undefined || rest[0] === 'version' || rest[0] === 'help') {
      // `help version`, `help help`: their line in this text is all there is to say.
      process.stdout.write(`${USAGE}\n`);
    } else {
      process.stderr.write(`datacat-daemon: no command "${rest[0]}"\n\n${USAGE}\n`);
      process.exitCode = 2;
    }
  } else if (argv.some(isHelpFlag)) {
    // `datacat-daemon --port 8080 --help`: the operator wants this text, not a daemon.
    process.stdout.write(`${USAGE}\n`);
  } else if (argv.some(isVersionFlag)) {
    // Likewise `datacat-daemon --port 8080 --version`.
    process.stdout.write(`${VERSION}\n`);
  } else if (first !== undefined && !first.startsWith('-')) {
    // The daemon takes no positional arguments (DataCat clients start it with flags or none):
    // a word here is a mistyped command, and must not start a daemon.
    process.stderr.write(`datacat-daemon: no command "${first.slice(0, 64)}"\n\n${USAGE}\n`);
    process.exitCode = 2;
  } else {
    // Anything else starts the daemon, as before commands existed: DataCat clients spawn it with
    // flags or none. Imported lazily: the daemon pulls in LevelDB, the worker pool and the
    // logger, which the commands do not need.
    const { start } = await import('./commands/start.js');
    await start(argv);
  }
}

void main(process.argv.slice(2));
