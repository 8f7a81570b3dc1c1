import type { CommitQueue } from '../outbox/commit-queue.js';
import { ProtocolError } from '../protocol/errors.js';
import type { RegisterBody, SessionOp } from '../protocol/ops.js';
import type { Directory } from '../actors/directory.js';
import type { BatchErrors, OpOutcome, RoundCoordinator, RoutedOp, SubmissionOrder } from '../actors/round-coordinator.js';
import type { BatchBody } from '../workers/round-messages.js';
import type { QueueLimit } from '../outbox/queue-limit.js';
import type { RegisterInput } from '../actors/session-actor.js';
import type { CreateAnswer, RegisterCreate } from '../actors/sync-actor.js';
import { leaseKey } from '../outbox/keys.js';
import { pack } from '../protocol/codec.js';

/** Session ops that add nothing to the outbox: always taken, even from a full one. */
const QUEUES_NOTHING = new Set<string>(['heartbeat', 'pause_heartbeat', 'resume_heartbeat']);

/**
 * How /register reaches the upstream: the server's id; or none (down, not in time), with the
 * server's answer when it refused the create outright (a 4xx that is not retried).
 */
export type CreateNow = (body: Record<string, unknown>, timeoutMs: number) => Promise<RegisterCreate>;

export interface IngestSettings {
  register_timeout_ms: number;
  hostname: string;
  machine_id: string;
}

/**
 * What a transport does with ops while the outbox is full under `overflow: block`: HTTP refuses
 * them (503 with Retry-After), WebSocket accepts what it has already read and stops reading
 * (see WsConnection.updateFlow), so nothing it acks is ever refused after the fact.
 */
export type WhenFull = 'refuse' | 'accept';

const DROPPED = 'the outbox is full: discarded by overflow policy drop_newest';

/**
 * The entry for every op, whatever transport brought it: resolves session ids to session
 * numbers, refuses unknown sessions, and hands the rest to the open round. HTTP and WebSocket
 * both call this, so both paths share one write-batch → ack mechanism.
 */
export class Ingest {
  /** Registrations waiting for their create answer, not yet submitted to a round (see submitted). */
  private registering = 0;
  private registeringWaiters: Array<() => void> = [];

  constructor(
    private readonly rounds: RoundCoordinator,
    private readonly directory: Directory,
    private readonly commits: CommitQueue,
    private readonly settings: IngestSettings,
    private readonly createNow: CreateNow,
    private readonly limit: QueueLimit,
    /** drop_oldest: asks the sync actor to discard the oldest queued events and metrics. */
    private readonly makeRoom: () => void,
    /** A create still in flight when /register answered with a local id: its session's queued create adopts it. */
    private readonly adoptCreate: (sn: number, late: Promise<CreateAnswer>) => void,
  ) {}

  /**
   * Applies the overflow policy when the outbox is full; true when arriving events and metrics
   * must be discarded (drop_newest). Lifecycle ops and state are never discarded.
   */
  private overflow(whenFull: WhenFull): boolean {
    if (!this.limit.full) return false;
    switch (this.limit.policy) {
      case 'block':
        if (whenFull === 'refuse')
          throw new ProtocolError('queue_full', `the outbox is full (queue_max_bytes=${this.limit.maxBytes}); retry once the daemon has synced (see Retry-After)`);
        return false;
      case 'drop_newest':
        return true;
      case 'drop_oldest':
        this.makeRoom();
        return false;
    }
  }

  /**
   * Registers a session: the server's id if the upstream creates it within register_timeout_ms,
   * else `local-session-<unix-seconds>-<n>` at once, with `n` persisted in the same batch as the
   * session and never reused. Answers only once the session is durable.
   */
  async register(body: RegisterBody, rt: number): Promise<string> {
    this.overflow('refuse');
    const { sessionId, durable } = await this.startRegister(body, rt);
    await durable;
    return sessionId;
  }

