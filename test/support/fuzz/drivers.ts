/**
 * The drivers: each takes its cases in index order, sends them, and checks every outcome against
 * the case's expectation, reporting mismatches to the Report.
 *
 *   OpsStream    ws-op cases, packed up to max_ops_per_frame per `ops` frame, plus whole-frame
 *                cases for the ops connection. Outcomes are matched by q; refusals without a q
 *                by their position in the frame.
 *   BatchStream  batch-op cases, packed into `batch` frames for a live session, plus whole-batch
 *                cases. Outcomes are matched by q (q + i).
 *   runReads     get_session frames on one connection, matched by request id.
 *   runKills     connection-killing frames, one connection each, a few at a time.
 *   runHttp      HTTP cases over a keep-alive undici pool with some concurrency.
 */
import { Readable } from 'node:stream';
import { Pool } from 'undici';
import type { Case } from './cases.js';
import type { OpCase } from './op-cases.js';
import type { FrameCase, KillCase, ReadCase } from './frame-cases.js';
import type { HttpCase } from './http-cases.js';
import { LIMITS } from './limits.js';
import { arrayOf, encode, opsFrame, type Encoding } from './msgpack.js';
import { Rng } from './prng.js';
import type { Report } from './report.js';
import { describe, toJson } from './json.js';
import { FuzzSocket } from './ws-client.js';

export interface Ctx {
  url: string;
  /** Session placeholders (`<live:N>`, `<ended>`, `<crashed>`) → the ids the daemon gave. */
  ids: Map<string, string>;
  report: Report;
  /** Names the connections (client ids) of this run. */
  runId: string;
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Date);

export function resolveId(ctx: Ctx, v: unknown): unknown {
  return typeof v === 'string' ? (ctx.ids.get(v) ?? v) : v;
}

/** The op with its placeholder session id replaced (a copy; own "__proto__" keys stay own keys). */
export function resolveOp(ctx: Ctx, op: unknown): unknown {
  if (!isObject(op) || typeof op['session_id'] !== 'string' || !ctx.ids.has(op['session_id'])) return op;
  return { ...op, session_id: ctx.ids.get(op['session_id']) };
}

function resolveText(ctx: Ctx, text: string): string {
  for (const [placeholder, id] of ctx.ids) if (text.includes(placeholder)) text = text.split(placeholder).join(id);
  return text;
}

const expectText = (code: string | null): string => (code === null ? 'accepted (no error in the acks)' : `refused with ${code}`);
const gotText = (codes: string[] | undefined): string => (!codes || codes.length === 0 ? 'accepted (no error in the acks)' : `refused with ${codes.join(' and ')}`);

/** Frames sent and not yet covered by an ack; past this many the stream waits. */
const WINDOW = 8;
/** Bytes of ops per frame (max_frame_bytes with room for the envelope). */
const FRAME_BUDGET = LIMITS.max_frame_bytes - 2048;

interface SocketState {
  sock: FuzzSocket;
  expectByQ: Map<number, { c: Case; code: string | null; frame: string }>;
  /** Refusals without q expected: position in the frame, code, case. */
  noQ: Array<{ pos: number; code: string; c: Case }>;
  registers: Map<number, Case>;
  /** A close cut the connection short: what it left unanswered was already reported. */
  broken: boolean;
}

interface InFlight {
  maxQ: number;
  cases: Case[];
  encoding: Encoding;
}

/** What both numbered streams share: connections, q numbering, the window, verification. */
abstract class QStream {
  protected state!: SocketState;
  private readonly states: SocketState[] = [];
  protected lastQ = 0;
  private inflight: InFlight[] = [];
  private connections = 0;
  protected readonly rng: Rng;

  constructor(
    protected readonly ctx: Ctx,
    private readonly name: string,
  ) {
    this.rng = new Rng(0, `${ctx.runId}/${name}`);
  }

  async open(): Promise<void> {
    const sock = await FuzzSocket.connect(this.ctx.url, `${this.ctx.runId}-${this.name}-${++this.connections}`);
    await sock.waitWelcome();
    this.lastQ = Math.max(this.lastQ, sock.welcome.acked);
    this.state = { sock, expectByQ: new Map(), noQ: [], registers: new Map(), broken: false };
    this.states.push(this.state);
  }

