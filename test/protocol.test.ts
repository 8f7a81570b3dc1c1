import t from 'tap';
import { validateOp, mergeState, DEFAULT_LIMITS, ProtocolError } from '../src/protocol/index.js';
import { packPlain } from '../src/protocol/codec.js';
import { decodeChunk, encodeChunk } from '../src/outbox/chunk.js';

const limits = DEFAULT_LIMITS;
const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    return err instanceof ProtocolError ? err.code : 'not a ProtocolError';
  }
  return undefined;
};

t.test('validateOp keeps known fields, ignores unknown ones, and names the bad field', async (t) => {
  const op = validateOp('event', { session_id: 's', name: 'n', level: 'error', extra: 1, data: { a: 1 }, stacktrace: ['l1', 'l2'] }, limits);
  t.same(op, { kind: 'event', session_id: 's', body: { name: 'n', category: 'error', level: 'error', data: { a: 1 }, stacktrace: ['l1', 'l2'] } }, 'level kept, and fills category; unknown fields dropped; the id beside the body');
  t.same(validateOp('event', { session_id: 's', name: 'n', category: 'info', level: 'error' }, limits).body, { name: 'n', category: 'info', level: 'error' });
  t.same(validateOp('event', { name: 'n' }, limits, 'known').session_id, 'known', 'a batch names the session once');
  t.same(validateOp('metric', { session_id: 's', name: 'c', type: 'counter', value: 0, delta: 2 }, limits).body, { name: 'c', type: 'counter', value: 0, delta: 2 });
  t.same((validateOp('metric', { session_id: 's', name: 'c', type: 'counter', delta: 2 }, limits).body as any).value, 0, 'value may be omitted with delta');
  t.equal((validateOp('metric', { session_id: 's', name: 'g', value: 1 }, limits).body as any).type, 'gauge', 'type defaults to gauge');
  t.same(validateOp('register', { product: 'p', version: 'v', parent_pid: 12 }, limits).body, { product: 'p', version: 'v', parent_pid: 12 });
  t.equal(code(() => validateOp('metric', { session_id: 's', name: 'g' }, limits)), 'invalid_field', 'value required without delta');
  t.match(validateOp('metric', { session_id: 's', name: 'c', delta: 5 }, limits), { body: { type: 'counter', delta: 5, value: 0 } }, 'delta alone makes a counter');
  t.equal(code(() => validateOp('metric', { session_id: 's', name: 'g', type: 'gauge', value: 1, delta: 5 }, limits)), 'invalid_field', 'delta on a gauge would be lost: refused');
  t.equal(code(() => validateOp('metric', { session_id: 's', name: 'g', value: Infinity }, limits)), 'invalid_field');
  t.equal(code(() => validateOp('event', { session_id: 's', name: 'n', source_line: 1.5 }, limits)), 'invalid_field');
  t.equal(code(() => validateOp('event', { session_id: 's', name: 'n', labels: ['a', 2] }, limits)), 'invalid_field');
  t.equal(code(() => validateOp('event', { session_id: '', name: 'n' }, limits)), 'invalid_field', 'empty id');
  t.equal(code(() => validateOp('launch', {}, limits)), 'unknown_op');
  t.equal(code(() => validateOp('state', 'x', limits)), 'bad_request');
  t.equal(code(() => validateOp('register', { product: 'p', version: 'v', parent_pid: -1 }, limits)), 'invalid_field');
  t.equal(code(() => validateOp('event', { session_id: 's', name: 'n', message: 'm'.repeat(70_000) }, limits)), 'too_long');
  t.equal(code(() => validateOp('state', { session_id: 's', state: { ['k'.repeat(300)]: 1 } }, limits)), 'too_long', 'long keys');
});

t.test('histogram buckets: ascending numbers with "inf" last', async (t) => {
  const ok = validateOp('metric', { session_id: 's', name: 'h', type: 'histogram', value: 1, metadata: { buckets: [0.1, 1, 'inf'] } }, limits);
  t.same((ok.body as any).metadata.buckets, [0.1, 1, 'inf']);
  for (const buckets of [[1, 0.5], ['inf', 1], [], 'x', [1, 'soon']])
    t.equal(code(() => validateOp('metric', { session_id: 's', name: 'h', type: 'histogram', value: 1, metadata: { buckets } }, limits)), 'invalid_field', JSON.stringify(buckets));
});

