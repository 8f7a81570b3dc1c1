import { ProtocolError } from './errors.js';
import type { Limits } from './limits.js';
import { METRIC_TYPES, OP_KINDS, type CrashBody, type EventBody, type JsonObject, type MetricBody, type MetricType, type Op, type OpKind, type RegisterBody } from './ops.js';
import { checkDepth, checkValue, isPlainObject } from './values.js';

/**
 * The one validation layer: HTTP bodies and WebSocket ops both come through `validateOp` (on the
 * main thread, or in the session's worker for a WebSocket batch). It copies the known fields
 * into a fresh object (unknown fields are ignored, as DataCat's own daemon does, so newer
 * clients keep working), checks types and limits, and says exactly which field is wrong and how.
 *
 * `sessionId` is given when the session is already known (a WebSocket batch names it once);
 * otherwise session ops must carry `session_id`.
 */
export function validateOp(kind: string, input: unknown, limits: Limits, sessionId?: string): Op {
  if (!isOpKind(kind)) throw new ProtocolError('unknown_op', `unknown op "${String(kind).slice(0, 64)}"; known ops: ${OP_KINDS.join(', ')}`);
  if (!isPlainObject(input)) throw new ProtocolError('bad_request', `the ${kind} body must be a JSON object`);
  if (kind === 'register') {
    const body = validateRegister(input, limits);
    checkOtherFields(input, kind, limits);
    return { kind, body };
  }
  const session_id = sessionId ?? name(input, 'session_id', limits, true)!;
  switch (kind) {
    case 'event':
      return { kind, session_id, body: validateEvent(input, limits) }; // walks its keys: checks the others itself
    case 'metric': {
      const body = validateMetric(input, limits);
      checkOtherFields(input, kind, limits);
      return { kind, session_id, body };
    }
    case 'state': {
      const state = object(input, 'state', limits, true)!;
      checkOtherFields(input, kind, limits);
      return { kind, session_id, body: { state } };
    }
    case 'crash': {
      const body: CrashBody = {};
      const reason = name(input, 'reason', limits);
      if (reason !== undefined) body.reason = reason;
      checkOtherFields(input, kind, limits);
      return { kind, session_id, body };
    }
    default:
      checkOtherFields(input, kind, limits);
      return { kind, session_id, body: {} };
  }
}

/**
 * Fields an op does not use are ignored (DataCat's daemon does the same, so newer clients keep
 * working), but they must still be values JSON can carry, nested no deeper than max_depth: a
 * WebSocket batch is stored as the client's bytes, every field of every op included, and those
 * bytes must decode again on any thread, whose decoder's recursion is bounded by its stack.
 */
const FIELDS_READ: Record<Exclude<OpKind, 'event'>, Set<string>> = {
  register: new Set(['k', 'q', 'product', 'version', 'parent_pid', 'hostname', 'machine_id']),
  state: new Set(['k', 'q', 'session_id', 'state']),
  metric: new Set(['k', 'q', 'session_id', 'name', 'value', 'type', 'delta', 'count', 'unit', 'tags', 'metadata']),
  crash: new Set(['k', 'q', 'session_id', 'reason']),
  heartbeat: new Set(['k', 'q', 'session_id']),
  pause_heartbeat: new Set(['k', 'q', 'session_id']),
  resume_heartbeat: new Set(['k', 'q', 'session_id']),
  end: new Set(['k', 'q', 'session_id']),
};

function checkOtherFields(input: JsonObject, kind: Exclude<OpKind, 'event'>, limits: Limits): void {
  const read = FIELDS_READ[kind];
  for (const key in input) if (!read.has(key)) checkDepth(input[key], limits, key);
}

// Bodies are built by walking the keys the input has and assigning only those (never `delete`,
// which turns a V8 object into a slow dictionary; probing every known field also cost more than
// walking the few present: measured on the WebSocket ingest profile).