  protected pickEncoding(): Encoding {
    return this.rng.weighted([
      [4, 'records'],
      [3, 'plain'],
      [3, 'wide'],
    ] as const);
  }

  /** Describes the frame being built, for failure reports (set before its ops are expected). */
  protected frameInfo = '';

  protected expect(q: number, c: Case, code: string | null): void {
    this.state.expectByQ.set(q, { c, code, frame: this.frameInfo });
  }

  protected async send(bytes: Buffer, sent: InFlight): Promise<void> {
    // A frame over the limit would close the connection (1009): a bug of the fuzzer, not a case.
    if (bytes.length > LIMITS.max_frame_bytes) throw new Error(`fuzzer bug: a ${bytes.length}-byte ${this.name} frame (${sent.encoding}) for cases ${sent.cases.map((c) => c.index).join(', ')}`);
    if (this.state.sock.closed) await this.lost();
    this.state.sock.send(bytes);
    this.inflight.push(sent);
    while (this.inflight.length > WINDOW) {
      const first = this.inflight[0]!;
      if (first.maxQ > 0) {
        try {
          await this.state.sock.waitAcked(first.maxQ);
        } catch {
          await this.lost();
          continue;
        }
      }
      this.inflight.shift();
    }
  }

  /** The connection closed (or stopped answering): report what was in flight, and go on with a new one. */
  private async lost(): Promise<void> {
    const { sock } = this.state;
    const closed = sock.closed ? `closed ${sock.closed.code} "${sock.closed.reason}"` : `no ack past q ${sock.acked} (timed out)`;
    const suspects = this.inflight.filter((f) => f.maxQ === 0 || f.maxQ > sock.acked);
    const cases = suspects.flatMap((f) => f.cases);
    this.ctx.report.fail(cases[0] ?? null, `the ${this.name} connection stays open and answers`, closed, {
      what: `${this.name} connection lost; in flight: frames with cases ${cases.map((c) => c.index).slice(0, 50).join(', ')} (encodings ${suspects.map((f) => f.encoding).join(', ')})`,
      payload: cases.slice(0, 3).map((c) => c.c),
    });
    for (const [q] of this.state.expectByQ) if (q > sock.acked) this.state.expectByQ.delete(q);
    this.state.broken = true;
    this.inflight = [];
    sock.close();
    await this.open();
  }

  /** Waits until everything sent is answered: a last valid op, acked after all the others. */
  async finish(sentinel: (q: number) => Buffer): Promise<void> {
    const q = ++this.lastQ;
    await this.send(sentinel(q), { maxQ: q, cases: [], encoding: 'plain' });
    try {
      await this.state.sock.waitAcked(q);
    } catch {
      await this.lost();
    }
    await new Promise((r) => setImmediate(r));
    this.state.sock.close();
  }

  verify(): void {
    const { report } = this.ctx;
    for (const s of this.states) {
      for (const [q, { c, code, frame }] of s.expectByQ) {
        const got = s.sock.errorsByQ.get(q);
        const ok = code === null ? !got : got?.length === 1 && got[0] === code;
        if (!ok) report.fail(c, expectText(code), `${gotText(got)} (q ${q}, in ${frame})`, { payload: c.c });
      }
      for (const [q, codes] of s.sock.errorsByQ)
        if (!s.expectByQ.has(q) && !s.broken) report.fail(null, `no refusal for q ${q} (not a q of any case)`, gotText(codes), { what: `${this.name}: refusal for an unknown q` });
      for (const [q, c] of s.registers) if (!s.sock.registered.has(q)) report.fail(c, 'the ack lists the registered session id', 'not in any ack', { payload: { q, case: c.c } });
      if (!s.broken) this.verifyNoQ(s);
    }
  }

