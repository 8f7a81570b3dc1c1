/**
 * JSON text for HTTP bodies. Like JSON.stringify, except that ±Infinity is written as ±1e999
 * (which JSON.parse reads back as ±Infinity: the only way a JSON body carries a non-finite
 * number), and own "__proto__" keys are kept (JSON.stringify keeps own properties).
 */
const INF = '\u0000\u0001+INF\u0001\u0000';
const NEG_INF = '\u0000\u0001-INF\u0001\u0000';

export function toJson(value: unknown): string {
  const text = JSON.stringify(value, (_key, v: unknown) => (v === Infinity ? INF : v === -Infinity ? NEG_INF : v));
  if (text === undefined) return '';
  return text.includes('\\u0000\\u0001') ? text.replaceAll(JSON.stringify(INF), '1e999').replaceAll(JSON.stringify(NEG_INF), '-1e999') : text;
}

/** One line, safe in TAP output: control characters and line separators escaped. */
export function oneLine(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A case or payload for a failure report: bytes as hex, long strings shortened, non-JSON values named. One line. */
export function describe(value: unknown, maxString = 80): string {
  const seen = new WeakSet<object>();
  const text = JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'string') return v.length > maxString ? `${v.slice(0, maxString)}…(${v.length} chars)` : v;
    if (typeof v === 'number' && !Number.isFinite(v)) return `<${v}>`;
    if (typeof v === 'bigint') return `<${v}n>`;
    if (v === undefined) return '<undefined>';
    if (v instanceof Uint8Array || (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer')) {
      const bytes = v instanceof Uint8Array ? Buffer.from(v) : Buffer.from((v as { data: number[] }).data);
      return `<bin ${bytes.length}: ${bytes.subarray(0, 48).toString('hex')}${bytes.length > 48 ? '…' : ''}>`;
    }
    if (v instanceof Date) return `<timestamp ${Number.isNaN(v.getTime()) ? 'invalid' : v.toISOString()}>`;
    if (v && typeof v === 'object') {
      if (seen.has(v)) return '<cycle>';
      seen.add(v);
      if (Array.isArray(v) && v.length > 40) return [...v.slice(0, 40), `…(${v.length} items)`];
    }
    return v;
  });
  return oneLine(text ?? 'undefined');
}
