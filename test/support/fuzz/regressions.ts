/**
 * Replays test/fuzz-regressions.json: each entry on a daemon of its own (an open crash must not
 * take the others down). An open entry's assertions are tap TODOs: reported, not failing, until
 * the bug is fixed and the entry's status set to 'fixed'. Checks that only make sure the replay
 * itself works (the upstream got what a good session sent, ...) are never TODOs.
 */
import type { Test } from 'tap';
import WebSocket from 'ws';
import { Readable } from 'node:stream';
import { Packr } from 'msgpackr';
import { Pool } from 'undici';
import { startFakeUpstream } from '../fake-upstream.js';
import { startTestDaemon, until } from '../daemon-harness.js';
import { FuzzDaemon } from './daemon.js';
import type { Ctx } from './drivers.js';
import { REGRESSIONS, type RegressionEntry } from './known-bugs.js';
import { describe } from './json.js';
import { encode } from './msgpack.js';
import { Report } from './report.js';
import { runCases, setupSessions } from './run.js';
import { FuzzSocket } from './ws-client.js';

type T = Test;

/** One check of a replay; `sanity`: it checks the replay works, not the bug. */
interface Check {
  ok: boolean;
  message: string;
  sanity?: boolean;
}

export async function runRegressions(t: T): Promise<void> {
  // Not awaited one by one: each has a daemon of its own, and the parent test runs a few at once
  // (its `jobs`), which takes the suite's longest file down by about 15 s.
  for (const entry of REGRESSIONS) {
    void t.test(`${entry.id} (${entry.status})`, async (t) => {
      const todo = entry.status === 'open' ? `open bug, see test/fuzz-regressions.json: ${entry.bug.slice(0, 160)}…` : undefined;
      if (entry.expect) t.comment(`expected: ${entry.expect}`);
      const checks = await replay(t, entry);
      for (const c of checks) t.ok(c.ok, c.message, c.sanity || !todo ? {} : { todo });
    });
  }
}

function replay(t: T, entry: RegressionEntry): Promise<Check[]> {
  const r = entry.replay;
  switch (r.kind) {
    case 'case':
      return replayCase(t, r['seed'] as number, r['index'] as number);
    case 'ws-frame':
      return replayFrame(t, r);
    case 'int64-encodings':
      return replayInt64(t);
    case 'batch-poison':
      return replayBatchPoison(t, r['depth'] as number, (r['variant'] as string | undefined) ?? 'event');
    case 'drop-before-welcome':
      return replayDropBeforeWelcome(t, r['connections'] as number);
    case 'http-413-chunked':
      return replayChunked413(t, r['connections'] as number, r['requests'] as number, r['bytes'] as number);
    default:
      return Promise.resolve([{ ok: false, message: `unknown replay kind ${r.kind}`, sanity: true }]);
  }
}

/** A daemon that is up and answering /health within 2 s, as a check. */
async function upAndAnswering(daemon: FuzzDaemon): Promise<Check> {
  let status = 0;
  try {
    status = (await fetch(`${daemon.url}/health`, { signal: AbortSignal.timeout(2000) })).status;
  } catch {
    /* no answer */
  }
  const how = daemon.alive ? `status ${status}` : `exited: ${daemon.child.stderr.filter((l) => /^\w*Error/.test(l)).slice(0, 1).join('') || 'no error line'}`;
  return { ok: daemon.alive && status === 200, message: `the daemon stays up and answers /health (${how})` };
}

async function replayCase(t: T, seed: number, index: number): Promise<Check[]> {
  const daemon = await FuzzDaemon.start(t, t.testdir());
  const ids = await setupSessions(daemon.url);
  const report = new Report();
  const ctx: Ctx = { url: daemon.url, ids, report, runId: `regress-${seed}-${index}` };
  await runCases(ctx, seed, [index]);
  for (const line of report.lines()) t.comment(line);
  return [{ ok: report.failures.length === 0, message: `case ${index} of seed ${seed} gets its expected outcome` }, await upAndAnswering(daemon)];
}

