/** A protocol-level WebSocket client for tests: sends raw frames, collects what the daemon sends. */
import WebSocket from 'ws';
import { Packr, Unpackr } from 'msgpackr';

const packr = new Packr({ useRecords: true });
const unpackr = new Unpackr({ useRecords: true, mapsAsObjects: true });

export class RawWs {
  readonly frames: any[] = [];
  closed: { code: number; reason: string } | null = null;
  private waiters: Array<() => void> = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      this.frames.push(unpackr.unpack(data));
      this.wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
    ws.on('error', () => undefined);
  }

  static open(url: string, clientId?: string, headers: Record<string, string> = {}, query: Record<string, string> = {}): Promise<RawWs> {
    const params = new URLSearchParams(clientId ? { client_id: clientId, ...query } : query).toString();
    const u = `${url.replace(/^http/, 'ws')}/ws${params ? `?${params}` : ''}`;
    const ws = new WebSocket(u, { headers });
    const raw = new RawWs(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(raw));
      ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode })));
      ws.once('error', reject);
    });
  }

  send(frame: unknown): void {
    this.ws.send(packr.pack(frame));
  }

  sendRaw(bytes: Buffer | string, binary = true): void {
    this.ws.send(bytes, { binary });
  }

  /** Waits for the first frame (from `from` on) matching `pred`. */
  async next(pred: (f: any) => boolean, timeoutMs = 5000, from = 0): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.frames.slice(from).find(pred);
      if (found) return found;
      if (this.closed) throw new Error(`closed (${this.closed.code} ${this.closed.reason}) while waiting`);
      if (Date.now() > deadline) throw new Error(`timed out; frames: ${JSON.stringify(this.frames).slice(0, 500)}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  welcome(timeoutMs = 5000): Promise<any> {
    return this.next((f) => f.t === 'welcome', timeoutMs);
  }

  /** Waits until an ack covers `seq`; returns every ack received so far. */
  async acked(seq: number, timeoutMs = 5000): Promise<any[]> {
    await this.next((f) => f.t === 'ack' && f.acked >= seq, timeoutMs);
    return this.frames.filter((f) => f.t === 'ack');
  }

  async waitClosed(timeoutMs = 5000): Promise<{ code: number; reason: string }> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('not closed');
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.closed;
  }

  close(): void {
    this.ws.close();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

/** Registers over a raw socket: sends a register op with `q`, returns the session id. */
export async function registerRaw(c: RawWs, q: number, product = 'ws-app'): Promise<string> {
  c.send({ t: 'ops', ops: [{ q, k: 'register', product, version: '1' }] });
  const ack = await c.next((f) => f.t === 'ack' && f.registered?.some((r: [number, string]) => r[0] === q));
  return ack.registered.find((r: [number, string]) => r[0] === q)[1];
}
