/**
 * Post-mortem of a chaos run: matches what the producers got acked against what the fake
 * upstream received and applied, request by request.
 *
 * Op identity: every producer op carries its session number `s` and a per-session number `g`
 * (events: `data: {s, n: g}`; state updates: `state: {k<s>: g}`), creates carry
 * `version: chaos-<s>`, and an end is known by the server id in its path. So each upstream
 * request maps to exactly one acked op, and the fake's record of it (outcome, status) plus the
 * chaos scheduler's note (which fault hit it) says what the daemon could know about it.
 *
 * Support code only: tap does not run this file.
 */
import type { ReceivedRequest, UpstreamSession } from '../fake-upstream.js';
import type { FaultNote } from './scheduler.js';

export interface AckedOp {
  s: number;
  g: number;
  kind: 'event' | 'state' | 'poison' | 'end';
  /** poison: the 4xx the fake answers it with. */
  status?: number;
}

export interface SessionInfo {
  s: number;
  /** The id /register answered (a local id when the upstream did not create it in time). */
  id: string;
  local: boolean;
  serverId: string | null;
  registerStart: number;
  registerEnd: number;
  ended: boolean;
}

/**
 * What one upstream request came to, from the daemon's point of view:
 * - ok: applied and answered 2xx in time: the daemon knows it was delivered;
 * - clean: refused before anything was applied, and the daemon could tell (a 5xx/429/408
 *   answer, a reset before the body was read);
 * - doubt-applied: applied, but the daemon never got the answer (dropped answer, or answered
 *   after the daemon's timeout): a legitimate duplicate source;
 * - doubt-not-applied: the daemon cannot know (reset after the body, a slow request cut by a
 *   down), but the fake did not apply it;
 * - refused: answered a non-retryable 4xx (poison);
 * - rejected: the fake's own validation refused it (404 unknown session, 400 bad body): never
 *   expected from a correct daemon.
 */
export type Fate = 'ok' | 'clean' | 'doubt-applied' | 'doubt-not-applied' | 'refused' | 'rejected';

export interface OpHistory {
  key: string;
  s: number;
  requests: ReceivedRequest[];
  fates: Fate[];
}

export interface AnalysisInput {
  requests: readonly ReceivedRequest[];
  sessions: ReadonlyMap<string, UpstreamSession>;
  acked: readonly AckedOp[];
  info: readonly SessionInfo[];
  notes: WeakMap<object, FaultNote>;
  upstreamTimeoutMs: number;
  registerTimeoutMs: number;
  retryBaseMs: number;
  /** Attempts from this time on are not counted against backoff (POST /flush resets every wait). */
  backoffUntil?: number;
}

export interface Analysis {
  histories: Map<string, OpHistory>;
  /** Acked ops (not poison) that never reached their session upstream. */
  lost: string[];
  /** Ops applied under a server session other than their own. */
  misrouted: string[];
  /** Per-session order violations (first occurrences out of order, create/end placement). */
  orderViolations: string[];
  /** Applications beyond the first, over all ops (orphan creates included). */
  duplicates: number;
  duplicateOps: number;
  /** Duplicates not explained by an in-doubt request of the same op. */
  unexplainedDuplicates: string[];
  /** Requests whose outcome the daemon could not know (dropped answer, reset after body, timeout). */
  inDoubtRequests: number;
  rejected: string[];
  /** Poison ops that were applied, retried after their 4xx, or never sent. */
  poisonViolations: string[];
  attempts: { max: number; maxKey: string; mean: number; p99: number; total: number };
  /** Ops whose attempts exceed 2 + 2·span/retry_base_ms (span: first to last attempt). */
  tightLoops: string[];
  /** Retries of an op that came less than retry_base_ms/2 after an attempt that failed. */
  fastRetries: number;
  unattributedBeforeBody: number;
  fates: Record<Fate, number>;
  /** Applied ops nobody acked (phantoms). */
  phantoms: string[];
}

const OP_KINDS = new Set(['create', 'state', 'event', 'end', 'crash', 'metric']);