  private verifyNoQ(s: SocketState): void {
    const key = (pos: number, code: string): string => `${pos}/${code}`;
    const want = new Map<string, Case[]>();
    for (const e of s.noQ) want.set(key(e.pos, e.code), [...(want.get(key(e.pos, e.code)) ?? []), e.c]);
    const got = new Map<string, number>();
    for (const [pos, code] of s.sock.noQErrors) got.set(key(pos, code), (got.get(key(pos, code)) ?? 0) + 1);
    for (const [k, cases] of want) {
      const n = got.get(k) ?? 0;
      if (n !== cases.length)
        this.ctx.report.fail(cases[0]!, `${cases.length} refusal(s) without q at ${k}`, `${n}`, { payload: cases.slice(0, 3).map((c) => c.c) });
    }
    for (const [k, n] of got) if (!want.has(k)) this.ctx.report.fail(null, `no refusal without q at ${k}`, `${n}`, { what: `${this.name}: unexpected refusal without q` });
  }
}

// ---- ops frames ----

export class OpsStream extends QStream {
  private items: Array<{ c: Case; wire: unknown; bytes: Buffer; q: number }> = [];
  private bytes = 0;
  private encoding: Encoding = 'plain';

  constructor(ctx: Ctx) {
    super(ctx, 'ops');
  }

  async start(): Promise<void> {
    await this.open();
    // A first op, so that a resend always has a q at or below the mark to reuse.
    await this.send(opsFrame([encode({ q: ++this.lastQ, k: 'heartbeat', session_id: this.ctx.ids.get('<live:0>') }, 'plain')]), { maxQ: this.lastQ, cases: [], encoding: 'plain' });
    this.encoding = this.pickEncoding();
  }

  async feed(cases: Case[]): Promise<void> {
    for (const c of cases) {
      this.ctx.report.count(c);
      if (c.cat === 'frame') {
        await this.flush();
        await this.frameCase(c as Case & { cat: 'frame' });
      } else await this.push(c, c.c as OpCase);
    }
    await this.flush();
  }

  async end(): Promise<void> {
    await this.finish((q) => opsFrame([encode({ q, k: 'heartbeat', session_id: this.ctx.ids.get('<live:0>') }, 'plain')]));
  }

  private async push(c: Case, oc: OpCase): Promise<void> {
    const op = resolveOp(this.ctx, oc.op);
    let wire: unknown;
    let q = 0;
    if (oc.q === 'next') wire = { q: (q = ++this.lastQ), ...(op as object) };
    else if (oc.q === 'resend') wire = { q: 1 + this.rng.int(this.lastQ), ...(op as object) };
    else wire = isObject(op) ? ('badQ' in oc ? { ...op, q: oc.badQ } : op) : op;
    // Encoded for the frame it goes in (records frames are packed whole at flush: a msgpackr
    // record definition turns 0x40-0x7f into record references for the rest of the message, so
    // records and plain MessagePack never share a frame).
    let bytes = this.encodeItem(wire);
    if (this.items.length >= LIMITS.max_ops_per_frame || this.bytes + bytes.length > FRAME_BUDGET) {
      await this.flush();
      bytes = this.encodeItem(wire);
    }
    if (this.items.length === 0) this.frameInfo = `an ops frame (${this.encoding})`;
    if (oc.q === 'next') {
      this.expect(q, c, 'ok' in oc.expect ? null : oc.expect.code);
      if (oc.kind === 'register' && 'ok' in oc.expect) this.state.registers.set(q, c);
    } else if (oc.q === 'none' && !('ok' in oc.expect)) this.state.noQ.push({ pos: this.items.length, code: oc.expect.code, c });
    this.items.push({ c, wire, bytes, q });
    this.bytes += bytes.length;
  }

  private encodeItem(wire: unknown): Buffer {
    return encode(wire, this.encoding === 'wide' ? 'wide' : 'plain', this.rng);
  }

  private async flush(): Promise<void> {
    if (this.items.length === 0) return;
    const items = this.items;
    this.items = [];
    this.bytes = 0;
    let frame = this.encoding === 'records' ? encode({ t: 'ops', ops: items.map((i) => i.wire) }, 'records') : opsFrame(items.map((i) => i.bytes), this.encoding === 'wide' ? this.rng : undefined);
    if (frame.length > LIMITS.max_frame_bytes) frame = encode({ t: 'ops', ops: items.map((i) => i.wire) }, 'plain'); // records can outgrow plain
    const maxQ = items.reduce((m, i) => Math.max(m, i.q), 0); // new ops only: resends and bad q's are not acked by number
    await this.send(frame, { maxQ, cases: items.map((i) => i.c), encoding: this.encoding });
    this.encoding = this.pickEncoding();
  }

