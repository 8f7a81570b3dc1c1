import type { WebSocket, RawData } from 'ws';
import { packPlain, unpack } from '../protocol/codec.js';
import { ProtocolError, type ErrorCode } from '../protocol/errors.js';
import { CLOSE, type AckFrame, type DaemonFrame, type OpError } from '../protocol/frames.js';
import type { Limits } from '../protocol/limits.js';
import type { Op, RegisterBody, SessionOp } from '../protocol/ops.js';
import { isPlainObject } from '../protocol/values.js';
import { validateOp } from '../protocol/validate.js';
import type { Ingest } from './ingest.js';
import type { ClientMark } from './client-marks.js';
import type { SessionReads } from './session-reads.js';

/**
 * Why the daemon stops reading all sockets: too many bytes waiting to be written to LevelDB, or
 * the outbox is full under overflow `block` (clients are told with a `flow` frame).
 */
export type Overload = 'pending_writes' | 'queue_full' | null;

/**
 * A client that sends `get_session` requests and does not read the answers would otherwise make
 * the daemon hold every answer (a session view can be megabytes; a request is ~40 bytes): reads
 * run at most this many at a time, and no read starts while more than SEND_BACKLOG_BYTES of
 * this connection's frames wait to be written to its socket. Requests beyond that wait in order,
 * and the socket is not read while any wait (as for too many ops in flight).
 */
const MAX_READS_RUNNING = 8;
const SEND_BACKLOG_BYTES = 8 * 1024 * 1024;

export interface ConnectionDeps {
  ingest: Ingest;
  reads: SessionReads;
  limits: Limits;
  /** Ops received and not yet answered past which this socket stops being read. */
  maxInflightOps: number;
  /** Why every socket must stop being read, if it must: see Overload. */
  overloaded: () => Overload;
  /** Told when this socket stops being read because of an overload (see WsGateway.pausedOnOverload). */
  pausedOnOverload: () => void;
  onClosed: (conn: WsConnection) => void;
}


/**
 * One WebSocket: decodes frames, validates each op with the shared validation layer, skips
 * resends the high-water mark covers, and hands the rest to `Ingest` in order, each submission
 * with the client's mark so both land in one write. Acks go out, coalesced, once durable.
 *
 * Frames are handled strictly in arrival order. Submitting never waits for a commit (rounds keep
 * submission order), except that a `register` first waits for the upstream's answer; later frames
 * queue behind it on `chain`, and the socket stops being read while too much is in flight.
 */
export class WsConnection {
  private chain: Promise<void> = Promise.resolve();
  /** Highest q received on this connection: resends at or below it are skipped. */
  private lastSeq: number;
  private inflightOps = 0;
  private paused = false;
  private toldQueueFull = false;
  private closed = false;
  /** Shutting down: frames that still arrive are not taken (they are unacked; the client resends). */
  private draining = false;
  private ackScheduled = false;
  private pendingErrors: OpError[] = [];
  private pendingRegistered: Array<[number, string]> = [];
  private ackedSent: number;
  /** get_session requests not yet started (see MAX_READS_RUNNING), and those running. */
  private readsWaiting: Array<[id: unknown, sessionId: unknown]> = [];
  private readsRunning = 0;
  /** Bytes handed to ws and not yet written to the socket (the client is slow, or not reading). */
  private sendBacklog = 0;

  constructor(
    readonly ws: WebSocket,
    readonly mark: ClientMark,
    private readonly deps: ConnectionDeps,
  ) {
    this.lastSeq = mark.durable;
    this.ackedSent = mark.durable;
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    ws.on('close', () => this.onClose());
    ws.on('error', () => undefined); // 'close' follows
  }

  send(frame: DaemonFrame): void {
    if (this.closed || this.ws.readyState !== this.ws.OPEN) return;
    const bytes = packPlain(frame);
    this.sendBacklog += bytes.length;
    // Called once written out (or failed, the socket gone): the backlog shrinks, reads may go on.
    this.ws.send(bytes, () => {
      this.sendBacklog -= bytes.length;
      if (this.sendBacklog <= SEND_BACKLOG_BYTES) this.startReads();
    });
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    // The closing handshake needs the peer's close frame read: a paused socket would wait for
    // ws's 30 s close timeout instead.
    if (this.paused) this.ws.resume();
    this.ws.close(code, closeReason(reason));
  }

