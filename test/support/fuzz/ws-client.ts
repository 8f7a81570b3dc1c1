/**
 * A WebSocket client for the fuzz streams: sends raw bytes, and folds what the daemon answers
 * into per-q outcomes (acks are cumulative and coalesced, so outcomes are keyed by q, never by
 * frame). docs/protocol.md: an ack's `errors` are `[seq | null, code, message]`; a refused op
 * without a usable q is reported with seq null and "op <i> of the frame" in its message.
 */
import WebSocket from 'ws';
import { Unpackr } from 'msgpackr';

const unpackr = new Unpackr({ useRecords: true, mapsAsObjects: true });

export interface Closed {
  code: number;
  reason: string;
}

export class FuzzSocket {
  acked = 0;
  /** Codes of the refusals reported per q (more than one would be a bug). */
  readonly errorsByQ = new Map<number, string[]>();
  /** Refusals without a q: [index in its frame, code]. */
  readonly noQErrors: Array<[number, string]> = [];
  readonly registered = new Map<number, string>();
  /** Other frames (session, error, remap, flow, welcome). */
  readonly frames: any[] = [];
  welcome: any = null;
  closed: Closed | null = null;
  private waiters = new Set<() => void>();

  private constructor(readonly ws: WebSocket) {
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const f = isBinary ? (unpackr.unpack(data) as any) : { t: 'text?', text: String(data) };
      if (f?.t === 'ack') this.onAck(f);
      else if (f?.t === 'welcome') this.welcome = f;
      else this.frames.push(f);
      this.wake();
    });
    ws.on('close', (code: number, reason: Buffer) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
    ws.on('error', () => undefined); // 'close' follows
  }

  static connect(url: string, clientId: string, onUpgrade?: (ws: WebSocket) => void): Promise<FuzzSocket> {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/ws?client_id=${encodeURIComponent(clientId)}`, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 });
    const s = new FuzzSocket(ws);
    return new Promise((resolve, reject) => {
      if (onUpgrade) ws.once('upgrade', () => (onUpgrade(ws), resolve(s)));
      else ws.once('open', () => resolve(s));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      ws.once('error', reject);
    });
  }

  private onAck(f: { acked: number; errors?: Array<[number | null, string, string]>; registered?: Array<[number, string]> }): void {
    if (f.acked > this.acked) this.acked = f.acked;
    for (const [q, code, message] of f.errors ?? []) {
      if (q === null) {
        const m = /op (\d+) of the frame/.exec(message);
        this.noQErrors.push([m ? Number(m[1]) : -1, code]);
      } else {
        const list = this.errorsByQ.get(q);
        if (list) list.push(code);
        else this.errorsByQ.set(q, [code]);
      }
    }
    for (const [q, id] of f.registered ?? []) this.registered.set(q, id);
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Resolves once `pred` holds; rejects on close or timeout. */
  until(pred: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (err?: Error): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        if (err) reject(err);
        else resolve();
      };
      const check = (): void => {
        if (pred()) done();
        else if (this.closed) done(new Error(`closed (${this.closed.code} ${this.closed.reason}) while waiting for ${what}`));
      };
      const timer = setTimeout(() => done(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  waitWelcome(timeoutMs = 10_000): Promise<void> {
    return this.until(() => this.welcome !== null, 'the welcome', timeoutMs);
  }

  waitAcked(q: number, timeoutMs = 30_000): Promise<void> {
    return this.until(() => this.acked >= q, `an ack covering q ${q} (acked ${this.acked})`, timeoutMs);
  }

  waitClosed(timeoutMs = 10_000): Promise<Closed> {
    return this.until(() => this.closed !== null, 'the close', timeoutMs).then(
      () => this.closed!,
      (err: Error) => (this.closed ? this.closed : Promise.reject(err)),
    );
  }

  send(bytes: Buffer | string, binary = true): void {
    this.ws.send(bytes, { binary });
  }

  close(): void {
    if (!this.closed) this.ws.close();
  }
}