  private async frameCase(c: Case & { cat: 'frame' }): Promise<void> {
    const shape = (c.c as FrameCase).shape;
    if (shape.t !== 'ops') return;
    const wires = shape.ops.map((op) => ({ q: ++this.lastQ, ...(resolveOp(this.ctx, op) as object) }));
    this.frameInfo = `an ops frame of ${wires.length} ops`;
    wires.forEach((w, i) => this.expect(w.q, c, shape.expect[i] === 'ok' ? null : shape.expect[i]!));
    let frame: Buffer;
    if (shape.padTo) {
      // Pad with an unknown field (ignored) until the frame is exactly padTo bytes.
      let pad = 0;
      for (let i = 0; i < 8; i++) {
        const size = opsFrame([encode({ ...wires[0], zz_pad: 'p'.repeat(pad) }, 'plain')]).length;
        if (size === shape.padTo) break;
        pad = Math.max(0, pad + shape.padTo - size);
      }
      frame = opsFrame([encode({ ...wires[0], zz_pad: 'p'.repeat(pad) }, 'plain')]);
      if (frame.length !== shape.padTo) throw new Error(`could not pad a frame to ${shape.padTo} bytes (${frame.length})`);
    } else {
      const enc = this.pickEncoding();
      frame = enc === 'records' ? encode({ t: 'ops', ops: wires }, 'records') : opsFrame(wires.map((w) => encode(w, enc, this.rng)), enc === 'wide' ? this.rng : undefined);
      if (frame.length > LIMITS.max_frame_bytes) frame = encode({ t: 'ops', ops: wires }, 'plain');
    }
    await this.send(frame, { maxQ: this.lastQ, cases: [c], encoding: 'plain' });
  }
}

// ---- batch frames ----

export class BatchStream extends QStream {
  private items: Array<{ c: Case; bytes: Buffer }> = [];
  private bytes = 0;
  private target = 0;

  /** An op for the bin of the current frame: plain or wide bytes (records bins are packed whole at flush). */
  private encodeItem(op: unknown): Buffer {
    return encode(op, this.encoding === 'wide' ? 'wide' : 'plain', this.rng);
  }
  private encoding: Encoding = 'plain';
  private session = 0;

  constructor(ctx: Ctx) {
    super(ctx, 'batch');
  }

  async start(): Promise<void> {
    await this.open();
    this.next();
  }

  async feed(cases: Case[]): Promise<void> {
    for (const c of cases) {
      this.ctx.report.count(c);
      if (c.cat === 'frame') {
        await this.flush();
        await this.frameCase(c as Case & { cat: 'frame' });
        continue;
      }
      let bytes = this.encodeItem((c.c as OpCase).op);
      if (this.items.length >= this.target || this.bytes + bytes.length > FRAME_BUDGET) {
        await this.flush();
        bytes = this.encodeItem((c.c as OpCase).op);
      }
      this.items.push({ c, bytes });
      this.bytes += bytes.length;
    }
    await this.flush();
  }

  async end(): Promise<void> {
    await this.finish((q) => this.envelope(this.ctx.ids.get('<live:0>')!, q, 1, arrayOf([encode({ k: 'heartbeat' }, 'plain')]), 'plain'));
  }

  /** The next frame: its size, encoding and session (the live sessions in turn). */
  private next(): void {
    this.target = this.rng.chance(0.2) ? LIMITS.max_ops_per_frame : this.rng.range(1, LIMITS.max_ops_per_frame);
    this.encoding = this.pickEncoding();
    this.session = (this.session + 1) % 4;
  }

  private envelope(sessionId: unknown, q: number, n: number, bin: Buffer, enc: Encoding): Buffer {
    return encode({ t: 'batch', session_id: sessionId, q, n, ops: bin }, enc, this.rng);
  }