export function analyze(input: AnalysisInput): Analysis {
  const bySession = new Map(input.info.map((i) => [i.s, i]));
  const serverToS = new Map<string, number>();
  for (const i of input.info) if (i.serverId) serverToS.set(i.serverId, i.s);

  const keyOf = (kind: string, sessionId: string | null, body: any): { key: string; s: number } | null => {
    if (body === null || typeof body !== 'object') return null;
    if (kind === 'create') {
      const m = /^chaos-(\d+)$/.exec(String(body.version ?? ''));
      return m ? { key: `create:${m[1]}`, s: Number(m[1]) } : null;
    }
    if (kind === 'event' && typeof body.data?.s === 'number' && typeof body.data?.n === 'number') return { key: `op:${body.data.s}:${body.data.n}`, s: body.data.s };
    if (kind === 'state' && body.state && typeof body.state === 'object') {
      for (const [k, v] of Object.entries(body.state)) {
        const m = /^k(\d+)$/.exec(k);
        if (m && typeof v === 'number') return { key: `op:${m[1]}:${v}`, s: Number(m[1]) };
      }
      return null;
    }
    if (kind === 'end' && sessionId !== null && serverToS.has(sessionId)) {
      const s = serverToS.get(sessionId)!;
      return { key: `end:${s}`, s };
    }
    return null;
  };

  const usedCreate = new Set<object>();
  for (const i of input.info) {
    const created = i.serverId ? input.sessions.get(i.serverId)?.create : undefined;
    if (created && typeof created === 'object') usedCreate.add(created);
  }

  const fateOf = (req: ReceivedRequest, s: number | null): Fate => {
    const note = req.body !== null && typeof req.body === 'object' ? input.notes.get(req.body) : undefined;
    if (req.outcome === 'rejected') return 'rejected';
    if (req.outcome === 'faulted') {
      if (req.body === undefined && req.status === null) return 'clean'; // reset before the body
      if (note?.action === 'poison') return 'refused';
      if (note?.action === 'reset-after' || note?.action === 'delay') return 'doubt-not-applied';
      if (req.status !== null) return 'clean';
      return 'doubt-not-applied';
    }
    if (req.status === null) return 'doubt-applied'; // dropAnswer
    if (req.kind === 'create' && s !== null && !usedCreate.has(req.body)) {
      // A create the daemon did not use: /register gave up on it (it answered a local id).
      const info = bySession.get(s);
      if (info?.local && req.at <= info.registerEnd) return 'doubt-applied';
    }
    if (note?.action === 'delay') {
      const info = s !== null ? bySession.get(s) : undefined;
      const urgent = req.kind === 'create' && info !== undefined && req.at <= info.registerEnd;
      const timeout = urgent ? input.registerTimeoutMs : input.upstreamTimeoutMs;
      if (note.delayMs >= timeout - 50) return 'doubt-applied';
    }
    return 'ok';
  };

  const histories = new Map<string, OpHistory>();
  const fates: Record<Fate, number> = { ok: 0, clean: 0, 'doubt-applied': 0, 'doubt-not-applied': 0, refused: 0, rejected: 0 };
  const rejected: string[] = [];
  /** Before-body resets wait for the next keyed request of the same session: the same op, retried (FIFO lane). */
  const pendingBeforeBody = new Map<string, ReceivedRequest[]>();
  let unattributedBeforeBody = 0;
  const sorted = [...input.requests].sort((a, b) => a.seq - b.seq);
  for (const req of sorted) {
    if (!OP_KINDS.has(req.kind)) {
      if (req.outcome === 'rejected' && req.kind !== 'other') rejected.push(`#${req.seq} ${req.method} ${req.path} → ${req.status}`);
      continue;
    }
    if (req.body === undefined) {
      if (req.kind !== 'create' && req.sessionId !== null) {
        const list = pendingBeforeBody.get(req.sessionId) ?? [];
        list.push(req);
        pendingBeforeBody.set(req.sessionId, list);
      } else unattributedBeforeBody++;
      fates.clean++;
      continue;
    }
    const id = keyOf(req.kind, req.sessionId, req.body);
    const fate = fateOf(req, id?.s ?? null);
    fates[fate]++;
    if (fate === 'rejected') rejected.push(`#${req.seq} ${req.method} ${req.path} → ${req.status} ${JSON.stringify(req.body).slice(0, 120)}`);
    if (!id) continue;
    let h = histories.get(id.key);
    if (!h) histories.set(id.key, (h = { key: id.key, s: id.s, requests: [], fates: [] }));
    if (req.sessionId !== null) {
      const earlier = pendingBeforeBody.get(req.sessionId);
      if (earlier) {
        for (const e of earlier) {
          h.requests.push(e);
          h.fates.push('clean');
        }
        pendingBeforeBody.delete(req.sessionId);
      }
    }
    h.requests.push(req);
    h.fates.push(fate);
  }
  for (const list of pendingBeforeBody.values()) unattributedBeforeBody += list.length;

  // Duplicates: the daemon stops sending an op once it got a 2xx, so at most one request of an op
  // may be 'ok'; every other application must be one whose answer the daemon never got.
  let duplicates = 0;
  let duplicateOps = 0;
  const unexplainedDuplicates: string[] = [];
  const describe = (h: OpHistory): string =>
    h.requests.map((r, i) => `#${r.seq}@${r.at % 100000} ${r.outcome}/${r.status ?? '-'}/${h.fates[i]}${noteText(input.notes, r)}`).join(' ; ');
  for (const h of histories.values()) {
    const applied = h.requests.filter((r) => r.outcome === 'applied').length;
    if (applied > 1) {
      duplicates += applied - 1;
      duplicateOps++;
    }
    if (h.key.startsWith('create:')) {
      h.requests.forEach((r, i) => {
        if (r.outcome === 'applied' && !usedCreate.has(r.body) && h.fates[i] !== 'doubt-applied')
          unexplainedDuplicates.push(`${h.key}: orphan create #${r.seq} was answered in time: ${describe(h)}`);
      });
      continue;
    }
    const oks = h.fates.filter((f) => f === 'ok').length;
    if (oks > 1) unexplainedDuplicates.push(`${h.key}: sent again after a 2xx answered in time: ${describe(h)}`);
  }

  // Poison: refused, never applied, never retried after the 4xx.
  const poisonViolations: string[] = [];
  for (const op of input.acked.filter((o) => o.kind === 'poison')) {
    const h = histories.get(`op:${op.s}:${op.g}`);
    if (!h) {
      poisonViolations.push(`op:${op.s}:${op.g}: never sent upstream`);
      continue;
    }
    if (h.requests.some((r) => r.outcome === 'applied')) poisonViolations.push(`op:${op.s}:${op.g}: applied upstream`);
    const refusedAt = h.fates.indexOf('refused');
    if (refusedAt < 0) poisonViolations.push(`op:${op.s}:${op.g}: never answered its 4xx: ${describe(h)}`);
    else if (refusedAt !== h.fates.length - 1) poisonViolations.push(`op:${op.s}:${op.g}: retried after its ${h.requests[refusedAt]!.status}: ${describe(h)}`);
  }

  // Delivery and order, as the server applied them (apply order, per server session).
  const lost: string[] = [];
  const misrouted: string[] = [];
  const orderViolations: string[] = [];
  const phantoms: string[] = [];
  const ackedKeys = new Set(input.acked.map((o) => (o.kind === 'end' ? `end:${o.s}` : `op:${o.s}:${o.g}`)));
  for (const [serverId, session] of input.sessions) {
    const owner = serverToS.get(serverId);
    for (const op of session.ops) {
      const id = keyOf(op.kind, serverId, op.body);
      if (!id) continue;
      if (owner === undefined || id.s !== owner) misrouted.push(`${id.key} applied under ${serverId} (owner s=${owner ?? 'none'})`);
      if (!ackedKeys.has(id.key)) phantoms.push(`${id.key} under ${serverId}`);
    }
  }
  for (const info of input.info) {
    const session = info.serverId ? input.sessions.get(info.serverId) : undefined;
    const mine = input.acked.filter((o) => o.s === info.s);
    if (!session) {
      lost.push(`s=${info.s}: no server session (server_id ${info.serverId})`);
      continue;
    }
    const firstAt = new Map<string, number>();
    session.ops.forEach((op, i) => {
      const id = keyOf(op.kind, info.serverId, op.body);
      if (id && !firstAt.has(id.key)) firstAt.set(id.key, i);
    });
    for (const o of mine) {
      if (o.kind === 'poison') continue;
      const key = o.kind === 'end' ? `end:${o.s}` : `op:${o.s}:${o.g}`;
      if (!firstAt.has(key)) lost.push(`${key} (${o.kind})`);
    }
    // First occurrences of the op numbers strictly increase (events and states share one sequence).
    let last = -1;
    let lastKey = '';
    for (const [key, pos] of [...firstAt].sort((a, b) => a[1] - b[1])) {
      if (!key.startsWith('op:')) continue;
      const g = Number(key.split(':')[2]);
      if (g <= last) orderViolations.push(`s=${info.s}: op ${g} first applied after op ${last} (${lastKey}, position ${pos})`);
      last = Math.max(last, g);
      lastKey = key;
    }
    if (info.ended) {
      const endPos = firstAt.get(`end:${info.s}`);
      if (endPos !== undefined) {
        for (const [key, pos] of firstAt) if (key !== `end:${info.s}` && pos > endPos) orderViolations.push(`s=${info.s}: ${key} first applied after end`);
      }
    }
  }

  // Attempts per op, and whether a retry ever came in a tight loop.
  const counts: number[] = [];
  let max = 0;
  let maxKey = '';
  let total = 0;
  let fastRetries = 0;
  const tightLoops: string[] = [];
  const until = input.backoffUntil ?? Infinity;
  for (const h of histories.values()) {
    const n = h.requests.length;
    counts.push(n);
    total += n;
    if (n > max) {
      max = n;
      maxKey = h.key;
    }
    // Between two failed attempts of one op there is a backoff wait (≥ retry_base_ms), or the
    // rest of a gate closure someone else started (at most one per closure, each ≥ retry_base_ms).
    const paced = h.requests.filter((r) => r.at < until);
    const span = paced.length ? paced[paced.length - 1]!.at - paced[0]!.at : 0;
    const bound = 2 + (2 * span) / input.retryBaseMs;
    if (paced.length > bound) tightLoops.push(`${h.key}: ${paced.length} attempts in ${span} ms (bound ${bound.toFixed(1)}): ${describe(h)}`);
    for (let i = 1; i < n; i++) {
      if (h.requests[i]!.at >= until) break;
      const prevFate = h.fates[i - 1]!;
      if (prevFate === 'clean' && h.requests[i]!.at - h.requests[i - 1]!.at < input.retryBaseMs / 2) fastRetries++;
    }
  }
  counts.sort((a, b) => a - b);
  const p99 = counts.length ? counts[Math.min(counts.length - 1, Math.floor(counts.length * 0.99))]! : 0;

  return {
    histories,
    lost,
    misrouted,
    orderViolations,
    duplicates,
    duplicateOps,
    unexplainedDuplicates,
    inDoubtRequests: fates['doubt-applied'] + fates['doubt-not-applied'],
    rejected,
    poisonViolations,
    attempts: { max, maxKey, mean: counts.length ? total / counts.length : 0, p99, total },
    tightLoops,
    fastRetries,
    unattributedBeforeBody,
    fates,
    phantoms,
  };
}

