/**
 * How the fuzzer writes MessagePack. docs/protocol.md: "Integers may use any MessagePack integer
 * encoding; floats may be float32 or float64", and the daemon takes plain MessagePack as well as
 * msgpackr's record extension. So a frame is written one of three ways, chosen per frame:
 *   - 'records': msgpackr with records (what the reference client sends),
 *   - 'plain':   msgpackr without records (what most MessagePack libraries send),
 *   - 'wide':    plain MessagePack in non-minimal forms (uint32 for 5, str16 for "ab", map16 for
 *                a 2-key map, float64 for 1.5 ...), as other languages' encoders may write it.
 * None of them may change an outcome.
 */
import { Packr, Unpackr } from 'msgpackr';
import type { Rng } from './prng.js';

export type Encoding = 'records' | 'plain' | 'wide';

const records = new Packr({ useRecords: true });
const plain = new Packr({ useRecords: false });
/** The daemon's own decoder settings (src/protocol/codec.ts): the oracle for random bytes. */
export const reference = new Unpackr({ useRecords: true, mapsAsObjects: true, int64AsType: 'number', structuredClone: false });

export interface WideOptions {
  /** Also use the 64-bit integer forms (uint64 0xcf, int64 0xd3); on unless set false. */
  int64?: boolean;
}

export function encode(value: unknown, how: Encoding, rng?: Rng, options: WideOptions = { int64: true }): Buffer {
  if (how === 'records') return Buffer.from(records.pack(value));
  if (how === 'plain' || !rng) return Buffer.from(plain.pack(value));
  const out: Buffer[] = [];
  wide(value, rng, options, out);
  return Buffer.concat(out);
}

function header(type: number, size: number, bytes: 1 | 2 | 4): Buffer {
  const b = Buffer.alloc(1 + bytes);
  b[0] = type;
  if (bytes === 1) b.writeUInt8(size, 1);
  else if (bytes === 2) b.writeUInt16BE(size, 1);
  else b.writeUInt32BE(size, 1);
  return b;
}

/** The widest-or-any form that can hold `n` items / bytes (fix forms when `fix` allows). */
function sizeForm(rng: Rng, n: number, fixMax: number, fixBase: number | null, forms: Array<[number, 1 | 2 | 4]>): Buffer {
  const options: Buffer[] = [];
  if (fixBase !== null && n <= fixMax) options.push(Buffer.from([fixBase + n]));
  for (const [type, bytes] of forms) if (n < 2 ** (8 * bytes)) options.push(header(type, n, bytes));
  return rng.pick(options);
}

function int(n: number, rng: Rng, options: WideOptions): Buffer {
  const forms: Buffer[] = [];
  if (n >= 0) {
    if (n < 128) forms.push(Buffer.from([n]));
    if (n < 256) forms.push(Buffer.from([0xcc, n]));
    if (n < 65536) forms.push(header(0xcd, n, 2));
    if (n < 2 ** 32) forms.push(header(0xce, n, 4));
    if (options.int64) {
      const b = Buffer.alloc(9);
      b[0] = 0xcf;
      b.writeBigUInt64BE(BigInt(n), 1);
      forms.push(b);
    }
  }
  if (n < 0 && n >= -32) forms.push(Buffer.from([0xe0 | (n + 32)]));
  if (n >= -128 && n < 128) forms.push(Buffer.from([0xd0, n & 0xff]));
  if (n >= -32768 && n < 32768) {
    const b = Buffer.alloc(3);
    b[0] = 0xd1;
    b.writeInt16BE(n, 1);
    forms.push(b);
  }
  if (n >= -(2 ** 31) && n < 2 ** 31) {
    const b = Buffer.alloc(5);
    b[0] = 0xd2;
    b.writeInt32BE(n, 1);
    forms.push(b);
  }
  if (options.int64) {
    const b = Buffer.alloc(9);
    b[0] = 0xd3;
    b.writeBigInt64BE(BigInt(n), 1);
    forms.push(b);
  }
  if (forms.length === 0 || rng.chance(0.1)) forms.push(float64(n)); // an integral float64 decodes to the same number
  return rng.pick(forms);
}

function float64(n: number): Buffer {
  const b = Buffer.alloc(9);
  b[0] = 0xcb;
  b.writeDoubleBE(n, 1);
  return b;
}

function wide(v: unknown, rng: Rng, options: WideOptions, out: Buffer[]): void {
  if (v === null) out.push(Buffer.from([0xc0]));
  else if (v === false || v === true) out.push(Buffer.from([v ? 0xc3 : 0xc2]));
  else if (typeof v === 'number') {
    if (Number.isInteger(v) && Math.abs(v) < 2 ** 32 && !Object.is(v, -0)) out.push(int(v, rng, options));
    else if (Math.fround(v) === v && rng.chance(0.5)) {
      const b = Buffer.alloc(5);
      b[0] = 0xca;
      b.writeFloatBE(v, 1);
      out.push(b);
    } else out.push(float64(v));
  } else if (typeof v === 'string') {
    const bytes = Buffer.from(v, 'utf8');
    out.push(sizeForm(rng, bytes.length, 31, 0xa0, [[0xd9, 1], [0xda, 2], [0xdb, 4]]), bytes);
  } else if (v instanceof Uint8Array) {
    out.push(sizeForm(rng, v.length, -1, null, [[0xc4, 1], [0xc5, 2], [0xc6, 4]]), Buffer.from(v));
  } else if (Array.isArray(v)) {
    out.push(sizeForm(rng, v.length, 15, 0x90, [[0xdc, 2], [0xdd, 4]]));
    for (const item of v) wide(item, rng, options, out);
  } else if (v !== undefined && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    const keys = Object.keys(v);
    out.push(sizeForm(rng, keys.length, 15, 0x80, [[0xde, 2], [0xdf, 4]]));
    for (const k of keys) {
      wide(k, rng, options, out);
      wide((v as Record<string, unknown>)[k], rng, options, out);
    }
  } else out.push(Buffer.from(plain.pack(v))); // dates, undefined, ...: msgpackr's own forms
}

/** A str as MessagePack (minimal form): for hand-assembled frames. */
function strBytes(s: string): Buffer {
  return Buffer.from(plain.pack(s));
}

function arrayHeader(n: number, rng?: Rng): Buffer {
  if (rng && rng.chance(0.3)) return n < 65536 && rng.chance(0.5) ? header(0xdc, n, 2) : header(0xdd, n, 4);
  return n < 16 ? Buffer.from([0x90 + n]) : n < 65536 ? header(0xdc, n, 2) : header(0xdd, n, 4);
}

/**
 * An array of already-encoded items (MessagePack values are self-delimiting, so an array is its
 * header followed by its items): the ops of a frame or of a batch's bin, each encoded once.
 */
export function arrayOf(items: Buffer[], rng?: Rng): Buffer {
  return Buffer.concat([arrayHeader(items.length, rng), ...items]);
}

/** `{t: "ops", ops: [<items>]}` from encoded ops. */
export function opsFrame(items: Buffer[], rng?: Rng): Buffer {
  return Buffer.concat([Buffer.from([0x82]), strBytes('t'), strBytes('ops'), strBytes('ops'), arrayOf(items, rng)]);
}
