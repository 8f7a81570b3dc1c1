import { DataCatError } from './errors.js';
import { Queue } from './queue.js';
import type { OpBody, OpErrorTuple, Registered, WireOp } from './wire.js';

/** Called once when an op is settled: `error` is null on success; `sessionId` is set for a register. */
export type Settle = (error: DataCatError | null, sessionId?: string) => void;

/**
 * An op on its way: `n` counts enqueues (flush targets), `seq` is its sequence number once
 * framed (0 before), `sessionId` the session it belongs to (none for a register).
 */
export class PendingOp {
  /** The sequence number, given when the op is first put into a frame; 0 before. */
  seq = 0;
  /** Whether it went out in a `batch` frame (a resend goes out in the same kind of frame). */
  batched = false;

  constructor(
    readonly n: number,
    readonly sessionId: string | undefined,
    readonly body: OpBody,
    readonly settle: Settle | undefined,
  ) {}

  /** The op as an `ops` frame carries it, and as errors report it: `{ q, k, session_id?, ...fields }`. */
  wire(): WireOp {
    const w: WireOp = { q: this.seq, k: this.body.k };
    if (this.sessionId !== undefined) w['session_id'] = this.sessionId;
    return Object.assign(w, this.body);
  }
}

/**
 * Ops for one frame, in sequence order: a `batch` (ops of one session with contiguous numbers),
 * or an `ops` frame (registers, and resends of ops that first went out in one).
 */
export type OpFrame = { kind: 'batch'; sessionId: string; ops: PendingOp[] } | { kind: 'ops'; ops: PendingOp[] };

/**
 * Every op the client has accepted and the daemon has not acked yet, in two FIFO queues:
 *
 * - `queued`: not sent on the current connection. New ops (no sequence number yet) and, after a
 *   reconnect, the unacked ops to resend (which keep their number), in front. Resending through
 *   the same queue as new ops means resends obey the same frame and window limits.
 * - `unacked`: sent on the current connection, in sequence order; the in-flight window.
 *   Cumulative acks pop it from the front.
 *
 * Sequence numbers are given when ops are taken for frames, not when they are enqueued: nothing
 * is numbered before the first welcome, which tells the high-water mark new numbers must exceed
 * (docs/protocol.md, "Resending", step 3). Ops taken together are grouped per session, and each
 * group is numbered contiguously so that it can travel as one `batch` frame: numbers follow the
 * order frames go out in (always increasing on the wire), which within a session is the order the
 * ops were logged, but across sessions may differ from it.
 */
export class OpBuffer {
  private readonly queued = new Queue<PendingOp>();
  private readonly unacked = new Queue<PendingOp>();
  private nextN = 1;
  private nextSeq = 1;
  private ackedSeq = 0;
  /**
   * Every op with `n` below this is settled. Ops settle in sequence order, which per-session
   * grouping makes differ from enqueue order, so ops settled above the floor are remembered until
   * the floor reaches them (a few at most: a frame's worth, not the whole buffer).
   */
  private settledFloor = 1;
  private readonly settledAbove = new Set<number>();
  /** New (unnumbered) queued ops per session. */
  private readonly newPerSession = new Map<string | undefined, number>();
  /** Ops settled as persisted. */
  persistedCount = 0;
  /** Ops settled as refused (by the daemon, or locally). */
  refusedCount = 0;

  /** `refused`: receives the refusal of an op that has no settle callback (the fire-and-forget ops). */
  constructor(private readonly refused: (error: DataCatError) => void) {}

  /** Ops not yet sent on the current connection. */
  get queuedCount(): number {
    return this.queued.length;
  }

  /** Ops sent on the current connection and not acked: the in-flight window. */
  get unackedCount(): number {
    return this.unacked.length;
  }

  /** Everything accepted and not settled. */
  get outstanding(): number {
    return this.queued.length + this.unacked.length;
  }

  /** The enqueue number of the last op accepted (0 before the first). */
  get lastEnqueued(): number {
    return this.nextN - 1;
  }

  /** The enqueue number of the oldest op not settled; past `lastEnqueued` when everything is settled. */
  get oldestOutstanding(): number {
    return this.settledFloor;
  }