t.test('depth and forbidden keys are checked everywhere', async (t) => {
  let deep: unknown = 1;
  for (let i = 0; i < 70; i++) deep = [deep];
  t.equal(code(() => validateOp('event', { session_id: 's', name: 'n', data: { deep } }, limits)), 'too_deep');
  t.equal(code(() => validateOp('metric', { session_id: 's', name: 'n', value: 1, metadata: JSON.parse('{"__proto__":{"x":1}}') }, limits)), 'forbidden_key');
  t.equal(code(() => validateOp('state', { session_id: 's', state: { a: [{ constructor: 1 }] } }, limits)), 'forbidden_key', 'inside arrays too');
  // Unknown fields are ignored, but (stored as sent when they come in a WebSocket batch) they
  // must be JSON-like values nested at most max_depth, in every kind of op.
  t.equal(code(() => validateOp('event', { session_id: 's', name: 'n', extra: deep }, limits)), 'too_deep', 'unknown event field');
  t.equal(code(() => validateOp('metric', { session_id: 's', name: 'n', value: 1, extra: { deep } }, limits)), 'too_deep', 'unknown metric field');
  for (const [kind, body] of [['state', { state: {} }], ['heartbeat', {}], ['end', {}], ['crash', { reason: 'r' }], ['register', { product: 'p', version: '1' }]] as const)
    t.equal(code(() => validateOp(kind, { session_id: 's', ...body, extra: deep }, limits)), 'too_deep', `unknown ${kind} field`);
  t.equal(code(() => validateOp('heartbeat', { session_id: 's', extra: [new Set([1])] }, limits)), 'invalid_field', 'a Set is not JSON');
  t.ok(validateOp('event', { session_id: 's', name: 'n', extra: { constructor: 'x'.repeat(100_000) } }, limits), 'otherwise still ignored, unread');
});

t.test('a refused value names the exact place that breaks each rule', async (t) => {
  // checkValue answers yes/no in one pass and names the field in a second, only for refusals:
  // every rule must be refused by both, with the path of the first offending part.
  const refusal = (value: unknown): [string, string] | undefined => {
    try {
      validateOp('state', { session_id: 's', state: value }, limits);
    } catch (err) {
      if (err instanceof ProtocolError) return [err.code, err.message];
      throw err;
    }
    return undefined;
  };
  const nest = (levels: number): unknown => (levels === 0 ? 1 : { n: nest(levels - 1) });
  const cases: Array<[unknown, string, RegExp]> = [
    [{ a: [1, { b: 'x'.repeat(70_000) }] }, 'too_long', /^state\.a\[1\]\.b is 70000 characters/],
    [{ a: { ['k'.repeat(300)]: 1 } }, 'too_long', /^state\.a has a key 300 characters/],
    [{ a: [{ ok: 1 }, { constructor: 1 }] }, 'forbidden_key', /^state\.a\[1\] uses the key "constructor"/],
    [JSON.parse('{"a":{"__proto__":{"x":1}}}'), 'forbidden_key', /^state\.a uses the key "__proto__"/],
    [{ a: { b: NaN } }, 'invalid_field', /^state\.a\.b must be a finite number/],
    [{ a: [0, 1n] }, 'invalid_field', /^state\.a\[1\] has a type \(bigint\)/],
    [{ a: { when: new Date(0) } }, 'invalid_field', /^state\.a\.when must be a plain object/],
    [{ a: [{ blob: new Uint8Array(3) }] }, 'invalid_field', /^state\.a\[0\]\.blob is MessagePack bin \(bytes\), which JSON cannot carry/],
    [{ a: nest(limits.max_depth) }, 'too_deep', /^state(\.a)(\.n)+ is nested deeper than max_depth=64/],
  ];
  for (const [value, wanted, message] of cases) {
    const got = refusal(value);
    t.equal(got?.[0], wanted, `${wanted}: ${String(message)}`);
    t.match(got?.[1], message);
  }
  t.equal(refusal({ a: [1, 'x', true, null, { b: [] }], c: nest(limits.max_depth - 2) }), undefined, 'every allowed kind of value passes');
  t.ok(validateOp('event', { session_id: 's', name: 'n', blob: new Uint8Array(3) }, limits), 'bytes in a field the daemon never reads are ignored');
});

t.test('mergeState: deep merge, null deletes, arrays replace, no-ops detected', async (t) => {
  const s: Record<string, unknown> = {};
  t.same(mergeState(s, { a: 1, b: { c: 2, d: [1, 2] } }), { a: 1, b: { c: 2, d: [1, 2] } });
  t.equal(mergeState(s, { a: 1, b: { c: 2 } }), null, 'nothing changed');
  t.equal(mergeState(s, { zzz: null }), null, 'deleting a missing key changes nothing');
  t.same(mergeState(s, { b: { c: null, d: [3] }, e: { f: null, g: 1 } }), { b: { c: null, d: [3] }, e: { g: 1 } }, 'effective patch only');
  t.same(s, { a: 1, b: { d: [3] }, e: { g: 1 } });
  t.same(mergeState(s, { a: { x: 1 } }), { a: { x: 1 } }, 'scalar replaced by an object');
  const patch = mergeState(s, { n: { deep: 1 } })!;
  mergeState(s, { n: { more: 2 } });
  t.same(patch, { n: { deep: 1 } }, 'an effective patch is not changed by later merges');
});

t.test('a stored batch op with bytes in a value (kept before bin was refused) still goes up, as it did then', async (t) => {
  const raw = packPlain([
    { k: 'event', name: 'old', data: { blob: new Uint8Array([1, 2]) } },
    { k: 'event', name: 'plain', extra: new Uint8Array([9]) },
  ]);
  const ops = decodeChunk(encodeChunk([{ r: raw, t: 1000, i: [0, 1] }]));
  t.same(ops, [
    { k: 'event', t: 1000, b: { name: 'old', data: { blob: { type: 'Buffer', data: [1, 2] } } } },
    { k: 'event', t: 1000, b: { name: 'plain' } },
  ]);
});