function validateRegister(input: JsonObject, limits: Limits): RegisterBody {
  const body: RegisterBody = { product: name(input, 'product', limits, true)!, version: name(input, 'version', limits, true)! };
  const pid = int(input, 'parent_pid', 0, 2 ** 31 - 1);
  if (pid !== undefined) body.parent_pid = pid;
  const hostname = name(input, 'hostname', limits);
  if (hostname !== undefined) body.hostname = hostname;
  const machineId = name(input, 'machine_id', limits);
  if (machineId !== undefined) body.machine_id = machineId;
  return body;
}

function validateEvent(input: JsonObject, limits: Limits): EventBody {
  const body = { name: name(input, 'name', limits, true)! } as EventBody & JsonObject;
  for (const key in input) {
    if (input[key] === undefined || input[key] === null) continue;
    switch (key) {
      case 'category':
      case 'level':
      case 'group':
      case 'exception_type':
      case 'source_function':
        body[key] = name(input, key, limits);
        break;
      case 'message':
      case 'exception_msg':
      case 'source_file':
        body[key] = text(input, key, limits);
        break;
      case 'labels':
        body.labels = nameArray(input, key, limits);
        break;
      case 'data':
        body.data = object(input, key, limits);
        break;
      case 'stacktrace':
        body.stacktrace = stacktrace(input, key, limits);
        break;
      case 'source_line':
        body.source_line = int(input, key, 0, 2 ** 31 - 1);
        break;
      default:
        checkDepth(input[key], limits, key); // ignored, but bounded (see checkOtherFields)
    }
  }
  // DataCat's Python client sends `level` (debug … critical) beside `category` (the logger
  // name), and DataCat's server event has both: `level` is kept as sent, and, as before, also
  // fills `category` in when the client sent none (a reader of `category` alone still sees it).
  if (body.category === undefined && body.level !== undefined) body.category = body.level;
  return body;
}

function validateMetric(input: JsonObject, limits: Limits): MetricBody {
  const delta = number(input, 'delta');
  // `delta` is a counter's increment: without a type it makes the metric a counter, and with
  // another type it would be stripped on the way up and the increment lost without a word.
  const type = (name(input, 'type', limits) ?? (delta === undefined ? 'gauge' : 'counter')) as MetricType;
  if (!METRIC_TYPES.includes(type)) throw new ProtocolError('invalid_field', `type must be one of ${METRIC_TYPES.join(', ')} (got "${type}")`);
  if (delta !== undefined && type !== 'counter')
    throw new ProtocolError('invalid_field', `delta is a counter's increment; a ${type} takes value alone (send type "counter", or no delta)`);
  // A counter increment may come as `delta` alone; DataCat's Python client sends value 0 then.
  const value = number(input, 'value', delta === undefined) ?? 0;
  const body: MetricBody = { name: name(input, 'name', limits, true)!, value, type };
  if (delta !== undefined) body.delta = delta;
  const count = int(input, 'count', 0, Number.MAX_SAFE_INTEGER);
  if (count !== undefined) body.count = count;
  const unit = name(input, 'unit', limits);
  if (unit !== undefined) body.unit = unit;
  const tags = nameArray(input, 'tags', limits);
  if (tags !== undefined) body.tags = tags;
  const metadata = object(input, 'metadata', limits);
  if (metadata !== undefined) {
    if (metadata['buckets'] !== undefined) checkBuckets(metadata['buckets']);
    body.metadata = metadata;
  }
  return body;
}

/** Histogram bucket bounds: ascending numbers, with "inf" (or "+Inf", "Infinity") allowed last. */
export function parseBucketBound(v: unknown): number | null {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && /^\+?(inf|infinity)$/i.test(v)) return Infinity;
  return null;
}