  /** The highest acked sequence number this client has been told. */
  get acked(): number {
    return this.ackedSeq;
  }

  /** The number the next new op will get. */
  get seq(): number {
    return this.nextSeq;
  }

  /**
   * Queues an op of `sessionId` (undefined for a register). Returns how many new ops of that
   * session are queued now (what its next batch would hold).
   */
  enqueue(body: OpBody, sessionId?: string, settle?: Settle): number {
    this.queued.push(new PendingOp(this.nextN++, sessionId, body, settle));
    const count = (this.newPerSession.get(sessionId) ?? 0) + 1;
    this.newPerSession.set(sessionId, count);
    return count;
  }

  /**
   * Takes up to `max` ops for frames of at most `perFrame` ops each, in the order the frames
   * must go out:
   *
   * - resends first, with their numbers: consecutive ops of one session with contiguous numbers
   *   that went out in a batch go in a batch again; the others in `ops` frames, as before;
   * - then new ops, grouped per session (each session's ops in the order logged), each group
   *   numbered contiguously and sent as batches; ops of no session (registers) in `ops` frames.
   */
  take(max: number, perFrame: number): OpFrame[] {
    const ops = this.queued.take(max);
    const frames: OpFrame[] = [];
    let i = 0;
    let last: OpFrame | undefined;
    for (; i < ops.length && ops[i]!.seq !== 0; i++) {
      const op = ops[i]!;
      if (
        last !== undefined &&
        last.ops.length < perFrame &&
        (op.batched ? last.kind === 'batch' && last.sessionId === op.sessionId && last.ops.at(-1)!.seq + 1 === op.seq : last.kind === 'ops')
      ) {
        last.ops.push(op);
      } else {
        last = op.batched ? { kind: 'batch', sessionId: op.sessionId!, ops: [op] } : { kind: 'ops', ops: [op] };
        frames.push(last);
      }
    }
    if (i === ops.length) return frames;

    const groups = new Map<string | undefined, PendingOp[]>();
    let key: string | undefined | null = null; // the group of the previous op (a cache: runs of one session are common)
    let group: PendingOp[] = [];
    for (; i < ops.length; i++) {
      const op = ops[i]!;
      if (op.sessionId !== key) {
        key = op.sessionId;
        let g = groups.get(key);
        if (g === undefined) groups.set(key, (g = []));
        group = g;
      }
      group.push(op);
    }
    for (const [sessionId, all] of groups) {
      const left = this.newPerSession.get(sessionId)! - all.length;
      if (left > 0) this.newPerSession.set(sessionId, left);
      else this.newPerSession.delete(sessionId);
      const batched = sessionId !== undefined;
      for (let from = 0; from < all.length; from += perFrame) {
        const chunk = all.length <= perFrame ? all : all.slice(from, from + perFrame);
        for (const op of chunk) {
          op.seq = this.nextSeq++;
          op.batched = batched;
        }
        frames.push(sessionId !== undefined ? { kind: 'batch', sessionId, ops: chunk } : { kind: 'ops', ops: chunk });
      }
    }
    return frames;
  }

  /** The ops went out in a frame: they are in flight until acked. */
  markSent(ops: readonly PendingOp[]): void {
    for (const op of ops) this.unacked.push(op);
  }

  /** An op taken for a frame that can never be sent (larger than a frame may be). */
  refuseUnsent(op: PendingOp, error: DataCatError): void {
    this.fail(op, error);
  }

