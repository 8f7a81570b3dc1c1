/**
 * WebSocket load generator (its own process; started by cli.ts with one JSON argument).
 *
 * `producers` connections, each with its own client_id: registers one session (register op,
 * id from the ack's `registered`), then streams `ops` frames of `batch` ops, q numbered per
 * docs/protocol.md, keeping at most `window` frames unacked. Works the same against the daemon
 * and the bare sink, so the two numbers are comparable.
 *
 * Latency is per frame: from sending the frame to the first ack whose cumulative `acked` covers
 * the frame's last q. It is recorded once per frame (not weighted by the frame's op count);
 * all frames have `batch` ops, so per-op weighting would give the same percentiles.
 */
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { Unpackr, pack } from 'msgpackr';
import { exitWithParent } from './children.js';
import { Schedule, Timeline, emit, fatal, kindCycle, REGISTER_FIELDS, type LoadParams } from './load-common.js';
import { buildTemplate, fillFrame, type FrameTemplate } from './ws-frames.js';

export interface WsLoadParams extends LoadParams {
  url: string;
  producers: number;
  batch: number;
  window: number;
  frame: 'batch' | 'ops';
}

interface AckFrame {
  t: 'ack';
  acked: number;
  errors?: Array<[number, string, string]>;
  registered?: Array<[number, string]>;
}

/** ws masks client frames; an all-zero mask makes ws skip the XOR pass (RFC 6455 allows any key). */
const zeroMask = (mask: Buffer): void => {
  mask.fill(0);
};

class Producer {
  private ws!: WebSocket;
  private readonly unpackr = new Unpackr({ useRecords: true, mapsAsObjects: true });
  sessionId = '';
  private templates: FrameTemplate[] = [];
  private nextTemplate = 0;
  private nextQ = 2; // q 1 is the register op
  // Unacked frames, oldest first, as a ring of (last q, ops, start time).
  private readonly lastQ: Float64Array;
  private readonly opsIn: Uint32Array;
  private readonly sentAt: Float64Array;
  private head = 0;
  private count = 0;
  private stopped = false;
  private schedule: Schedule | null = null;
  private timer: NodeJS.Timeout | null = null;
  private onDrained: (() => void) | null = null;
  private onAck: ((ack: AckFrame) => void) | null = null;

  constructor(
    private readonly p: WsLoadParams,
    private readonly tl: Timeline,
    private readonly clientId: string,
  ) {
    this.lastQ = new Float64Array(p.window);
    this.opsIn = new Uint32Array(p.window);
    this.sentAt = new Float64Array(p.window);
  }

  /** Connects, waits for the welcome, registers the session. */
  async open(): Promise<void> {
    const url = `${this.p.url}?client_id=${encodeURIComponent(this.clientId)}`;
    this.ws = new WebSocket(url, { perMessageDeflate: false, generateMask: zeroMask, maxPayload: 64 * 1024 * 1024 });
    const welcome = new Promise<void>((resolve, reject) => {
      this.ws.once('unexpected-response', (_req, res) =>
        reject(new Error(`the upgrade to ${this.p.url} was refused with HTTP ${res.statusCode} (is the WebSocket gateway there?)`)),
      );
      this.ws.once('error', reject);
      this.onAck = (msg: any) => {
        if (msg.t === 'welcome') resolve();
      };
    });
    this.ws.on('message', (data: Buffer) => this.message(data));
    this.ws.on('error', (err) => {
      if (!this.stopped) fatal(this.p.label, err);
    });
    this.ws.on('close', (code, reason) => {
      if (!this.stopped) fatal(this.p.label, new Error(`connection ${this.clientId} closed by the target: ${code} ${reason.toString()}`));
    });
    await welcome;
    const registered = new Promise<string>((resolve, reject) => {
      this.onAck = (ack) => {
        if (ack.t !== 'ack') return;
        const err = ack.errors?.find((e) => e[0] === 1);
        if (err) reject(new Error(`register refused: ${err[1]} ${err[2]}`));
        const reg = ack.registered?.find((r) => r[0] === 1);
        if (reg) resolve(reg[1]);
        else if (ack.acked >= 1) reject(new Error('the ack covering the register op has no `registered` entry'));
      };
    });
    this.ws.send(pack({ t: 'ops', ops: [{ q: 1, k: 'register', ...REGISTER_FIELDS }] }));
    this.sessionId = await registered;
    this.onAck = null;
    // Enough templates that the mix repeats over whole cycles of >= 100 ops (80/15/5 exactly).
    const frames = Math.max(1, Math.min(100, Math.ceil(100 / this.p.batch)));
    const kinds = kindCycle(this.p.mix, frames * this.p.batch);
    for (let f = 0; f < frames; f++) this.templates.push(buildTemplate(this.sessionId, kinds.slice(f * this.p.batch, (f + 1) * this.p.batch), this.p.frame));
  }

