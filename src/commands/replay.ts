import { plural, printJson, type AdminCommand } from './admin.js';

export const replay: AdminCommand = {
  name: 'replay',
  summary: 'move every dead letter back into the queue',
  usage: `Usage: datacat-daemon replay [--json] [config flags]

Moves every dead letter (an op the upstream refused with a 4xx) back into the queue, to be sent
again (POST /queue/replay), e.g. after fixing the api_key. \`datacat-daemon queue --dead\` lists
them first.

  --json   print the daemon's answer as JSON instead`,
  booleanFlags: ['json'],
  valueFlags: [],
  async run(ctx) {
    const answer = await ctx.daemon.request<{ status: string; replayed: number }>('/queue/replay', { method: 'POST' });
    if (ctx.flags.has('json')) return printJson(ctx, answer);
    ctx.print(`moved ${plural(answer.replayed, 'dead letter')} back into the queue`);
  },
};