/** Frame bytes: raw hex, a frame value ({"$bin": hex} for bin), or an ops frame with a deep state. */
function frameBytes(r: RegressionEntry['replay'], ids: Map<string, string>): Buffer {
  if (typeof r['hex'] === 'string') return Buffer.from(r['hex'], 'hex');
  if (typeof r['deep_state'] === 'number') {
    const marker = 'DEEP-VALUE-HERE';
    const frame = encode({ t: 'ops', ops: [{ q: 1, k: 'state', session_id: ids.get('<live:0>'), state: { level: marker } }] }, 'plain');
    const at = frame.indexOf(encode(marker, 'plain'));
    // [[[...[1]...]]] written by hand: encoders recurse, and this is deeper than their stack.
    const deep = Buffer.concat([Buffer.alloc(r['deep_state'], 0x91), Buffer.from([0x01])]);
    return Buffer.concat([frame.subarray(0, at), deep, frame.subarray(at + encode(marker, 'plain').length)]);
  }
  const revive = (v: unknown): unknown => {
    if (typeof v === 'string') return ids.get(v) ?? v;
    if (Array.isArray(v)) return v.map(revive);
    if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      if (typeof o['$bin'] === 'string') return Buffer.from(o['$bin'], 'hex');
      return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, revive(x)]));
    }
    return v;
  };
  return encode(revive(r['frame']), 'plain');
}

/**
 * A frame on a connection of its own, a good connection open beside it. Expectations: `close`
 * (that close code), `acks` ([[q, code]]: refusals in the acks, the socket open), `answer`
 * (a batch answered at all: an ack covering it or a close 1008).
 */
async function replayFrame(t: T, r: RegressionEntry['replay']): Promise<Check[]> {
  const daemon = await FuzzDaemon.start(t, t.testdir());
  const ids = await setupSessions(daemon.url);
  const checks: Check[] = [];
  const good = await FuzzSocket.connect(daemon.url, 'regress-good');
  await good.waitWelcome();
  const bad = await FuzzSocket.connect(daemon.url, 'regress-bad');
  await bad.waitWelcome();
  const bytes = frameBytes(r, ids);
  t.comment(`frame: ${bytes.length} bytes ${bytes.subarray(0, 64).toString('hex')}${bytes.length > 64 ? '…' : ''}`);
  bad.send(bytes);
  if (typeof r['close'] === 'number') {
    const closed = await bad.waitClosed(5000).catch(() => null);
    checks.push({ ok: closed?.code === r['close'], message: `the socket is closed ${r['close']} (${closed ? `${closed.code} "${closed.reason}"` : 'not closed'})` });
  }
  if (Array.isArray(r['acks'])) {
    const want = r['acks'] as Array<[number, string]>;
    const maxQ = Math.max(...want.map(([q]) => q));
    await bad.waitAcked(maxQ, 5000).catch(() => undefined);
    const got = want.map(([q]) => bad.errorsByQ.get(q)?.join(',') ?? 'none');
    const closed = bad.closed ? `; closed ${bad.closed.code} "${bad.closed.reason}"` : '';
    checks.push({ ok: want.every(([, code], i) => got[i] === code) && !bad.closed, message: `refused in the acks with ${want.map(([q, c]) => `${c} (q ${q})`).join(', ')}, socket open (got ${got.join(', ')}${closed})` });
  }
  if (r['answer']) {
    const frame = r['frame'] as { q: number; n: number };
    const last = frame.q + frame.n - 1;
    await bad.until(() => bad.acked >= last || bad.closed !== null, 'an answer', 10_000).catch(() => undefined);
    const what = bad.closed ? `closed ${bad.closed.code} "${bad.closed.reason}"` : `acked ${bad.acked}`;
    checks.push({ ok: bad.acked >= last || bad.closed?.code === 1008, message: `the batch is answered: an ack covering q ${last}, or a close 1008 (${what})` });
  }
  await new Promise((res) => setTimeout(res, 300));
  checks.push(await upAndAnswering(daemon));
  const q = good.welcome.acked + 1;
  if (!good.closed) good.send(encode({ t: 'ops', ops: [{ q, k: 'heartbeat', session_id: ids.get('<live:1>') }] }, 'plain'));
  await good.waitAcked(q, 3000).catch(() => undefined);
  checks.push({ ok: good.acked >= q && !good.closed, message: `another connection keeps working (${good.closed ? `closed ${good.closed.code}` : `acked ${good.acked}`})` });
  good.close();
  bad.close();
  return checks;
}