  private async flush(): Promise<void> {
    if (this.items.length === 0) return;
    const items = this.items;
    this.items = [];
    this.bytes = 0;
    const q0 = this.lastQ + 1;
    this.frameInfo = `a batch q ${q0} n ${items.length} (${this.encoding}) for ${this.ctx.ids.get(`<live:${this.session}>`)}`;
    items.forEach(({ c }, i) => {
      const oc = c.c as OpCase;
      this.expect(q0 + i, c, 'ok' in oc.expect ? null : oc.expect.code);
    });
    this.lastQ += items.length;
    const bin = this.encoding === 'records' ? encode(items.map((i) => (i.c.c as OpCase).op), 'records') : arrayOf(
      items.map((i) => i.bytes),
      this.encoding === 'wide' ? this.rng : undefined,
    );
    let frame = this.envelope(this.ctx.ids.get(`<live:${this.session}>`)!, q0, items.length, bin, this.encoding);
    if (frame.length > LIMITS.max_frame_bytes) frame = this.envelope(this.ctx.ids.get(`<live:${this.session}>`)!, q0, items.length, arrayOf(items.map((i) => encode((i.c.c as OpCase).op, 'plain'))), 'plain');
    await this.send(frame, { maxQ: this.lastQ, cases: items.map((i) => i.c), encoding: this.encoding });
    this.next();
  }

  private async frameCase(c: Case & { cat: 'frame' }): Promise<void> {
    const shape = (c.c as FrameCase).shape;
    if (shape.t !== 'batch') return;
    const enc = this.pickEncoding();
    if (shape.overlap && this.lastQ < shape.overlap) {
      // Too early for a resend of that many: raise the mark first with valid heartbeats.
      const n = shape.overlap;
      const q0 = this.lastQ + 1;
      this.lastQ += n;
      await this.send(this.envelope(this.ctx.ids.get('<live:0>')!, q0, n, arrayOf(Array.from({ length: n }, () => encode({ k: 'heartbeat' }, 'plain'))), 'plain'), { maxQ: this.lastQ, cases: [], encoding: 'plain' });
    }
    const q0 = shape.overlap ? this.lastQ - shape.overlap + 1 : this.lastQ + 1;
    this.frameInfo = `a batch q ${q0} n ${shape.n} (${enc})`;
    shape.expect.forEach((e, i) => {
      if (e !== 'skipped') this.expect(q0 + i, c, e === 'ok' ? null : e);
    });
    this.lastQ = Math.max(this.lastQ, q0 + shape.n - 1);
    const content = shape.content;
    const bin = 'bytes' in content ? content.bytes : enc === 'records' ? encode(content.ops, 'records') : arrayOf(content.ops.map((op) => encode(op, enc, this.rng)));
    let frame = this.envelope(resolveId(this.ctx, shape.session), q0, shape.n, bin, enc);
    if (frame.length > LIMITS.max_frame_bytes && 'ops' in content) frame = this.envelope(resolveId(this.ctx, shape.session), q0, shape.n, arrayOf(content.ops.map((op) => encode(op, 'plain'))), 'plain');
    await this.send(frame, { maxQ: this.lastQ, cases: [c], encoding: enc });
  }
}

// ---- reads ----

