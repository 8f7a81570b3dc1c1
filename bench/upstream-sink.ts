/**
 * A fast fake DataCat server for `--upstream up` (its own process, so its CPU shows up apart
 * from the daemon's). POST /api/sessions answers `{"session_id":"srv-N"}`, everything else
 * `{"status":"ok"}`, on keep-alive connections. It counts what it receives by kind, so the CLI
 * can check that acked ops are either still queued in the daemon or delivered here:
 * GET /__bench/counts answers the counts.
 *
 * Prints `{"msg":"upstream sink listening","port":N}` on stdout once it listens.
 */
import { createServer } from 'node:http';
import { exitWithParent } from './children.js';

exitWithParent();
const opts = JSON.parse(process.argv[2] ?? '{}') as { port?: number };
const counts: Record<string, number> = { create: 0, event: 0, metric: 0, state: 0, heartbeat: 0, end: 0, crash: 0, other: 0 };
let sessions = 0;
const OK = JSON.stringify({ status: 'ok' });
const KIND = /^\/api\/sessions\/[^/]+\/(events|metrics|state|heartbeat|end|crash)$/;
const KIND_NAME: Record<string, string> = { events: 'event', metrics: 'metric', state: 'state', heartbeat: 'heartbeat', end: 'end', crash: 'crash' };

const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  const answer = (body: string): void => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  if (req.method === 'GET' && req.url === '/__bench/counts') return answer(JSON.stringify({ ...counts, sessions }));
  // Read the body to its end (keep-alive needs it consumed), but do nothing with it.
  req.resume();
  req.on('end', () => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (req.method === 'POST' && path === '/api/sessions') {
      counts['create']!++;
      return answer(JSON.stringify({ session_id: `srv-${++sessions}` }));
    }
    const m = req.method === 'POST' ? KIND.exec(path) : null;
    counts[m ? KIND_NAME[m[1]!]! : 'other']!++;
    answer(OK);
  });
});

server.listen(opts.port ?? 0, '127.0.0.1', () => {
  const { port } = server.address() as { port: number };
  process.stdout.write(JSON.stringify({ msg: 'upstream sink listening', port }) + '\n');
});

process.on('SIGTERM', () => process.exit(0));
