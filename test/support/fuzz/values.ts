/**
 * Value generators: strings of an exact length, JSON-like values within the limits, and the
 * building blocks of the limit mutations (nesting to an exact depth, a key at a given depth).
 *
 * Depth is counted as the daemon counts it (src/protocol/values.ts `checkValue`): the field's
 * value is depth 1, each container one more, scalars do not count. A value whose deepest
 * container is at depth `LIMITS.max_depth` passes; one level more is `too_deep`.
 */
import type { Rng } from './prng.js';

export type Transport = 'ws' | 'batch' | 'http';

type Json = null | boolean | number | string | Uint8Array | Json[] | { [key: string]: Json };
export type Value = Json;

const ASCII = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:';
const PUNCT = ' !"#$%&\'()*+,/;<=>?@[\\]^`{|}~';
const BMP = 'éßøЖжλ中文字한국語ÿĀ€™…\u00a0\u2028\u2029\ufeff\u202e';
const ASTRAL = ['😀', '𝄞', '🚀', '𠜎'];
const CONTROL = '\u0000\u0001\u0007\b\t\n\r\u001b\u001f\u007f';

/** A string of exactly `len` UTF-16 code units (what the daemon's length limits count). */
export function str(rng: Rng, len: number, flavour: 'ascii' | 'any' = 'any'): string {
  if (len > 96) {
    // Long strings: a random chunk repeated (cheap; the daemon only counts their length).
    const chunk = str(rng, rng.range(8, 48), flavour);
    return chunk.repeat(Math.ceil(len / chunk.length)).slice(0, len).replace(/[\ud800-\udbff]$/, 'x');
  }
  let out = '';
  while (out.length < len) {
    const r = flavour === 'ascii' ? 0 : rng.int(20);
    if (r < 14) out += ASCII[rng.int(ASCII.length)];
    else if (r < 16) out += PUNCT[rng.int(PUNCT.length)];
    else if (r < 18) out += BMP[rng.int(BMP.length)];
    else if (r < 19 && len - out.length >= 2) out += rng.pick(ASTRAL);
    else out += CONTROL[rng.int(CONTROL.length)];
  }
  return out;
}

/** A valid name-like string (ids, names, tags): 1..max_name_length, mostly short. */
export function nameStr(rng: Rng, max = 64): string {
  return str(rng, rng.chance(0.05) ? max : rng.logRange(1, max));
}

/** A valid free-text string: 0..max_string_length, mostly short. */
export function textStr(rng: Rng, max = 4096): string {
  return str(rng, rng.chance(0.02) ? max : rng.chance(0.1) ? rng.logRange(0, max) : rng.logRange(0, 120));
}

/** A string with lone surrogates: valid UTF-16 for JSON escapes, not valid UTF-8 once encoded. */
export function loneSurrogates(rng: Rng): string {
  let out = '';
  const n = rng.range(1, 12);
  for (let i = 0; i < n; i++) out += rng.chance(0.5) ? String.fromCharCode(0xd800 + rng.int(0x400)) : String.fromCharCode(0xdc00 + rng.int(0x400));
  return str(rng, rng.range(0, 4), 'ascii') + out + str(rng, rng.range(0, 4), 'ascii');
}

/** Keys of state objects come from a small vocabulary: a merged state must not grow without bound. */
export const STATE_KEYS = ['level', 'score', 'hp', 'map', 'mode', 'player', 'inventory', 'flags', 'stats', 'pos', 'x', 'y', 'team', 'round', 'build', 'gpu'];

export function finiteNumber(rng: Rng): number {
  switch (rng.int(8)) {
    case 0:
      return rng.int(128);
    case 1:
      return -rng.int(100000);
    case 2:
      return rng.u32();
    case 3:
      return (rng.float() - 0.5) * 1e6;
    case 4:
      return rng.pick([0, 1, -1, 0.5, 1e308, -1e308, 5e-324, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 2 ** 31, 2 ** 32]);
    default:
      return rng.float() * 100;
  }
}