  /** Stops taking frames; what was submitted is still answered. */
  drain(): void {
    this.draining = true;
  }

  /** Pauses or resumes reading; called as work is submitted and answered, and when the backlog drains. */
  updateFlow(): void {
    const overload = this.deps.overloaded();
    const shouldPause = this.inflightOps > this.deps.maxInflightOps || this.readsWaiting.length > 0 || this.sendBacklog > SEND_BACKLOG_BYTES || overload !== null;
    // A full outbox is worth telling the client: it explains why its acks stop, for how long.
    const queueFull = overload === 'queue_full';
    if (queueFull !== this.toldQueueFull && !this.closed) {
      this.toldQueueFull = queueFull;
      this.send({ t: 'flow', paused: queueFull, reason: 'queue_full' });
    }
    if (shouldPause === this.paused || this.closed) return;
    this.paused = shouldPause;
    if (shouldPause) {
      this.ws.pause();
      if (overload !== null) this.deps.pausedOnOverload();
    } else this.ws.resume();
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Resolves when everything this connection submitted has been answered. */
  async settled(): Promise<void> {
    await this.chain;
    await this.mark.idle();
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    if (this.closed || this.draining) return;
    if (!isBinary) return this.close(CLOSE.textFrame, 'text frames are not accepted: send binary MessagePack frames');
    let frame: unknown;
    try {
      frame = unpack(toBytes(data));
    } catch (err) {
      // The decoder recurses: a frame nested thousands of levels deep (max_depth is far below)
      // runs out of stack. Nothing in such a frame can be valid, so it goes like bad MessagePack.
      if (err instanceof RangeError)
        return this.close(CLOSE.notMessagePack, `the frame is nested too deep to decode (ops may nest at most max_depth=${this.deps.limits.max_depth} levels)`);
      return this.close(CLOSE.notMessagePack, `the frame is not valid MessagePack: ${(err as Error).message}`);
    }
    if (!isPlainObject(frame) || typeof frame['t'] !== 'string') return this.close(CLOSE.notAFrame, 'a frame must be a map with a string "t"');
    const rt = Date.now();
    switch (frame['t']) {
      case 'ops': {
        const ops = frame['ops'];
        if (!Array.isArray(ops)) return this.close(CLOSE.notAFrame, '"ops" must be an array');
        // Ops past max_ops_per_frame are refused one by one, but each refusal costs the daemon ~80
        // bytes of ack for as little as 1 byte of frame (a nil has no usable q): a 4 MiB frame of
        // them built 4 million errors, an ack of hundreds of MB, and stalled every other socket for
        // seconds. A frame this far past the limit its welcome told is not answered op by op.
        if (ops.length > 2 * this.deps.limits.max_ops_per_frame)
          return this.close(CLOSE.notAFrame, `an ops frame of ${ops.length} ops is more than twice max_ops_per_frame=${this.deps.limits.max_ops_per_frame}; split it`);
        return this.enqueue(ops.length, () => this.handleOps(ops, rt));
      }
      case 'batch': {
        const { session_id: sessionId, q, n, ops } = frame;
        if (typeof sessionId !== 'string' || !isSeq(q) || !isSeq(n) || !(ops instanceof Uint8Array))
          return this.close(CLOSE.notAFrame, 'a batch needs session_id (string), q and n (positive integers) and ops (bin)');
        // n is a claim the envelope makes; bounding it here bounds every answer a batch can get
        // (a 30-byte frame must not make the daemon build millions of per-op errors).
        if (n > this.deps.limits.max_ops_per_frame)
          return this.close(CLOSE.notAFrame, `a batch of n=${n} ops is past max_ops_per_frame=${this.deps.limits.max_ops_per_frame}; split it`);
        // Its ops are numbered q..q+n-1, and every q must be a safe integer as in an ops frame: past
        // 2^53 - 1 numbers round (q + i collide) and the mark would reach a value no later op can pass.
        if (!isSeq(q + n - 1))
          return this.close(CLOSE.notAFrame, `a batch numbered q=${q} to q+n-1=${q + n - 1} goes past 2^53-1, the largest q`);
        return this.enqueue(n, () => this.handleBatch(sessionId, q, n, ops, rt));
      }
      case 'get_session':
        this.readsWaiting.push([frame['id'], frame['session_id']]);
        return this.startReads();
      default:
        return this.close(CLOSE.notAFrame, `unknown frame type "${String(frame['t']).slice(0, 32)}"`);
    }
  }

  /**
   * Handles a frame after the frames before it (`chain`). Its ops count as in flight (the socket
   * stops being read past maxInflightOps) until they are answered, and the client's mark is held
   * until they are submitted: a connection that takes over this client id, even after this socket
   * has closed, is welcomed only once they are persisted or refused, so the `acked` it is told is
   * final and a resend of them is skipped.
   */
  private enqueue(opCount: number, handle: () => Promise<{ answered: Promise<unknown> }> | { answered: Promise<unknown> }): void {
    this.inflightOps += opCount;
    this.updateFlow();
    const release = this.mark.hold();
    this.chain = this.chain
      .then(handle)
      .then(
        ({ answered }) =>
          void answered.finally(() => {
            this.inflightOps -= opCount;
            this.updateFlow();
          }),
        (err: unknown) => this.fail(err),
      )
      .finally(release);
  }

  /**
   * Validates the frame's ops and submits them in order: each run of session ops as one
   * submission, each register as its own. Resolves once everything is submitted, with `answered`
   * settling when all of it is answered (wrapped: an async function would flatten a promise and
   * make the connection wait for the commit before reading its next frame).
   */
  private async handleOps(raw: unknown[], rt: number): Promise<{ answered: Promise<unknown> }> {
    const { limits } = this.deps;
    const answers: Array<Promise<void>> = [];
    let run: SessionOp[] = [];
    let runSeqs: number[] = [];
    let errors: OpError[] = [];
    const submitRun = (upTo: number): void => {
      if (run.length === 0 && errors.length === 0) return;
      answers.push(this.submitRun(run, runSeqs, errors, upTo, rt));
      run = [];
      runSeqs = [];
      errors = [];
    };
    for (let i = 0; i < raw.length && !this.closed; i++) {
      const item = raw[i];
      const q = isPlainObject(item) ? item['q'] : undefined;
      if (typeof q !== 'number' || !Number.isSafeInteger(q) || q < 1) {
        errors.push([null, 'invalid_field', `op ${i} of the frame has no valid "q" (a positive integer sequence number)`]);
        continue;
      }
      if (q <= this.lastSeq) continue; // a resend of an op this client id already submitted
      if (i >= limits.max_ops_per_frame) {
        this.lastSeq = q;
        errors.push([q, 'too_many_ops', `the frame has ${raw.length} ops; the limit is max_ops_per_frame=${limits.max_ops_per_frame}`]);
        continue;
      }
      let op: Op;
      try {
        op = validateOp(String((item as Record<string, unknown>)['k']), item, limits);
      } catch (err) {
        const e = err instanceof ProtocolError ? err : new ProtocolError('internal', String(err));
        this.lastSeq = q;
        errors.push([q, e.code, e.message]);
        continue;
      }
      if (op.kind === 'register') {
        submitRun(this.lastSeq);
        this.lastSeq = q;
        answers.push((await this.submitRegister(op.body, q, rt)).answered);
        continue;
      }
      this.lastSeq = q;
      run.push(op);
      runSeqs.push(q);
    }
    submitRun(this.lastSeq);
    return { answered: Promise.allSettled(answers) };
  }

  /**
   * A batch: only its envelope is looked at here. Ops at or below what this client id already
   * submitted are skipped (the worker is told how many), the rest go to the session's worker.
   */
  private handleBatch(sessionId: string, q: number, n: number, bytes: Uint8Array, rt: number): { answered: Promise<unknown> } {
    // Closed (refused, replaced) while this frame waited its turn: it stays unacked, to be resent.
    if (this.closed) return { answered: Promise.resolve() };
    const last = q + n - 1;
    if (last <= this.lastSeq) return { answered: Promise.resolve() }; // all resent
    const skip = Math.max(0, this.lastSeq + 1 - q);
    this.lastSeq = last;
    const submitted = this.deps.ingest.submitBatch(sessionId, bytes, skip, n, rt, [this.mark.advance(last)], this.mark);
    const answered = this.mark.track(last, submitted).then(
      (refused) => this.answered(refused.map(([i, code, message]): OpError => [q + i, code, message])),
      (err: unknown) => this.fail(err),
    );
    return { answered };
  }

  /** Session ops (and refused ones) up to `upTo`, with the mark, in one submission. */
  private submitRun(ops: SessionOp[], seqs: number[], errors: OpError[], upTo: number, rt: number): Promise<void> {
    const submitted = this.deps.ingest.submit(ops, rt, [this.mark.advance(upTo)], 'accept', this.mark);
    return this.mark.track(upTo, submitted).then(
      (outcomes) => {
        outcomes.forEach((o, i) => o && errors.push([seqs[i]!, o.code, o.message]));
        this.answered(errors);
      },
      (err: unknown) => this.fail(err),
    );
  }

  /** A registration, with the mark naming its session id, in one submission. */
  private async submitRegister(body: RegisterBody, q: number, rt: number): Promise<{ answered: Promise<void> }> {
    const { sessionId, durable } = await this.deps.ingest.startRegister(body, rt, (id) => [this.mark.advance(q, [q, id])], this.mark);
    const answered = this.mark.track(q, durable).then(
      () => this.answered([], [q, sessionId]),
      (err: unknown) => this.fail(err),
    );
    return { answered };
  }

  private answered(errors: OpError[], registered?: [number, string]): void {
    for (const e of errors) this.pendingErrors.push(e); // not push(...errors): that is bounded by the stack
    if (registered) this.pendingRegistered.push(registered);
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    // Coalesce: everything answered in this loop turn goes in one ack.
    setImmediate(() => {
      this.ackScheduled = false;
      const acked = this.mark.durable;
      if (acked === this.ackedSent && !this.pendingErrors.length && !this.pendingRegistered.length) return;
      const frame: AckFrame = { t: 'ack', acked };
      // Frames' answers settle in any order (one session's round can finish before another's).
      if (this.pendingErrors.length) frame.errors = this.pendingErrors.splice(0).sort(bySeq);
      if (this.pendingRegistered.length) frame.registered = this.pendingRegistered.splice(0);
      this.ackedSent = acked;
      this.send(frame);
    });
  }

  /** Starts waiting reads, in order, while few run and the answers already sent are being taken. */
  private startReads(): void {
    while (this.readsWaiting.length > 0 && this.readsRunning < MAX_READS_RUNNING && this.sendBacklog <= SEND_BACKLOG_BYTES && !this.closed) {
      const [id, sessionId] = this.readsWaiting.shift()!;
      this.readsRunning++;
      void this.handleRead(id, sessionId).finally(() => {
        this.readsRunning--;
        this.startReads();
      });
    }
    this.updateFlow();
  }

  /** For tests: get_session requests waiting to start, running, and bytes waiting to be written. */
  get readBacklog(): { waiting: number; running: number; sendBacklog: number } {
    return { waiting: this.readsWaiting.length, running: this.readsRunning, sendBacklog: this.sendBacklog };
  }

  private async handleRead(id: unknown, sessionId: unknown): Promise<void> {
    const reqId = typeof id === 'number' || typeof id === 'string' ? id : null;
    const fail = (code: ErrorCode, message: string): void => this.send({ t: 'error', id: reqId, code, message });
    if (typeof sessionId !== 'string' || !sessionId) return fail('invalid_field', 'get_session needs a string session_id');
    try {
      const session = await this.deps.reads.get(sessionId);
      if (!session) return fail('unknown_session', `no session has the id "${sessionId.slice(0, 128)}"`);
      this.send({ t: 'session', id: reqId, session });
    } catch (err) {
      fail('internal', (err as Error).message);
    }
  }

  /** The daemon could not persist: close, so the client resends from the durable mark. */
  private fail(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    this.close(CLOSE.tryAgain, `not persisted, reconnect and resend: ${message}`);
  }

  private onClose(): void {
    this.closed = true;
    this.deps.onClosed(this);
  }
}

/** A close reason may be at most 123 bytes of UTF-8 (RFC 6455 §5.5); cut on a character boundary. */
export function closeReason(reason: string): string {
  if (Buffer.byteLength(reason) <= 123) return reason;
  let cut = reason.slice(0, 120);
  while (Buffer.byteLength(cut) > 120) cut = cut.slice(0, -1);
  return `${cut}…`; // 3 bytes: 123 at most
}

function isSeq(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 1;
}

function toBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return data;
}

/** Errors in `q` order; those without a usable `q` (null) first. */
function bySeq(a: [number | null, ...unknown[]], b: [number | null, ...unknown[]]): number {
  return (a[0] ?? -1) - (b[0] ?? -1);
}