function noteText(notes: WeakMap<object, FaultNote>, r: ReceivedRequest): string {
  const n = r.body !== null && typeof r.body === 'object' ? notes.get(r.body) : undefined;
  if (!n) return r.body === undefined ? '[reset-before]' : '';
  switch (n.action) {
    case 'status':
      return `[${n.status}]`;
    case 'delay':
      return `[slow ${n.delayMs}]`;
    case 'poison':
      return `[poison ${n.status}]`;
    default:
      return `[${n.action}]`;
  }
}

/** Requests that reached the fake in (from, to], optionally only some kinds. */
export function arrivals(requests: readonly ReceivedRequest[], from: number, to: number, kinds?: ReadonlySet<string>): ReceivedRequest[] {
  return requests.filter((r) => r.at > from && r.at <= to && (!kinds || kinds.has(r.kind)));
}

const WAIT_STATUSES = new Set([429, 502, 503, 504]);
const served = (x: ReceivedRequest): boolean => x.outcome === 'applied' && x.status !== null && x.status < 300;

/**
 * Whether the daemon takes refusal `r` as its session's own, so that only that session waits
 * (SyncActor.closesGate): since the server last took an op of the session, one of its requests
 * was answered with a wait (429, 502-504), and after that the server took another session's
 * request (answered by the time `r` was, give or take the 150 ms the Retry-After check allows).
 * Creates belong to no session on the server: their refusals always pause everyone.
 */
export function ownRefusal(requests: readonly ReceivedRequest[], r: ReceivedRequest): boolean {
  if (r.sessionId === null || r.kind === 'create') return false;
  let first: ReceivedRequest | null = null;
  for (const x of requests) {
    if (x.seq >= r.seq) break;
    if (x.sessionId !== r.sessionId) continue;
    if (served(x)) first = null;
    else if (first === null && x.status !== null && WAIT_STATUSES.has(x.status)) first = x;
  }
  if (!first) return false;
  const from = first;
  return requests.some((x) => x.seq > from.seq && x.at <= r.at + 150 && x.sessionId !== r.sessionId && served(x));
}