/** A scalar. Not a MessagePack bin: JSON has no bytes, so values refuse them (mutation bin_in_value). */
export function scalar(rng: Rng): Value {
  switch (rng.int(6)) {
    case 0:
    case 1:
      return str(rng, rng.logRange(0, 40));
    case 2:
    case 3:
      return finiteNumber(rng);
    case 4:
      return rng.chance(0.5);
    default:
      return null;
  }
}

export interface ValueOptions {
  /** Where the keys come from: the state vocabulary, or anything name-like. */
  keys: 'state' | 'any';
  /** Keep values small (the common case) or allow big arrays and long strings. */
  big?: boolean;
}

function key(rng: Rng, o: ValueOptions): string {
  return o.keys === 'state' ? rng.pick(STATE_KEYS) : rng.chance(0.8) ? str(rng, rng.logRange(1, 16), 'ascii') : nameStr(rng);
}

/** A valid value with at most `depthLeft` more levels of containers. */
export function value(rng: Rng, depthLeft: number, t: Transport, o: ValueOptions): Value {
  if (depthLeft <= 0 || rng.chance(0.55)) {
    if (o.big && rng.chance(0.05)) return str(rng, rng.logRange(100, 4096));
    return scalar(rng);
  }
  if (rng.chance(0.5)) return object(rng, depthLeft, t, o);
  if (o.big && rng.chance(0.05)) return Array.from({ length: rng.logRange(100, 3000) }, () => rng.int(1000));
  return Array.from({ length: rng.logRange(0, 6) }, () => value(rng, depthLeft - 1, t, o));
}

/** A valid plain object (the object itself is one level) with at most `depthLeft` levels. */
export function object(rng: Rng, depthLeft: number, t: Transport, o: ValueOptions): { [key: string]: Value } {
  const out: { [key: string]: Value } = {};
  const n = rng.logRange(o.keys === 'state' ? 1 : 0, 6);
  for (let i = 0; i < n; i++) out[key(rng, o)] = value(rng, depthLeft - 1, t, o);
  return out;
}

/**
 * An object whose deepest container is at exactly `depth` (the object itself is level 1):
 * a chain of single-child objects and arrays, `leaf` at the bottom.
 */
export function nestedTo(rng: Rng, depth: number, leaf: Value, o: ValueOptions): { [key: string]: Value } {
  let v: Value = leaf;
  for (let d = depth; d > 1; d--) v = rng.chance(0.5) ? [v] : { [key(rng, o)]: v };
  return { [key(rng, o)]: v };
}

/**
 * An object that holds `badKey` in an object at depth `depth` (1 = the object itself), with
 * valid siblings around it. Own property even for "__proto__" (as JSON.parse would make it).
 */
export function withKeyAt(rng: Rng, depth: number, badKey: string, badValue: Value, t: Transport, o: ValueOptions): { [key: string]: Value } {
  const inner: { [key: string]: Value } = {};
  const siblings = rng.range(0, 2);
  for (let i = 0; i < siblings; i++) inner[key(rng, o)] = scalar(rng);
  Object.defineProperty(inner, badKey, { value: badValue, enumerable: true, writable: true, configurable: true });
  let v: { [key: string]: Value } = inner;
  for (let d = depth; d > 1; d--) v = { [key(rng, o)]: v };
  return v;
}

/** Anything at all, for fields the daemon must ignore: deep, long, forbidden keys included. */
export function junk(rng: Rng, t: Transport): Value {
  switch (rng.int(6)) {
    case 0:
      return nestedTo(rng, rng.range(17, 200), 1, { keys: 'any' });
    case 1:
      return str(rng, rng.range(4097, 6000));
    case 2:
      return withKeyAt(rng, rng.range(1, 5), rng.pick(['constructor', 'prototype', '__proto__']), { polluted: true }, t, { keys: 'any' });
    case 3:
      return Array.from({ length: rng.range(65, 300) }, () => rng.int(10));
    case 4:
      // Refused in a value the daemon reads, but an unknown field is never read.
      if (t !== 'http') return { blob: rng.bytes(rng.range(0, 16)) };
      return value(rng, 4, t, { keys: 'any' });
    default:
      return value(rng, 4, t, { keys: 'any' });
  }
}
