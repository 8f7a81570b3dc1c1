/**
 * Running cases against a daemon: the sessions they address, and the cases of a seed in chunks,
 * every category of a chunk at once on its own driver.
 */
import { caseAt, type Case } from './cases.js';
import { BatchStream, OpsStream, runHttp, runKills, runReads, type Ctx } from './drivers.js';
import { CRASHED, ENDED, LIVE_SESSIONS, live } from './op-cases.js';
import { encode } from './msgpack.js';
import { FuzzSocket } from './ws-client.js';

/** Cases generated and sent together; the first chunk of a run is its warm-up. */
export const CHUNK = 20_000;
export const WARMUP = 6_000;

async function post(url: string, path: string, body: unknown): Promise<any> {
  const res = await fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const answer = await res.json();
  if (res.status !== 200) throw new Error(`setup: POST ${path} answered ${res.status} ${JSON.stringify(answer)}`);
  return answer;
}

/** The sessions cases address by placeholder: live ones, one ended, one crashed (a WebSocket-only op). */
export async function setupSessions(url: string): Promise<Map<string, string>> {
  const ids = new Map<string, string>();
  for (let i = 0; i < LIVE_SESSIONS; i++) ids.set(live(i), (await post(url, '/register', { product: `fuzz-live-${i}`, version: '1' })).session_id);
  const ended = (await post(url, '/register', { product: 'fuzz-ended', version: '1' })).session_id;
  await post(url, '/end', { session_id: ended });
  ids.set(ENDED, ended);
  const sock = await FuzzSocket.connect(url, 'fuzz-setup');
  await sock.waitWelcome();
  const q = sock.welcome.acked;
  sock.send(encode({ t: 'ops', ops: [{ q: q + 1, k: 'register', product: 'fuzz-crashed', version: '1' }] }, 'plain'));
  await sock.waitAcked(q + 1);
  const crashed = sock.registered.get(q + 1)!;
  sock.send(encode({ t: 'ops', ops: [{ q: q + 2, k: 'crash', session_id: crashed, reason: 'fuzz' }] }, 'plain'));
  await sock.waitAcked(q + 2);
  sock.close();
  ids.set(CRASHED, crashed);
  return ids;
}

/** Runs the cases `indices` of `seed`; `afterChunk` runs after each chunk (memory samples). */
export async function runCases(ctx: Ctx, seed: number, indices: Iterable<number>, afterChunk: (sent: number) => Promise<void> = async () => undefined): Promise<void> {
  const ops = new OpsStream(ctx);
  const batch = new BatchStream(ctx);
  await ops.start();
  await batch.start();
  let chunk: Case[] = [];
  let sent = 0;
  const runChunk = async (): Promise<void> => {
    const by: Record<'ops' | 'batch' | 'http' | 'read' | 'kill', Case[]> = { ops: [], batch: [], http: [], read: [], kill: [] };
    for (const c of chunk) {
      if (c.cat === 'ws-op') by.ops.push(c);
      else if (c.cat === 'batch-op') by.batch.push(c);
      else if (c.cat === 'frame') by[c.c.conn].push(c);
      else by[c.cat].push(c);
    }
    sent += chunk.length;
    chunk = [];
    await Promise.all([ops.feed(by.ops), batch.feed(by.batch), runHttp(ctx, by.http), runReads(ctx, by.read), runKills(ctx, by.kill)]);
    await afterChunk(sent);
  };
  for (const i of indices) {
    chunk.push(caseAt(seed, i));
    if (chunk.length >= (sent === 0 ? WARMUP : CHUNK)) await runChunk();
  }
  if (chunk.length > 0) await runChunk();
  await ops.end();
  await batch.end();
  ops.verify();
  batch.verify();
}
