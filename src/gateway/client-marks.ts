import type { Db } from '../outbox/store.js';
import { clientMarkKey } from '../outbox/keys.js';
import { pack, unpack } from '../protocol/codec.js';
import { REMEMBERED_REGISTRATIONS } from '../protocol/frames.js';
import type { SubmissionOrder } from '../actors/round-coordinator.js';

interface StoredMark {
  hwm: number;
  regs: Array<[number, string]>;
}

/**
 * One WebSocket producer (client id): the high-water mark that makes resends exactly-once.
 *
 * `submitted` runs ahead as frames are handed to rounds; `durable` follows as rounds commit.
 * Every round that carries ops of this client also carries `advance()`: the mark as submitted, in
 * the same batch as those ops, so after any crash the stored mark covers exactly the ops stored.
 * That holds only if the client's submissions land in order or not at all, which is what the
 * mark asks of the round coordinator as a SubmissionOrder: once one is refused, the later ones
 * are refused too, until the next connection starts over (`restart`).
 */
export class ClientMark implements SubmissionOrder {
  submitted: number;
  durable: number;
  broken = false;
  private regs: Array<[number, string]>;
  /** Frames held and submissions not yet settled; the next connection waits for them before its welcome. */
  private pending = 0;
  private idleWaiters: Array<() => void> = [];
  /** The connection currently speaking for this client id. */
  owner: object | null = null;

  constructor(
    readonly clientId: string,
    stored: StoredMark,
  ) {
    this.submitted = stored.hwm;
    this.durable = stored.hwm;
    this.regs = stored.regs;
  }

  registrations(): Array<[number, string]> {
    return this.regs.slice();
  }

  /** Advances the submitted mark (and remembers a registration); returns the write that records it. */
  advance(seq: number, registered?: [number, string]): [string, Uint8Array] {
    if (seq > this.submitted) this.submitted = seq;
    if (registered) {
      this.regs.push(registered);
      if (this.regs.length > REMEMBERED_REGISTRATIONS) this.regs.splice(0, this.regs.length - REMEMBERED_REGISTRATIONS);
    }
    return [clientMarkKey(this.clientId), pack({ hwm: this.submitted, regs: this.regs } satisfies StoredMark)];
  }

  /**
   * Holds the mark from the moment a frame is read until its ops are submitted (each submission
   * is then tracked on its own), so `idle()` also waits for frames still queued behind a
   * registration, or in the middle of being handled, on a socket that may have closed meanwhile.
   * Returns the release, which is safe to call more than once.
   */
  hold(): () => void {
    this.pending++;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.settle();
    };
  }

  /** Tracks a submission; the mark only moves forward when it is durable. */
  track<T>(seq: number, durable: Promise<T>): Promise<T> {
    this.pending++;
    return durable.then(
      (value) => {
        if (seq > this.durable) this.durable = seq;
        this.settle();
        return value;
      },
      (err: unknown) => {
        // Nothing past `durable` may be trusted: a replacing connection restarts from there.
        this.submitted = this.durable;
        this.settle();
        throw err;
      },
    );
  }

  /**
   * A new connection speaks for this client from here: everything submitted before has settled
   * (`idle`), so the client resends from `durable` and its submissions may land again.
   */
  restart(): void {
    this.submitted = this.durable;
    this.broken = false;
    // `advance` remembers a registration when it is submitted: one above `durable` now was
    // refused, its session never existed, and the welcome (and every mark written from here)
    // must not name it. Those at or below it landed, as every op below the mark did.
    this.regs = this.regs.filter(([q]) => q <= this.durable);
  }

  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private settle(): void {
    if (--this.pending === 0) for (const w of this.idleWaiters.splice(0)) w();
  }
}

/** The client ids seen by this daemon; marks are loaded from LevelDB on first use. */
export class ClientMarks {
  private readonly marks = new Map<string, ClientMark>();
  /**
   * Marks being read from LevelDB: connections that arrive meanwhile wait for the same read. Each
   * used to read on its own, and a read answered after another connection had loaded the mark,
   * written to it and let it go (forgotten once idle) held what the store had before: that mark
   * welcomed its connection with a stale `acked`, and the resends it asked for were stored twice.
   */
  private readonly loading = new Map<string, Promise<ClientMark>>();

  constructor(private readonly db: Db) {}

  async get(clientId: string): Promise<ClientMark> {
    const known = this.marks.get(clientId);
    if (known) return known;
    let load = this.loading.get(clientId);
    if (!load) {
      load = this.load(clientId).finally(() => this.loading.delete(clientId));
      this.loading.set(clientId, load);
    }
    return load;
  }

  private async load(clientId: string): Promise<ClientMark> {
    const bytes = await this.db.get(clientMarkKey(clientId));
    const stored = bytes ? (unpack(bytes) as StoredMark) : { hwm: 0, regs: [] };
    const mark = new ClientMark(clientId, stored);
    this.marks.set(clientId, mark);
    return mark;
  }

  /** Forgets a mark nobody speaks for once its submissions settle (it is on disk; reloaded on demand). */
  release(mark: ClientMark, owner: object): void {
    if (mark.owner !== owner) return;
    mark.owner = null;
    void mark.idle().then(() => {
      if (mark.owner === null && this.marks.get(mark.clientId) === mark) this.marks.delete(mark.clientId);
    });
  }

  /**
   * Resolves once every client id's held frames and submissions have settled, those of sockets
   * already gone included (a dropped or replaced socket's register still waiting for the upstream).
   * A mark with any is never forgotten (see release), so waiting for the known ones waits for all.
   */
  async idle(): Promise<void> {
    await Promise.all([...this.marks.values()].map((mark) => mark.idle()));
  }

  get size(): number {
    return this.marks.size;
  }
}