  /** A cumulative ack: settles every op with `seq ≤ acked`. Returns how many were settled. */
  ack(acked: number, errors?: readonly OpErrorTuple[], registered?: Registered): number {
    if (acked > this.ackedSeq) this.ackedSeq = acked;
    let errorsBySeq: Map<number, OpErrorTuple> | undefined;
    if (errors && errors.length > 0) {
      errorsBySeq = new Map();
      for (const e of errors) {
        if (typeof e[0] === 'number') errorsBySeq.set(e[0], e);
        else this.refused(new DataCatError(String(e[1]), String(e[2])));
      }
    }
    const ids = registered && registered.length > 0 ? new Map(registered) : undefined;
    let settled = 0;
    const settleAcked = (op: PendingOp): void => {
      settled++;
      const e = errorsBySeq?.get(op.seq);
      if (e) {
        errorsBySeq!.delete(op.seq);
        return this.fail(op, new DataCatError(String(e[1]), String(e[2]), { seq: op.seq, op: op.wire() }));
      }
      if (op.body.k !== 'register') return this.succeed(op);
      const id = ids?.get(op.seq);
      if (id !== undefined) this.succeed(op, id);
      else this.fail(op, new DataCatError('protocol_error', `the ack covering register op ${op.seq} gave no session id`, { seq: op.seq, op: op.wire() }));
    };
    let op: PendingOp | undefined;
    while ((op = this.unacked.peek()) && op.seq <= acked) settleAcked(this.unacked.shift()!);
    // Resent ops waiting in `queued` may be covered too (a daemon is free to ack past what it
    // received on this connection if another connection persisted them): never resend those.
    while ((op = this.queued.peek()) && op.seq !== 0 && op.seq <= acked) settleAcked(this.queued.shift()!);
    // Errors for ops this buffer no longer holds: still reported, once.
    if (errorsBySeq) for (const [seq, e] of errorsBySeq) this.refused(new DataCatError(String(e[1]), String(e[2]), { seq }));
    return settled;
  }

  /**
   * A welcome on a new connection: ops with `seq ≤ acked` are persisted (or were refused, and the
   * refusal was lost with the old connection): they are settled, a register with the id the
   * welcome's `registered` gives. Every other sent op goes back to the front of `queued`, in
   * order, keeping its number. New numbers start after `acked`. Returns how many ops will be resent.
   */
  welcome(acked: number, registered: Registered): number {
    if (acked > this.ackedSeq) this.ackedSeq = acked;
    const ids = new Map(registered);
    const settleDurable = (op: PendingOp): void => {
      if (op.body.k !== 'register') return this.succeed(op);
      const id = ids.get(op.seq);
      if (id !== undefined) this.succeed(op, id);
      else
        this.fail(
          op,
          new DataCatError('outcome_unknown', `register op ${op.seq} was answered on a lost connection and the welcome does not name its session`, {
            seq: op.seq,
            op: op.wire(),
          }),
        );
    };
    const resend: PendingOp[] = [];
    for (const op of this.unacked.drain()) {
      if (op.seq <= acked) settleDurable(op);
      else resend.push(op);
    }
    let op: PendingOp | undefined;
    while ((op = this.queued.peek()) && op.seq !== 0 && op.seq <= acked) settleDurable(this.queued.shift()!);
    this.queued.prepend(resend);
    if (this.nextSeq <= acked) this.nextSeq = acked + 1;
    let pending = 0;
    for (const o of this.queued) {
      if (o.seq === 0) break;
      pending++;
    }
    return pending;
  }

  /**
   * Gives up on everything outstanding (the client is closed or was replaced): ops with a settle
   * callback are failed with `error`; the others are dropped silently, and counted, so that one
   * close does not raise tens of thousands of events. Returns how many ops were given up.
   */
  abandon(error: DataCatError): number {
    const all = this.unacked.drain().concat(this.queued.drain());
    this.newPerSession.clear();
    this.settledFloor = this.nextN;
    this.settledAbove.clear();
    for (const op of all) op.settle?.(error);
    return all.length;
  }

  private succeed(op: PendingOp, sessionId?: string): void {
    this.persistedCount++;
    this.settled(op);
    op.settle?.(null, sessionId);
  }

  private fail(op: PendingOp, error: DataCatError): void {
    this.refusedCount++;
    this.settled(op);
    if (op.settle) op.settle(error);
    else this.refused(error);
  }

  private settled(op: PendingOp): void {
    if (op.n !== this.settledFloor) {
      this.settledAbove.add(op.n);
      return;
    }
    this.settledFloor++;
    while (this.settledAbove.delete(this.settledFloor)) this.settledFloor++;
  }
}
