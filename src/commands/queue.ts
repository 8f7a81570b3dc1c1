import { formatDuration, formatTable, printJson, usageError, type AdminCommand } from './admin.js';

/** One queued op as GET /queue lists it (CONTRACT §2). */
interface QueueItem {
  seq: number | string;
  session_id: string;
  kind: string;
  attempts: number;
  enqueued_at: string | number;
  last_error: string | null;
}

export const queue: AdminCommand = {
  name: 'queue',
  summary: 'list the ops waiting to go upstream, or the dead letters',
  usage: `Usage: datacat-daemon queue [--dead] [--session ID] [--limit N] [--json] [config flags]

Lists the ops the running daemon has not sent upstream yet, oldest first (GET /queue): sequence
number, session, kind, failed attempts, age and the last error.

  --dead         list the dead letters instead (ops the upstream refused; see \`replay\`)
  --session ID   only this session's ops (its local or server id)
  --limit N      at most N ops (the daemon has a default and a cap)
  --json         print the daemon's answer as JSON instead`,
  booleanFlags: ['dead', 'json'],
  valueFlags: ['session', 'limit'],
  async run(ctx) {
    const query = new URLSearchParams();
    const session = ctx.flags.get('session');
    if (session !== undefined) query.set('session_id', session);
    const limit = ctx.flags.get('limit');
    if (limit !== undefined) {
      if (!/^[1-9]\d{0,8}$/.test(limit)) throw usageError(`queue: --limit must be a positive integer (got "${limit}")`);
      query.set('limit', limit);
    }
    const dead = ctx.flags.has('dead');
    if (dead) query.set('dead', '1');

    const q = query.toString();
    const answer = await ctx.daemon.request<{ items: QueueItem[]; total: number }>(`/queue${q ? `?${q}` : ''}`);
    if (ctx.flags.has('json')) return printJson(ctx, answer);

    const what = dead ? 'dead letters' : 'queued ops';
    const scope = session !== undefined ? ` of session ${session}` : '';
    if (answer.items.length > 0) {
      const now = Date.now();
      const rows = answer.items.map((item) => [
        String(item.seq),
        item.session_id,
        item.kind,
        String(item.attempts),
        age(item.enqueued_at, now),
        // The last column may be long, but must stay on its row.
        item.last_error ? oneLine(item.last_error, 120) : '',
      ]);
      ctx.print(formatTable(['SEQ', 'SESSION', 'KIND', 'ATTEMPTS', 'AGE', 'LAST ERROR'], rows));
    }
    ctx.print(`${answer.items.length} of ${answer.total} ${what}${scope}`);
  },
};

/** enqueued_at as an age; an RFC 3339 string or ms since the epoch, shown as given otherwise. */
function age(enqueuedAt: string | number, now: number): string {
  const at = typeof enqueuedAt === 'number' ? enqueuedAt : Date.parse(enqueuedAt);
  return Number.isFinite(at) ? formatDuration(now - at) : String(enqueuedAt);
}

function oneLine(text: string, max: number): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 3)}...` : line;
}