/** Integers in their 64-bit forms (msgpackr packs a BigInt as int64, 0xd3). */
async function replayInt64(t: T): Promise<Check[]> {
  const daemon = await FuzzDaemon.start(t, t.testdir());
  const ids = await setupSessions(daemon.url);
  const sid = ids.get('<live:0>')!;
  const sock = await FuzzSocket.connect(daemon.url, 'regress-int64');
  await sock.waitWelcome();
  const packr = new Packr({ useRecords: false });
  const send = (frame: unknown): void => sock.send(Buffer.from(packr.pack(frame)));
  const checks: Check[] = [];
  const answered = (): Promise<void> => sock.until(() => false, 'nothing', 800).catch(() => undefined);

  send({ t: 'ops', ops: [{ q: 1n, k: 'heartbeat', session_id: sid }] });
  await answered();
  checks.push({ ok: sock.acked >= 1 && sock.noQErrors.length === 0, message: `an op whose q is an int64 is acked (acked ${sock.acked}, refusals without q: ${describe(sock.noQErrors)})` });

  send({ t: 'ops', ops: [{ q: 2, k: 'metric', session_id: sid, name: 'm', value: 5n, count: 3n }] });
  await answered();
  checks.push({ ok: sock.acked >= 2 && !sock.errorsByQ.has(2), message: `a metric whose value and count are int64 is accepted (acked ${sock.acked}, refused: ${sock.errorsByQ.get(2)?.join(',') ?? 'no'})` });

  send({ t: 'batch', session_id: sid, q: 3n, n: 1n, ops: encode([{ k: 'heartbeat' }], 'plain') });
  await answered();
  checks.push({ ok: sock.acked >= 3 && !sock.closed, message: `a batch whose q and n are int64 is acked (${sock.closed ? `closed ${sock.closed.code} "${sock.closed.reason}"` : `acked ${sock.acked}`})` });
  checks.push(await upAndAnswering(daemon));
  sock.close();
  return checks;
}

/**
 * A batch of three ops for one session whose middle one holds an unknown field nested `depth`
 * deep (past the main thread's decoder stack, within the worker's), then delivery to a live
 * upstream. `variant`: which op carries it: an event, a heartbeat or a state (refused too_deep),
 * an event whose nesting is msgpackr Set extensions (refused invalid_field), or an op resent and
 * so skipped unread (the others accepted). In every case the valid ops must be delivered.
 */
async function replayBatchPoison(t: T, depth: number, variant: string): Promise<Check[]> {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const daemon = await FuzzDaemon.start(t, t.testdir(), { serverUrl: upstream.url });
  const sock = await FuzzSocket.connect(daemon.url, 'regress-poison');
  await sock.waitWelcome();
  sock.send(encode({ t: 'ops', ops: [{ q: 1, k: 'register', product: 'poisoned', version: '1' }, { q: 2, k: 'register', product: 'bystander', version: '1' }] }, 'plain'));
  await sock.waitAcked(2);
  const [a, b] = [sock.registered.get(1)!, sock.registered.get(2)!];
  const marker = 'DEEP-VALUE-HERE';
  const deepOp: Record<string, unknown> = { event: { k: 'event', name: 'deep', junk: marker }, set: { k: 'event', name: 'deep', junk: marker }, heartbeat: { k: 'heartbeat', junk: marker }, state: { k: 'state', state: { a: 1 }, junk: marker } }[variant] ?? { k: 'heartbeat', junk: marker };
  const list = variant === 'skip' ? [deepOp, { k: 'event', name: 'before' }, { k: 'event', name: 'after' }] : [{ k: 'event', name: 'before' }, deepOp, { k: 'event', name: 'after' }];
  const ops = encode(list, 'plain');
  const at = ops.indexOf(encode(marker, 'plain'));
  // Written by hand: encoders recurse, and this is deeper than their stack. d4 73 00: a Set.
  const unit = variant === 'set' ? Buffer.from('d4730091', 'hex') : Buffer.from([0x91]);
  const bin = Buffer.concat([ops.subarray(0, at), Buffer.concat(Array<Buffer>(depth).fill(unit)), Buffer.from([0x01]), ops.subarray(at + encode(marker, 'plain').length)]);
  if (variant === 'skip') {
    // q 3 goes first on its own, so the batch's op at q 3 is a resend: skipped, never validated.
    sock.send(encode({ t: 'ops', ops: [{ q: 3, k: 'heartbeat', session_id: a }] }, 'plain'));
    await sock.waitAcked(3);
  }
  sock.send(encode({ t: 'batch', session_id: a, q: 3, n: 3, ops: bin }, 'plain'));
  sock.send(encode({ t: 'ops', ops: [{ q: 6, k: 'event', session_id: b, name: 'bystander-event' }] }, 'plain'));
  await sock.waitAcked(6);
  const refused = [3, 4, 5].filter((q) => sock.errorsByQ.has(q)).map((q) => `${q}:${sock.errorsByQ.get(q)!.join('/')}`);
  const wantRefused = variant === 'skip' ? '' : variant === 'set' ? '4:invalid_field' : '4:too_deep';
  const events = (): string[] => upstream.applied({ kind: 'event' }).map((r) => String(r.body?.name));
  await until(() => events().includes('bystander-event'), 'the bystander event upstream', 10_000).catch(() => undefined);
  await until(() => events().includes('before') && events().includes('after'), 'the poisoned session events upstream', 3000).catch(() => undefined);
  const dead = (await (await fetch(`${daemon.url}/queue?dead=1&limit=10`)).json()) as { total?: number };
  const queue = await fetch(`${daemon.url}/queue?session_id=${encodeURIComponent(a)}&limit=10`);
  await queue.arrayBuffer();
  sock.close();
  return [
    { ok: events().includes('bystander-event'), message: 'another session is delivered (the replay works)', sanity: true },
    { ok: refused.join(',') === wantRefused, message: `refused: ${wantRefused || 'nothing'} (got ${refused.join(',') || 'nothing'})` },
    {
      ok: events().filter((e) => e !== 'bystander-event').join(',') === 'before,after',
      message: `the batch's valid ops reach the upstream, in order (upstream events: ${events().join(', ')}; dead letters: ${dead.total})`,
    },
    { ok: queue.status === 200, message: `GET /queue of that session answers 200 (${queue.status})` },
    await upAndAnswering(daemon),
  ];
}

