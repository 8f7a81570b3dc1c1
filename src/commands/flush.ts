import { plural, printJson, type AdminCommand } from './admin.js';

export const flush: AdminCommand = {
  name: 'flush',
  summary: 'send the queue upstream now, resetting the retry backoff',
  usage: `Usage: datacat-daemon flush [--wait] [--json] [config flags]

Asks the running daemon to send its queue upstream now, resetting the retry backoff (POST /flush),
and prints how many ops are still queued.

  --wait   wait until the queue is empty (the daemon waits at most 30 s)
  --json   print the daemon's answer as JSON instead`,
  booleanFlags: ['wait', 'json'],
  valueFlags: [],
  async run(ctx) {
    const wait = ctx.flags.has('wait');
    // The daemon bounds ?wait=1 at 30 s; give its answer a few seconds more to arrive.
    const answer = await ctx.daemon.request<{ status: string; depth: number }>(wait ? '/flush?wait=1' : '/flush', {
      method: 'POST',
      timeoutMs: wait ? 35_000 : 10_000,
    });
    if (ctx.flags.has('json')) return printJson(ctx, answer);
    if (answer.depth === 0) ctx.print('queue is empty: everything was sent upstream');
    else ctx.print(`${plural(answer.depth, 'op')} still queued${wait ? ' after waiting (is the upstream reachable? see `datacat-daemon status`)' : ': flushing'}`);
  },
};