export async function runReads(ctx: Ctx, cases: Case[]): Promise<void> {
  if (cases.length === 0) return;
  const sock = await FuzzSocket.connect(ctx.url, `${ctx.runId}-reads`);
  await sock.waitWelcome();
  const byId = new Map<string | number, Case>();
  const badSession: Case[] = [];
  const badError = new Map<string, Case[]>();
  const rng = new Rng(0, `${ctx.runId}/reads`);
  let sent = 0;
  for (const c of cases) {
    ctx.report.count(c);
    const rc = c.c as ReadCase;
    const frame: Record<string, unknown> = { t: 'get_session' };
    if (rc.id === 'auto') {
      const id = c.index % 2 ? `r${c.index}` : 1_000_000 + c.index;
      frame['id'] = id;
      byId.set(id, c);
    } else {
      if (rc.id.bad !== undefined) frame['id'] = rc.id.bad;
      if (rc.expect.t === 'session') badSession.push(c);
      else badError.set(rc.expect.code, [...(badError.get(rc.expect.code) ?? []), c]);
    }
    if (rc.sessionId !== undefined) frame['session_id'] = resolveId(ctx, rc.sessionId);
    sock.send(encode(frame, rng.chance(0.5) ? 'records' : 'plain'));
    sent++;
    try {
      await sock.until(() => sock.frames.length >= sent - 32, 'read answers', 20_000);
    } catch (err) {
      ctx.report.fail(c, 'answers to get_session', String(err), { what: `reads: ${(err as Error).message}` });
      return;
    }
  }
  try {
    await sock.until(() => sock.frames.length >= sent, 'every read answered', 20_000);
  } catch (err) {
    ctx.report.fail(null, `${sent} answers`, `${sock.frames.length}`, { what: `reads: ${(err as Error).message}` });
  }
  sock.close();
  let sessionNull = 0;
  const errorNull = new Map<string, number>();
  for (const f of sock.frames) {
    if (f.t === 'session' && byId.has(f.id)) {
      const c = byId.get(f.id)!;
      byId.delete(f.id);
      const rc = c.c as ReadCase;
      if (rc.expect.t !== 'session') ctx.report.fail(c, `an error frame ${rc.expect.code}`, 'a session frame');
      else if (f.session?.id !== resolveId(ctx, rc.sessionId)) ctx.report.fail(c, 'the session, with the id asked for', describe(f.session).slice(0, 200));
    } else if (f.t === 'error' && byId.has(f.id)) {
      const c = byId.get(f.id)!;
      byId.delete(f.id);
      const rc = c.c as ReadCase;
      const want = rc.expect.t === 'error' ? `an error frame ${rc.expect.code}` : 'a session frame';
      if (rc.expect.t !== 'error' || rc.expect.code !== f.code) ctx.report.fail(c, want, `an error frame ${f.code} (${f.message})`);
    } else if (f.t === 'session' && f.id === null) sessionNull++;
    else if (f.t === 'error' && f.id === null) errorNull.set(f.code, (errorNull.get(f.code) ?? 0) + 1);
    else ctx.report.fail(null, 'only session/error answers', describe(f).slice(0, 200), { what: 'reads: unexpected frame' });
  }
  for (const c of byId.values()) ctx.report.fail(c, 'an answer', 'none');
  if (sessionNull !== badSession.length) ctx.report.fail(badSession[0] ?? null, `${badSession.length} session answers with id null (request id not a number or string)`, `${sessionNull}`);
  for (const [code, cs] of badError)
    if ((errorNull.get(code) ?? 0) !== cs.length) ctx.report.fail(cs[0]!, `${cs.length} error answers ${code} with id null`, `${errorNull.get(code) ?? 0}`);
}

// ---- connection-killing frames ----

function killBytes(ctx: Ctx, kc: KillCase, rng: Rng): Buffer | string {
  const f = kc.frame;
  const resolveFrame = (v: unknown): unknown => {
    if (!isObject(v)) return v;
    const out: Record<string, unknown> = { ...v };
    if ('session_id' in out) out['session_id'] = resolveId(ctx, out['session_id']);
    if (Array.isArray(out['ops'])) out['ops'] = out['ops'].map((op) => resolveOp(ctx, op));
    return out;
  };
  if ('bytes' in f) return f.bytes;
  if ('text' in f) return f.text;
  if ('value' in f) return encode(resolveFrame(f.value), f.encoding, rng);
  if ('truncate' in f) {
    const full = encode(resolveFrame(f.truncate), f.encoding, rng);
    return full.subarray(0, Math.floor(f.keep * full.length));
  }
  return Buffer.concat([encode(resolveFrame(f.append), f.encoding, rng), f.extra]);
}

