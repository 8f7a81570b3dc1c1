import { ProtocolError } from './errors.js';
import type { Limits } from './limits.js';

/**
 * Keys that would let a merge or a property write reach Object.prototype. They are refused
 * everywhere, not only in state: a value accepted once may be merged or spread later.
 */
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * Checks an arbitrary JSON/MessagePack value (state, event data, metadata) against the limits:
 * nesting depth, string lengths, key lengths, forbidden keys, and types JSON can carry (so no
 * MessagePack bin, timestamp or other extension).
 * `path` names the field in the error so the client knows what to fix.
 * Recursive with an explicit depth so a hostile 100k-deep value fails fast instead of
 * overflowing the stack (the decoders already bound depth, this is the second line).
 *
 * Two passes, because almost every value is fine: `withinLimits` answers yes or no without
 * building a path string per nested key (it runs for every op of a WebSocket batch, and the
 * paths were a third of its cost); only a value it refuses is walked again by `explainRefusal`,
 * which checks the same rules and names the field.
 */
export function checkValue(value: unknown, limits: Limits, path: string, depth = 1): void {
  if (withinLimits(value, limits, depth)) return;
  explainRefusal(value, limits, path, depth);
  throw new ProtocolError('internal', `${path} was refused by the value check, but no rule names why`); // the two passes disagree: a bug
}

/** The rules of `explainRefusal`, without the messages. */
function withinLimits(value: unknown, limits: Limits, depth: number): boolean {
  switch (typeof value) {
    case 'string':
      return value.length <= limits.max_string_length;
    case 'number':
      return Number.isFinite(value);
    case 'boolean':
      return true;
    case 'object':
      break;
    default:
      return false;
  }
  if (value === null) return true;
  if (depth > limits.max_depth) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!withinLimits(value[i], limits, depth + 1)) return false;
    return true;
  }
  if (!isPlainObject(value)) return false;
  const keys = Object.keys(value);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    if (FORBIDDEN_KEYS.has(key) || key.length > limits.max_name_length) return false;
    if (!withinLimits(value[key], limits, depth + 1)) return false;
  }
  return !Object.prototype.hasOwnProperty.call(value, '__proto__');
}

/** Throws the ProtocolError naming the first part of `value` that breaks a limit. */
function explainRefusal(value: unknown, limits: Limits, path: string, depth: number): void {
  switch (typeof value) {
    case 'string':
      if (value.length > limits.max_string_length)
        throw new ProtocolError('too_long', `${path} is ${value.length} characters long; the limit is max_string_length=${limits.max_string_length}`);
      return;
    case 'number':
      if (!Number.isFinite(value)) throw new ProtocolError('invalid_field', `${path} must be a finite number`);
      return;
    case 'boolean':
      return;
    case 'object':
      break;
    default:
      throw new ProtocolError('invalid_field', `${path} has a type (${typeof value}) that JSON cannot carry`);
  }
  if (value === null) return;
  if (depth > limits.max_depth)
    throw new ProtocolError('too_deep', `${path} is nested deeper than max_depth=${limits.max_depth}`);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) explainRefusal(value[i], limits, `${path}[${i}]`, depth + 1);
    return;
  }
  // The values go upstream as JSON, which has no bytes: a Node Buffer would arrive as
  // {"type":"Buffer","data":[…]}, which no reader expects. The client chooses the text form.
  if (value instanceof Uint8Array)
    throw new ProtocolError('invalid_field', `${path} is MessagePack bin (bytes), which JSON cannot carry; send it as a string (base64, say) or an array of numbers`);
  if (!isPlainObject(value)) throw new ProtocolError('invalid_field', `${path} must be a plain object`);
  for (const key of Object.keys(value)) {
    checkKey(key, limits, path);
    explainRefusal(value[key], limits, `${path}.${key}`, depth + 1);
  }
  // JSON.parse turns {"__proto__": …} into an own property that Object.keys lists, so the
  // check above covers it; this guards objects built by other decoders.
  if (Object.prototype.hasOwnProperty.call(value, '__proto__'))
    throw new ProtocolError('forbidden_key', `${path} uses the key "__proto__", which is not allowed`);
}

/**
 * For fields the daemon ignores: only that the value is one MessagePack can carry (a plain
 * object, an array, bytes or a scalar; not a Set, Date or other decoder extension) and nests no
 * deeper than max_depth. Strings, keys and sizes are not checked: the field is never read, never
 * sent upstream, and only kept as part of a batch's bytes.
 */
export function checkDepth(value: unknown, limits: Limits, path: string, depth = 1): void {
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return;
  if (depth > limits.max_depth)
    throw new ProtocolError('too_deep', `${path} is nested deeper than max_depth=${limits.max_depth}`);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) checkDepth(value[i], limits, path, depth + 1);
    return;
  }
  if (!isPlainObject(value)) throw new ProtocolError('invalid_field', `${path} must be a value JSON can carry`);
  for (const key in value) checkDepth(value[key], limits, path, depth + 1);
}

export function checkKey(key: string, limits: Limits, path: string): void {
  if (FORBIDDEN_KEYS.has(key))
    throw new ProtocolError('forbidden_key', `${path} uses the key "${key}", which is not allowed (it could reach Object.prototype)`);
  if (key.length > limits.max_name_length)
    throw new ProtocolError('too_long', `${path} has a key ${key.length} characters long; the limit is max_name_length=${limits.max_name_length}`);
}

export { FORBIDDEN_KEYS };
