import { EventEmitter } from 'node:events';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { packForTransfer, unpack } from '../protocol/codec.js';
import type { ControlMessage, HostTask, RoundReply, RoundRequest, WorkerSettings } from './round-messages.js';

export class WorkerLostError extends Error {
  constructor(slot: number, cause: unknown) {
    super(`actor worker ${slot} died: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'WorkerLostError';
  }
}

interface Slot {
  port: MessagePort;
  /** Rounds sent and not yet answered, in order: a worker answers its rounds in order. */
  waiting: Array<{ r: number; resolve: (reply: RoundReply) => void; reject: (err: Error) => void }>;
  alive: boolean;
  generation: number;
}

/**
 * The session-actor pool: piscina with one long-lived host task per worker (actor-host.ts). Slot
 * i is always served by one worker; when that worker dies, piscina replaces the thread, the pool
 * starts a new host task in the slot, fails the rounds that were waiting on the dead one and
 * emits `worker-lost`, so the round coordinator can reload the sessions from their snapshots.
 */
export class ActorPool extends EventEmitter {
  private readonly piscina: Piscina;
  private readonly slots: Slot[] = [];
  private closing = false;
  restarts = 0;

  constructor(
    readonly size: number,
    private readonly settings: WorkerSettings,
    execArgv?: string[],
  ) {
    super();
    // Tests run the .ts sources (tap's loader also loads the worker); the package runs dist/*.js.
    const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
    this.piscina = new Piscina({
      filename: new URL(`./actor-host${ext}`, import.meta.url).href,
      minThreads: size,
      maxThreads: size,
      concurrentTasksPerWorker: 1,
      idleTimeout: Number.MAX_SAFE_INTEGER,
      // Hosts run forever by design; a queued task would mean a slot has no worker.
      maxQueue: size,
      ...(execArgv ? { execArgv } : {}),
    });
    for (let i = 0; i < size; i++) this.slots.push(this.startHost(i, 0));
  }

  get alive(): number {
    return this.slots.filter((s) => s.alive).length;
  }

  slotOf(sn: number): number {
    return sn % this.size;
  }

  /** Sends a round to one worker; resolves with its reply, rejects with WorkerLostError if it dies. */
  run(slot: number, req: RoundRequest): Promise<RoundReply> {
    const s = this.slots[slot]!;
    return new Promise<RoundReply>((resolve, reject) => {
      if (!s.alive) return reject(new WorkerLostError(slot, 'not running'));
      s.waiting.push({ r: req.r, resolve, reject });
      const buf = packForTransfer(req);
      s.port.postMessage(buf, [buf]);
    });
  }

  control(slot: number, msg: ControlMessage): void {
    const s = this.slots[slot]!;
    if (s.alive) s.port.postMessage(msg);
  }

  broadcast(msg: ControlMessage): void {
    for (let i = 0; i < this.size; i++) this.control(i, msg);
  }

  async close(): Promise<void> {
    this.closing = true;
    this.broadcast({ t: 'stop' });
    await this.piscina.destroy().catch(() => undefined);
  }

  private startHost(index: number, generation: number): Slot {
    const { port1, port2 } = new MessageChannel();
    const slot: Slot = { port: port1, waiting: [], alive: true, generation };
    port1.on('message', (buf: ArrayBuffer) => {
      const reply = unpack(new Uint8Array(buf)) as RoundReply;
      const w = slot.waiting.shift();
      if (!w || w.r !== reply.r) return this.fail(index, slot, new Error(`round reply out of order: got ${reply.r}, expected ${w?.r}`));
      w.resolve(reply);
    });
    const task: HostTask = { slot: index, port: port2, settings: this.settings };
    this.piscina.run(task, { transferList: [port2] }).then(
      () => {
        if (!this.closing) this.fail(index, slot, new Error('host task returned'));
      },
      (err: unknown) => {
        if (!this.closing) this.fail(index, slot, err);
      },
    );
    return slot;
  }

  private fail(index: number, slot: Slot, cause: unknown): void {
    if (!slot.alive || this.slots[index] !== slot) return;
    slot.alive = false;
    slot.port.close();
    const err = new WorkerLostError(index, cause);
    for (const w of slot.waiting.splice(0)) w.reject(err);
    this.restarts++;
    this.slots[index] = this.startHost(index, slot.generation + 1);
    this.emit('worker-lost', index, err);
  }
}