export async function runKills(ctx: Ctx, cases: Case[], concurrency = 6): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < cases.length) {
      const c = cases[next++]!;
      ctx.report.count(c);
      const kc = c.c as KillCase;
      const rng = new Rng(c.seed, 'kill-encoding', c.index);
      const clientId = `${ctx.runId}-kill-${c.index}`;
      try {
        if (kc.close === null) {
          const sock = await FuzzSocket.connect(ctx.url, clientId, (ws) => ws.terminate());
          await sock.waitClosed();
          continue;
        }
        const bytes = killBytes(ctx, kc, rng);
        const sock = await FuzzSocket.connect(ctx.url, clientId);
        await sock.waitWelcome();
        sock.send(bytes, typeof bytes !== 'string');
        const closed = await sock.waitClosed(10_000);
        const reasonOk = closed.code === 1009 || closed.reason.length > 0;
        if (closed.code !== kc.close || !reasonOk)
          ctx.report.fail(c, `close ${kc.close} with a reason`, `close ${closed.code} "${closed.reason}"`, { payload: { case: kc, bytes: typeof bytes === 'string' ? bytes.slice(0, 200) : bytes.subarray(0, 300) } });
      } catch (err) {
        ctx.report.fail(c, `close ${kc.close}`, String(err));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

// ---- HTTP ----

interface Answer {
  status: number;
  body: any;
  headers: Record<string, string | string[] | undefined>;
}

async function request(pool: Pool, ctx: Ctx, hc: HttpCase, newId: string | null): Promise<Answer> {
  const value = (v: string): string => (v === '<new>' && newId ? newId : String(resolveId(ctx, v)));
  const query = hc.query?.length ? `?${hc.query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(value(v))}`).join('&')}` : '';
  let body: Buffer | undefined;
  if (hc.body) {
    if ('bytes' in hc.body) body = hc.body.bytes;
    else {
      let text = 'json' in hc.body ? toJson(resolveOp(ctx, hc.body.json)) : resolveText(ctx, hc.body.text);
      if (newId) text = text.split('<new>').join(newId);
      if (hc.padTo) text = text.padEnd(text.length + Math.max(0, hc.padTo - Buffer.byteLength(text)), ' ');
      body = Buffer.from(text);
    }
  }
  const chunked = hc.chunked && body !== undefined;
  const res = await pool.request({
    method: hc.method as 'GET',
    path: hc.path + query,
    headers: body ? { 'content-type': 'application/json' } : {},
    // Chunked: no content-length, two chunks (the daemon counts bytes as they come).
    body: chunked && body ? Readable.from([body.subarray(0, body.length >> 1), body.subarray(body.length >> 1)]) : body,
  });
  const text = await res.body.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* /metrics is text */
  }
  return { status: res.statusCode, body: parsed, headers: res.headers };
}

function checkAnswer(hc: HttpCase, a: Answer): string | null {
  const e = hc.expect;
  if (a.status !== e.status || (e.error && a.body?.error !== e.error)) return `${a.status} ${describe(a.body).slice(0, 300)}`;
  if (e.error && typeof a.body?.details !== 'string') return `${a.status} without details: ${describe(a.body).slice(0, 200)}`;
  if (e.status === 405 && !a.headers['allow']) return '405 without an Allow header';
  if (e.status === 200 && hc.path === '/register' && typeof a.body?.session_id !== 'string') return `200 without a session_id: ${describe(a.body)}`;
  return null;
}

export async function runHttp(ctx: Ctx, cases: Case[], concurrency = 16): Promise<void> {
  const pool = new Pool(ctx.url, { connections: concurrency, headersTimeout: 15_000, bodyTimeout: 15_000 });
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < cases.length) {
      const c = cases[next++]!;
      ctx.report.count(c);
      const hc = c.c as HttpCase;
      const steps = hc.steps ?? [hc];
      let newId: string | null = null;
      for (const [i, step] of steps.entries()) {
        try {
          const a = await request(pool, ctx, step, newId);
          if (i === 0 && hc.steps && typeof a.body?.session_id === 'string') newId = a.body.session_id;
          const wrong = checkAnswer(step, a);
          if (wrong) {
            const want = `${step.expect.status}${step.expect.error ? ` ${step.expect.error}` : ''}`;
            ctx.report.fail(c, want, wrong, { payload: hc.steps ? { step: i, ...step } : hc });
            break;
          }
        } catch (err) {
          ctx.report.fail(c, `${step.expect.status}`, `no answer: ${String(err)}`, { payload: step });
          break;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  await pool.close();
}
