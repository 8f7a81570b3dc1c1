import { formatBytes, formatDuration, plural, printJson, type AdminCommand } from './admin.js';

/** GET /health as CONTRACT §4 lists it; every field optional, so an older daemon still prints. */
interface Health {
  status?: string;
  pid?: number;
  version?: string;
  sessions?: number;
  upstream?: { url?: string; online?: boolean; attempt?: number; next_retry_at?: string | null; last_error?: string | null };
  queue?: { depth?: number; bytes?: number; oldest_age_ms?: number; dead_letters?: number; dropped?: number };
  workers?: { size?: number; alive?: number };
  remaps?: number;
}

export const status: AdminCommand = {
  name: 'status',
  summary: "the running daemon's health: upstream, queue, workers",
  usage: `Usage: datacat-daemon status [--json] [config flags]

Shows the running daemon's health (GET /health): its pid and version, active sessions, whether
the upstream is online (failed attempts, next retry, last error), the queue (depth, bytes, age
of the oldest op, dead letters, dropped ops) and the worker pool.

  --json   print the daemon's answer as JSON instead`,
  booleanFlags: ['json'],
  valueFlags: [],
  async run(ctx) {
    const health = await ctx.daemon.request<Health>('/health');
    if (ctx.flags.has('json')) return printJson(ctx, health);

    const { upstream = {}, queue = {}, workers = {} } = health;
    let link = upstream.online ? 'online' : 'offline';
    if (!upstream.online) {
      if (upstream.attempt) link += `, ${plural(upstream.attempt, 'failed attempt')}`;
      if (upstream.next_retry_at) link += `, next retry at ${upstream.next_retry_at}`;
    }
    if (upstream.last_error) link += `\n          last error: ${upstream.last_error}`;
    ctx.print(
      [
        `daemon    ${health.status ?? '?'}: pid ${health.pid ?? '?'}, version ${health.version ?? '?'}, ${plural(health.sessions ?? 0, 'active session')} (${ctx.daemon.baseUrl})`,
        `upstream  ${upstream.url ?? '?'}: ${link}`,
        `queue     ${plural(queue.depth ?? 0, 'op')} (${formatBytes(queue.bytes ?? 0)})` +
          `${queue.depth ? `, oldest ${formatDuration(queue.oldest_age_ms ?? NaN)}` : ''}` +
          `, ${plural(queue.dead_letters ?? 0, 'dead letter')}, ${queue.dropped ?? 0} dropped`,
        `workers   ${workers.alive ?? '?'} of ${workers.size ?? '?'} alive`,
        `remaps    ${health.remaps ?? 0} local ids mapped to server ids`,
      ].join('\n'),
    );
  },
};
