import { ProtocolError } from './errors.js';
import type { Limits } from './limits.js';
import { METRIC_TYPES, OP_KINDS, type EventBody, type JsonObject, type MetricBody, type MetricType, type Op, type OpKind } from './ops.js';
import { checkValue, isPlainObject } from './values.js';

/**
 * The one validation layer: HTTP bodies and WebSocket ops both come through `validateOp`.
 * It copies known fields into a fresh object (unknown fields are ignored, as DataCat's own
 * daemon does, so newer clients keep working), checks types and limits, and explains in the
 * error message exactly which field is wrong and how.
 */
export function validateOp(kind: string, input: unknown, limits: Limits): Op {
  if (!isOpKind(kind)) throw new ProtocolError('unknown_op', `unknown op "${String(kind).slice(0, 64)}"; known ops: ${OP_KINDS.join(', ')}`);
  if (!isPlainObject(input)) throw new ProtocolError('bad_request', `the ${kind} body must be a JSON object`);
  const f = new Fields(input, limits);
  switch (kind) {
    case 'register':
      return {
        kind,
        body: dropUndefined({
          product: f.name('product', true)!,
          version: f.name('version', true)!,
          parent_pid: f.int('parent_pid', 0, 2 ** 31 - 1),
          hostname: f.name('hostname'),
          machine_id: f.name('machine_id'),
        }),
      };
    case 'state':
      return { kind, body: { session_id: f.sessionId(), state: f.object('state', true)! } };
    case 'event':
      return { kind, body: validateEvent(f) };
    case 'metric':
      return { kind, body: validateMetric(f) };
    case 'crash':
      return { kind, body: dropUndefined({ session_id: f.sessionId(), reason: f.name('reason') }) };
    default:
      return { kind, body: { session_id: f.sessionId() } } as Op;
  }
}

function validateEvent(f: Fields): EventBody {
  // DataCat's Python client sends `level` beside (or instead of) `category`; the server keeps
  // only `category`, so `level` fills it in when `category` is absent.
  const category = f.name('category') ?? f.name('level');
  return dropUndefined({
    session_id: f.sessionId(),
    name: f.name('name', true)!,
    category,
    group: f.name('group'),
    labels: f.nameArray('labels'),
    message: f.text('message'),
    data: f.object('data'),
    stacktrace: f.stacktrace('stacktrace'),
    exception_type: f.name('exception_type'),
    exception_msg: f.text('exception_msg'),
    source_file: f.text('source_file'),
    source_line: f.int('source_line', 0, 2 ** 31 - 1),
    source_function: f.name('source_function'),
  });
}

function validateMetric(f: Fields): MetricBody {
  const type = (f.name('type') ?? 'gauge') as MetricType;
  if (!METRIC_TYPES.includes(type)) throw new ProtocolError('invalid_field', `type must be one of ${METRIC_TYPES.join(', ')} (got "${type}")`);
  const delta = f.number('delta');
  // A counter increment may come as `delta` alone; DataCat's Python client sends value 0 then.
  const value = f.number('value', delta === undefined) ?? 0;
  const metadata = f.object('metadata');
  if (metadata && metadata['buckets'] !== undefined) checkBuckets(metadata['buckets']);
  return dropUndefined({
    session_id: f.sessionId(),
    name: f.name('name', true)!,
    value,
    type,
    delta,
    count: f.int('count', 0, Number.MAX_SAFE_INTEGER),
    unit: f.name('unit'),
    tags: f.nameArray('tags'),
    metadata,
  });
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

function dropUndefined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}

/** Typed field readers; each throws a ProtocolError naming the field. */
class Fields {
  constructor(
    private readonly input: JsonObject,
    private readonly limits: Limits,
  ) {}

  private get(key: string, required: boolean): unknown {
    const v = this.input[key];
    if (v === undefined || v === null) {
      if (required) throw new ProtocolError('invalid_field', `${key} is required`);
      return undefined;
    }
    return v;
  }

  sessionId(): string {
    return this.name('session_id', true)!;
  }

  /** A short identifier-like string: bounded by max_name_length. */
  name(key: string, required = false): string | undefined {
    const v = this.get(key, required);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw new ProtocolError('invalid_field', `${key} must be a string`);
    if (required && v.length === 0) throw new ProtocolError('invalid_field', `${key} must not be empty`);
    if (v.length > this.limits.max_name_length)
      throw new ProtocolError('too_long', `${key} is ${v.length} characters long; the limit is max_name_length=${this.limits.max_name_length}`);
    return v;
  }

  /** Free text: bounded by max_string_length. */
  text(key: string): string | undefined {
    const v = this.get(key, false);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw new ProtocolError('invalid_field', `${key} must be a string`);
    checkValue(v, this.limits, key);
    return v;
  }

  number(key: string, required = false): number | undefined {
    const v = this.get(key, required);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ProtocolError('invalid_field', `${key} must be a finite number`);
    return v;
  }

  int(key: string, min: number, max: number): number | undefined {
    const v = this.get(key, false);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      throw new ProtocolError('invalid_field', `${key} must be an integer between ${min} and ${max}`);
    return v;
  }

  object(key: string, required = false): JsonObject | undefined {
    const v = this.get(key, required);
    if (v === undefined) return undefined;
    if (!isPlainObject(v)) throw new ProtocolError('invalid_field', `${key} must be an object`);
    checkValue(v, this.limits, key);
    return v;
  }

  nameArray(key: string): string[] | undefined {
    const v = this.get(key, false);
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) throw new ProtocolError('invalid_field', `${key} must be an array of strings`);
    if (v.length > this.limits.max_name_length)
      throw new ProtocolError('too_long', `${key} has ${v.length} items; the limit is max_name_length=${this.limits.max_name_length}`);
    for (let i = 0; i < v.length; i++) {
      const s = v[i];
      if (typeof s !== 'string') throw new ProtocolError('invalid_field', `${key}[${i}] must be a string`);
      if (s.length > this.limits.max_name_length)
        throw new ProtocolError('too_long', `${key}[${i}] is ${s.length} characters long; the limit is max_name_length=${this.limits.max_name_length}`);
    }
    return v as string[];
  }

  /** A stack trace: one string, or the list of lines Python's traceback module produces. */
  stacktrace(key: string): string[] | string | undefined {
    const v = this.get(key, false);
    if (v === undefined) return undefined;
    if (typeof v === 'string' || (Array.isArray(v) && v.every((line) => typeof line === 'string'))) {
      checkValue(v, this.limits, key);
      return v as string[] | string;
    }
    throw new ProtocolError('invalid_field', `${key} must be a string or an array of strings`);
  }
}