  start(perConnectionFrameRate: number | null): void {
    if (perConnectionFrameRate !== null) {
      const sch = (this.schedule = new Schedule(perConnectionFrameRate, performance.now()));
      this.tl.onMeasureStart(() => {
        sch.rebase(performance.now());
        this.blockedAt = null;
      });
    }
    this.pump();
  }

  /** Sends while the window has room (and, when rate-limited, while frames are due). */
  private pump(): void {
    if (this.stopped) return;
    const sch = this.schedule;
    if (!sch) {
      while (this.count < this.p.window) this.sendFrame(performance.now());
      return;
    }
    let now = performance.now();
    while (sch.due(now)) {
      if (this.count >= this.p.window) {
        this.blockedAt ??= now; // the next ack calls pump() again
        return;
      }
      // A frame held back by a full window is late because of the target: its latency counts
      // from its slot in the schedule (no coordinated omission). A frame late only because
      // timers fire late counts from when it went out: that lag is the generator's, not the target's.
      const scheduled = sch.take();
      this.sendFrame(this.blockedAt !== null ? scheduled : now);
      now = performance.now();
    }
    this.blockedAt = null;
    if (!this.timer)
      this.timer = setTimeout(() => {
        this.timer = null;
        this.pump();
      }, Math.max(0, sch.next - now));
  }
  private blockedAt: number | null = null;

  private sendFrame(start: number): void {
    const t = this.templates[this.nextTemplate]!;
    this.nextTemplate = (this.nextTemplate + 1) % this.templates.length;
    const firstQ = this.nextQ;
    this.nextQ += t.ops;
    const t0 = performance.now();
    const frame = fillFrame(t, firstQ);
    const t1 = performance.now();
    this.ws.send(frame);
    const t2 = performance.now();
    this.tl.cost(t.ops, (t1 - t0) * 1e6, (t2 - t1) * 1e6);
    const slot = (this.head + this.count) % this.p.window;
    this.lastQ[slot] = this.nextQ - 1;
    this.opsIn[slot] = t.ops;
    this.sentAt[slot] = start;
    this.count++;
  }

  private message(data: Buffer): void {
    let msg: any;
    try {
      msg = this.unpackr.unpack(data);
    } catch (err) {
      fatal(this.p.label, new Error(`undecodable frame from the target: ${(err as Error).message}`));
    }
    if (this.onAck) return this.onAck(msg);
    if (msg.t !== 'ack') return; // remap, session: not part of this load
    const ack = msg as AckFrame;
    const now = performance.now();
    // Refused ops are reported once each; they are covered by `acked` but not durable.
    const refused: number[] = [];
    if (ack.errors) {
      for (const [seq, code, message] of ack.errors) {
        this.tl.refuse(1, `${code}: ${message}`);
        refused.push(seq);
      }
    }
    while (this.count > 0 && this.lastQ[this.head]! <= ack.acked) {
      const sent = this.opsIn[this.head]!;
      const last = this.lastQ[this.head]!;
      let ops = sent;
      for (const seq of refused) if (seq > last - sent && seq <= last) ops--;
      this.tl.acked(ops, (now - this.sentAt[this.head]!) * 1000);
      this.head = (this.head + 1) % this.p.window;
      this.count--;
    }
    if (this.stopped) {
      if (this.count === 0) this.onDrained?.();
    } else this.pump();
  }

  /** Stops sending; resolves once every sent frame is acked (or after `timeoutMs`: false). */
  drain(timeoutMs: number): Promise<boolean> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.count === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.onDrained = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
  }

  close(): void {
    this.stopped = true;
    this.ws.close(1000);
  }
}

async function main(): Promise<void> {
  exitWithParent();
  const p = JSON.parse(process.argv[2]!) as WsLoadParams;
  const tl = new Timeline(p);
  const run = `${process.pid}-${randomUUID().slice(0, 8)}`;
  const producers = Array.from({ length: p.producers }, (_, i) => new Producer(p, tl, `bench-${run}-${i}`));
  try {
    // Bounded: a target that never welcomes or never acks the register must not hang the bench.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('no welcome / register ack within 15 s')), 15_000);
    });
    await Promise.race([Promise.all(producers.map((pr) => pr.open())), timeout]);
    clearTimeout(timer);
  } catch (err) {
    fatal(p.label, err);
  }
  const frameRate = p.rate === null ? null : p.rate / p.producers / p.batch;
  const measured = tl.run();
  for (const pr of producers) pr.start(frameRate);
  await measured;
  const drained = await Promise.all(producers.map((pr) => pr.drain(15_000)));
  emit(tl.result(producers.map((pr) => pr.sessionId), drained.includes(false)) as unknown as Record<string, unknown>);
  for (const pr of producers) pr.close();
  setTimeout(() => process.exit(0), 200).unref();
}

void main().catch((err: unknown) => fatal('load-ws', err));