/** Clients that drop their connection as soon as it is upgraded; no client mark may stay behind. */
async function replayDropBeforeWelcome(t: T, connections: number): Promise<Check[]> {
  // In-process: the marks are only visible from inside (a few hundred bytes each: no memory
  // measurement would see them).
  const { daemon, url } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9' });
  const marks = (daemon.ws as unknown as { options: { marks: { size: number } } }).options.marks;
  await Promise.all(
    Array.from(
      { length: connections },
      (_, i) =>
        new Promise<void>((resolve) => {
          const ws = new WebSocket(`${url.replace('http', 'ws')}/ws?client_id=drop-${i}`);
          ws.on('error', () => undefined);
          ws.on('upgrade', () => ws.terminate());
          ws.on('close', () => resolve());
        }),
    ),
  );
  await until(() => daemon.ws.connections.size === 0, 'no connection left', 5000).catch(() => undefined);
  await new Promise((r) => setTimeout(r, 500));
  return [
    { ok: daemon.ws.connections.size === 0, message: 'no connection is left open', sanity: true },
    { ok: marks.size === 0, message: `no client mark is left in memory after ${connections} connect-and-drop clients (${marks.size} left)` },
  ];
}

/** Oversized chunked bodies over a keep-alive pool: each must be answered 413. */
async function replayChunked413(t: T, connections: number, requests: number, bytes: number): Promise<Check[]> {
  const daemon = await FuzzDaemon.start(t, t.testdir());
  const pool = new Pool(daemon.url, { connections });
  const body = Buffer.alloc(bytes, 0x20);
  const outcomes = new Map<string, number>();
  let next = 0;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (next++ < requests) {
        let outcome: string;
        try {
          const res = await pool.request({ method: 'POST', path: '/event', headers: { 'content-type': 'application/json' }, body: Readable.from([body.subarray(0, bytes >> 1), body.subarray(bytes >> 1)]) });
          outcome = `${res.statusCode} ${((await res.body.json()) as { error?: string }).error}`;
        } catch (err) {
          outcome = (err as { code?: string }).code ?? String(err);
        }
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      }
    }),
  );
  await pool.close();
  const got = [...outcomes].map(([o, n]) => `${o}: ${n}`).join(', ');
  return [
    { ok: outcomes.get('413 payload_too_large') === requests, message: `${requests} chunked ${bytes}-byte bodies each answered 413 payload_too_large (${got})` },
    await upAndAnswering(daemon),
  ];
}