  /**
   * The two halves of a registration: resolves as soon as the session is submitted to the open
   * round (so a WebSocket connection can go on submitting its next ops in order), with `durable`
   * settling when the registration is persisted. `putsFor(sessionId)` gives writes that must land
   * atomically with it (a WebSocket client's high-water mark, which names the new session).
   */
  async startRegister(
    body: RegisterBody,
    rt: number,
    putsFor: (sessionId: string) => Array<[string, Uint8Array]> = () => [],
    order?: SubmissionOrder,
  ): Promise<{ sessionId: string; durable: Promise<void> }> {
    const create = {
      product: body.product,
      version: body.version,
      machine_id: body.machine_id ?? this.settings.machine_id,
      hostname: body.hostname ?? this.settings.hostname,
    };
    let answer: RegisterCreate;
    this.registering++;
    try {
      answer = await this.createNow(create, this.settings.register_timeout_ms);
    } finally {
      // Resolved after the submit below: this turn puts the registration into the open round.
      queueMicrotask(() => {
        if (--this.registering === 0) for (const w of this.registeringWaiters.splice(0)) w();
      });
    }
    const serverId = answer.server_id;
    const sn = this.commits.allocate('sessions');
    const localId = serverId ? null : `local-session-${Math.floor(rt / 1000)}-${this.commits.allocate('local')}`;
    const idPuts = this.directory.add(sn, { local_id: localId, server_id: serverId });
    const reg: RegisterInput = {
      product: body.product,
      version: body.version,
      hostname: create.hostname,
      machine_id: create.machine_id,
      parent_pid: body.parent_pid ?? null,
      local_id: localId,
      server_id: serverId,
      create_refused: answer.server_id === null ? answer.refused : null,
    };
    const sessionId = (serverId ?? localId)!;
    if (answer.late) this.adoptCreate(sn, answer.late);
    // A create still on its way may reach the server: until the session's lane records its answer,
    // a kill leaves it in doubt. So it holds a send lease of one, written with the session.
    const lease: Array<[string, Uint8Array]> = answer.late ? [[leaseKey(sn), pack(1)]] : [];
    const durable = this.rounds.submit([{ sn, kind: 'register', rt, body: reg }], idPuts.concat(lease, putsFor(sessionId)), undefined, order).then(([outcome]) => {
      if (outcome) throw new ProtocolError(outcome.code, outcome.message);
    });
    // A registration that was not persisted never happened: its ids must not resolve.
    durable.catch(() => this.directory.remove(sn));
    return { sessionId, durable };
  }

  /**
   * Resolves once every registration begun so far has been submitted to a round (within
   * register_timeout_ms). Shutdown waits for this before draining the rounds: a /register already
   * read but still waiting for the server's id was otherwise cut off unanswered (and unpersisted)
   * when the daemon stopped.
   */
  submitted(): Promise<void> {
    if (this.registering === 0) return Promise.resolve();
    return new Promise((resolve) => this.registeringWaiters.push(resolve));
  }

  /**
   * Submits a WebSocket batch of one session's ops (decoded and validated in the session's
   * worker). Resolves with the refused ops; an unknown session refuses them all here.
   */
  submitBatch(sessionId: string, bytes: Uint8Array, skip: number, n: number, rt: number, puts: Array<[string, Uint8Array]>, order?: SubmissionOrder): Promise<BatchErrors> {
    // The events and metrics of a batch are only known to the worker that decodes it: it
    // discards them itself under drop_newest (and reports how many).
    const dropPassThrough = this.overflow('accept');
    const sn = this.directory.resolve(sessionId);
    if (sn === undefined) {
      const message = `no session has the id "${sessionId.slice(0, 128)}"`;
      const refused: BatchErrors = [];
      for (let i = skip; i < n; i++) refused.push([i, 'unknown_session', message]);
      // The mark still moves past these ops (they are answered), so it is written all the same.
      return this.rounds.submit([], puts, undefined, order).then(() => refused);
    }
    const body: BatchBody = [bytes, skip, n, sessionId, dropPassThrough];
    return this.rounds.submitBatch({ sn, rt, body }, puts, order);
  }

  /**
   * Submits session ops (anything but register). One outcome per op, in order: null when
   * durable. `puts` are written atomically with the ops (a WebSocket client's high-water mark);
   * `order` is that client's, whose submissions land in order or not at all (SubmissionOrder).
   */
  async submit(ops: ReadonlyArray<SessionOp>, rt: number, puts?: Array<[string, Uint8Array]>, whenFull: WhenFull = 'refuse', order?: SubmissionOrder): Promise<OpOutcome[]> {
    // Heartbeats queue nothing (upstream heartbeats are the daemon's own): refusing them when the
    // outbox is full would only make a live application look hung.
    const dropPassThrough = this.overflow(ops.every((op) => QUEUES_NOTHING.has(op.kind)) ? 'accept' : whenFull);
    const outcomes: OpOutcome[] = new Array(ops.length).fill(null);
    const routed: RoutedOp[] = [];
    const positions: number[] = [];
    let dropped = 0;
    ops.forEach((op, i) => {
      const sn = this.directory.resolve(op.session_id);
      if (sn === undefined) {
        outcomes[i] = { code: 'unknown_session', message: `no session has the id "${op.session_id.slice(0, 128)}"` };
        return;
      }
      if (dropPassThrough && (op.kind === 'event' || op.kind === 'metric')) {
        outcomes[i] = { code: 'dropped', message: DROPPED };
        dropped++;
        return;
      }
      routed.push({ sn, kind: op.kind, rt, body: op.body });
      positions.push(i);
    });
    if (routed.length > 0 || (puts && puts.length > 0) || dropped > 0) {
      const results = await this.rounds.submit(routed, puts, dropped > 0 ? { dropped, dropped_newest: dropped } : undefined, order);
      results.forEach((r, j) => (outcomes[positions[j]!] = r));
    }
    return outcomes;
  }
}