function checkBuckets(buckets: unknown): void {
  if (!Array.isArray(buckets) || buckets.length === 0 || buckets.length > 1000)
    throw new ProtocolError('invalid_field', 'metadata.buckets must be a non-empty array of at most 1000 ascending bounds');
  let prev = -Infinity;
  for (const b of buckets) {
    const bound = parseBucketBound(b);
    if (bound === null || bound <= prev)
      throw new ProtocolError('invalid_field', `metadata.buckets must hold ascending numbers, with "inf" allowed last (got ${JSON.stringify(b)})`);
    prev = bound;
  }
}

function isOpKind(kind: string): kind is OpKind {
  return (OP_KINDS as readonly string[]).includes(kind);
}

// Typed field readers: each throws a ProtocolError naming the field. null counts as absent.

function present(input: JsonObject, key: string, required: boolean): unknown {
  const v = input[key];
  if (v === undefined || v === null) {
    if (required) throw new ProtocolError('invalid_field', `${key} is required`);
    return undefined;
  }
  return v;
}

/** A short identifier-like string: bounded by max_name_length. */
function name(input: JsonObject, key: string, limits: Limits, required = false): string | undefined {
  const v = present(input, key, required);
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new ProtocolError('invalid_field', `${key} must be a string`);
  if (required && v.length === 0) throw new ProtocolError('invalid_field', `${key} must not be empty`);
  if (v.length > limits.max_name_length)
    throw new ProtocolError('too_long', `${key} is ${v.length} characters long; the limit is max_name_length=${limits.max_name_length}`);
  return v;
}

/** Free text: bounded by max_string_length. */
function text(input: JsonObject, key: string, limits: Limits): string | undefined {
  const v = present(input, key, false);
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new ProtocolError('invalid_field', `${key} must be a string`);
  checkValue(v, limits, key);
  return v;
}

function number(input: JsonObject, key: string, required = false): number | undefined {
  const v = present(input, key, required);
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ProtocolError('invalid_field', `${key} must be a finite number`);
  return v;
}

function int(input: JsonObject, key: string, min: number, max: number): number | undefined {
  const v = present(input, key, false);
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new ProtocolError('invalid_field', `${key} must be an integer between ${min} and ${max}`);
  return v;
}

function object(input: JsonObject, key: string, limits: Limits, required = false): JsonObject | undefined {
  const v = present(input, key, required);
  if (v === undefined) return undefined;
  if (!isPlainObject(v)) throw new ProtocolError('invalid_field', `${key} must be an object`);
  checkValue(v, limits, key);
  return v;
}

function nameArray(input: JsonObject, key: string, limits: Limits): string[] | undefined {
  const v = present(input, key, false);
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw new ProtocolError('invalid_field', `${key} must be an array of strings`);
  if (v.length > limits.max_name_length)
    throw new ProtocolError('too_long', `${key} has ${v.length} items; the limit is max_name_length=${limits.max_name_length}`);
  for (let i = 0; i < v.length; i++) {
    const s = v[i];
    if (typeof s !== 'string') throw new ProtocolError('invalid_field', `${key}[${i}] must be a string`);
    if (s.length > limits.max_name_length)
      throw new ProtocolError('too_long', `${key}[${i}] is ${s.length} characters long; the limit is max_name_length=${limits.max_name_length}`);
  }
  return v as string[];
}

/**
 * A stack trace: the list of lines Python's traceback module produces, or one string. DataCat's
 * server and Go client type it as a list of strings, so a string is split into its lines (at
 * \n; the empty line after a final \n is dropped), both for what is stored and what goes
 * upstream. The string is checked against max_string_length before it is split, as it was sent.
 */
function stacktrace(input: JsonObject, key: string, limits: Limits): string[] | undefined {
  const v = present(input, key, false);
  if (v === undefined) return undefined;
  if (typeof v === 'string') {
    checkValue(v, limits, key);
    const lines = v.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    return lines;
  }
  if (Array.isArray(v) && v.every((line) => typeof line === 'string')) {
    checkValue(v, limits, key);
    return v as string[];
  }
  throw new ProtocolError('invalid_field', `${key} must be a string or an array of strings`);
}
