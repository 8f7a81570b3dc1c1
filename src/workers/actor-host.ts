import type { MessagePort } from 'node:worker_threads';
import { ProtocolError } from '../protocol/errors.js';
import { packForTransfer, unpack } from '../protocol/codec.js';
import { countOps, encodeChunk } from '../outbox/chunk.js';
import { SessionActor, type ActorOpKind, type ActivityFlush, type RegisterInput } from '../actors/session-actor.js';
import { SNAPSHOT_KEYS, decodeSnapshot, encodePart } from '../actors/session-snapshot.js';
import { validateOp } from '../protocol/validate.js';
import type { Op } from '../protocol/ops.js';
import type { BatchBody, ControlMessage, HostTask, RoundReply, RoundRequest, WorkerSettings } from './round-messages.js';

/**
 * The worker entry. Piscina runs one long-lived `host` task per worker; the task owns a
 * MessagePort for its whole life, which is what pins a session to a worker: the main thread
 * picks the port by placement, so piscina never has to choose a worker per op.
 * (Measured against one piscina task per round pinned by a `loadBalancer`: 15.2 k vs 14.8 k
 * rounds/s of 100 ops, the same; the port also keeps piscina's task bookkeeping off the hot path.)
 */
export default function host(task: HostTask): Promise<void> {
  const actors = new ActorRegistry(task.settings);
  const port: MessagePort = task.port;
  return new Promise((resolve) => {
    // The pool closes the port when it gives up on this host (e.g. a reply out of order): end the
    // task then, so piscina can run the replacement host on this thread.
    port.on('close', () => resolve());
    port.on('message', (msg: ArrayBuffer | ControlMessage) => {
      if (msg instanceof ArrayBuffer) {
        const reply = actors.runRound(unpack(new Uint8Array(msg)) as RoundRequest);
        const buf = packForTransfer(reply);
        port.postMessage(buf, [buf]);
        return;
      }
      switch (msg.t) {
        case 'reset':
          actors.clear();
          break;
        case 'stop':
          port.close();
          resolve();
          break;
        case 'die':
          throw new Error(`worker ${task.slot} killed by test hook`);
        case 'stall': {
          const until = Date.now() + msg.ms;
          while (Date.now() < until); // busy on purpose: the rounds posted meanwhile wait their turn
          break;
        }
      }
    });
  });
}

/**
 * Whether a process exists (signal 0: EPERM means it exists but is not ours), remembered for one
 * tick: many sessions usually share one parent, and one syscall per pid per second is enough.
 */
function processProbe(): (pid: number) => boolean {
  const seen = new Map<number, boolean>();
  return (pid) => {
    let alive = seen.get(pid);
    if (alive === undefined) {
      try {
        process.kill(pid, 0);
        alive = true;
      } catch (err) {
        alive = (err as NodeJS.ErrnoException).code === 'EPERM';
      }
      seen.set(pid, alive);
    }
    return alive;
  };
}

function count(reply: RoundReply, kind: string, n = 1): void {
  if (n > 0) reply.applied[kind] = (reply.applied[kind] ?? 0) + n;
}

/** The actors of one worker and the turn loop that runs a round through them. */
class ActorRegistry {
  private readonly actors = new Map<number, SessionActor>();

  constructor(private readonly settings: WorkerSettings) {}

  clear(): void {
    this.actors.clear();
  }

  runRound(req: RoundRequest): RoundReply {
    const touched = new Set<SessionActor>();
    const reply: RoundReply = { r: req.r, chunks: [], puts: [], active: [], errors: [], dropped: 0, applied: {} };
    for (const [sn, core, state, aggregates, activity, newest] of req.activate) {
      const actor = new SessionActor(decodeSnapshot(core, state, aggregates, activity), this.settings);
      this.actors.set(sn, actor);
      // The main thread learns a session's status from core writes only, and a session found hung
      // before a restart is not written again until it recovers: without this it would not count
      // as hung (/health), and get upstream heartbeats as a live session.
      reply.active.push([sn, actor.snapshot.active, actor.snapshot.hung]);
      if (newest) {
        actor.recoverActivity(newest, req.now);
        touched.add(actor);
      }
    }
    /** Actors that must persist their activity in this round (a read is waiting). */
    const flushed = new Set<SessionActor>();
    for (const [sn, serverId] of req.remaps) {
      const actor = this.actors.get(sn);
      if (actor) {
        actor.setServerId(serverId);
        touched.add(actor);
      }
    }
    const errors = reply.errors;
    req.ops.forEach(([sn, kind, rt, body], index) => {
      try {
        if (kind === 'register') {
          const actor = SessionActor.register(sn, body as RegisterInput, rt, this.settings);
          this.actors.set(sn, actor);
          touched.add(actor);
          count(reply, kind);
          return;
        }
        const actor = this.actors.get(sn);
        if (!actor) throw new ProtocolError('internal', `session ${sn} is not loaded in this worker`);
        touched.add(actor);
        if (kind === 'batch') this.runBatch(actor, body as BatchBody, rt, index, reply);
        else if (kind === 'persist') flushed.add(actor);
        else if (kind === 'activate') return; // loaded above: nothing to apply
        else if (kind === 'parent_exited') actor.parentExited(rt, ...(body as [number, number]));
        else {
          actor.apply(kind as ActorOpKind, body as never, rt);
          count(reply, kind);
        }
      } catch (err) {
        if (err instanceof ProtocolError) errors.push([index, err.code, err.message]);
        else errors.push([index, 'internal', err instanceof Error ? err.message : String(err)]);
      }
    });
    if (req.tick) {
      const alive = processProbe();
      for (const actor of this.actors.values()) {
        actor.tick(req.now, alive, req.listeningSince ?? 0);
        touched.add(actor);
      }
    }
    for (const actor of touched) this.endTurn(actor, req.now, flushed.has(actor) || req.tick === 'all' ? 'all' : 'due', reply);
    for (const sn of req.passivate) {
      const actor = this.actors.get(sn);
      if (!actor) continue;
      this.endTurn(actor, req.now, 'all', reply);
      this.actors.delete(sn);
    }
    return reply;
  }

  /** One actor's turn outputs into the reply: its outbox chunk and the snapshot parts it changed. */
  private endTurn(actor: SessionActor, now: number, activity: ActivityFlush, reply: RoundReply): void {
    const { ops, parts } = actor.endTurn(now, activity);
    const s = actor.snapshot;
    if (ops.length > 0) reply.chunks.push([s.sn, countOps(ops), encodeChunk(ops)]);
    for (const part of parts) reply.puts.push([SNAPSHOT_KEYS[part](s.sn), encodePart(s, part)]);
    if (parts.includes('core')) reply.active.push([s.sn, s.active, s.hung]);
  }

  /**
   * A WebSocket batch: decoded and validated here, in the session's worker, so the gateway only
   * reads its envelope (one decode per op in the whole daemon). Each op is validated and applied
   * on its own: a bad op is refused, the others go on.
   */
  private runBatch(actor: SessionActor, [bytes, skip, n, sessionId, dropPassThrough]: BatchBody, rt: number, index: number, reply: RoundReply): void {
    const errors = reply.errors;
    let ops: unknown;
    try {
      ops = unpack(bytes);
    } catch (err) {
      ops = null;
    }
    if (!Array.isArray(ops) || ops.length !== n) {
      const message = Array.isArray(ops) ? `the batch holds ${ops.length} ops, not n=${n}` : 'the batch ops are not a MessagePack array';
      for (let i = skip; i < n; i++) errors.push([index, 'bad_request', message, i]);
      return;
    }
    const limits = this.settings.limits;
    // Validate every op first: the client's bytes are kept as they are (a raw segment) only when
    // every op in them was validated and accepted. The bytes are read again on the main thread,
    // whose stack is smaller: a refused op, or a resent one skipped unread, may hold anything this
    // thread's decoder could read (say, nesting 10 000 deep). Such a batch is re-encoded instead.
    const valid: Array<Op | null> = new Array(n).fill(null);
    let keepRaw = skip === 0;
    for (let i = skip; i < n; i++) {
      const raw = ops[i] as { k?: unknown } | null;
      try {
        const op = validateOp(String(raw?.k), raw, limits, sessionId);
        if (op.kind === 'register') throw new ProtocolError('invalid_field', 'register goes in an "ops" frame, not in a batch');
        valid[i] = op;
      } catch (err) {
        keepRaw = false;
        pushError(errors, index, i, err);
      }
    }
    // Counted here and added once: a property write per op on `applied` showed in the profile.
    let events = 0;
    let metrics = 0;
    let states = 0;
    for (let i = skip; i < n; i++) {
      const op = valid[i];
      if (!op) continue;
      try {
        if (dropPassThrough && (op.kind === 'event' || op.kind === 'metric')) {
          reply.dropped++;
          throw new ProtocolError('dropped', 'the outbox is full: discarded by overflow policy drop_newest');
        }
        actor.apply(op.kind as ActorOpKind, op.body as never, rt, keepRaw ? { bytes, index: i } : undefined);
        if (op.kind === 'event') events++;
        else if (op.kind === 'metric') metrics++;
        else if (op.kind === 'state') states++;
        else count(reply, op.kind);
      } catch (err) {
        pushError(errors, index, i, err);
      }
    }
    count(reply, 'event', events);
    count(reply, 'metric', metrics);
    count(reply, 'state', states);
  }
}

function pushError(errors: RoundReply['errors'], index: number, i: number, err: unknown): void {
  if (err instanceof ProtocolError) errors.push([index, err.code, err.message, i]);
  else errors.push([index, 'internal', err instanceof Error ? err.message : String(err), i]);
}
