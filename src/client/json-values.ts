/**
 * Values (state, event data, metadata) as JSON would carry them, which is what a DataCat user
 * expects and what the daemon accepts: an `undefined` property is left out, an `undefined` (or
 * function) in an array becomes null, and anything with `toJSON` (a Date) becomes what that
 * returns. Without this, `{user: user?.name}` or a Date got the whole op refused by the daemon.
 *
 * Numbers JSON has no form for (NaN, Infinity, -Infinity) become the strings "nan", "inf" and
 * "-inf": the daemon refuses non-finite numbers in values (the whole op, invalid_field), and its
 * HTTP gateway stores the bare NaN/Infinity tokens of DataCat's Python client (json.dumps) as
 * exactly those strings. Not null, as JSON.stringify writes: null in a state deletes the key.
 *
 * Most values need nothing: `needsJsonForm` answers that without allocating, and only a value
 * that needs it is copied. Deeper than the walk goes (a circular value, say) is left as it is:
 * the daemon refuses it past max_depth, and one the encoder cannot write is refused by the
 * client on its own (client.ts, sendFrame), without harming the ops around it.
 */
const DEEPEST = 128;

export function jsonForm<T>(value: T): T {
  return needsJsonForm(value, 0) ? (convert(value, 0) as T) : value;
}

function needsJsonForm(v: unknown, depth: number): boolean {
  // Bytes stay bytes (a Buffer's toJSON is not what anyone reading the server wants): the daemon
  // refuses them in values with a message saying to send text.
  if (v === null || typeof v !== 'object' || depth > DEEPEST || ArrayBuffer.isView(v)) return false;
  if (typeof (v as { toJSON?: unknown }).toJSON === 'function') return true;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const item: unknown = v[i];
      if (item === undefined || typeof item === 'function' || typeof item === 'symbol' || nonFinite(item) || needsJsonForm(item, depth + 1)) return true;
    }
    return false;
  }
  for (const key in v) {
    const item = (v as Record<string, unknown>)[key];
    if (item === undefined || typeof item === 'function' || typeof item === 'symbol' || nonFinite(item) || needsJsonForm(item, depth + 1)) return true;
  }
  return false;
}

function nonFinite(v: unknown): v is number {
  return typeof v === 'number' && !Number.isFinite(v);
}

/** NaN, Infinity, -Infinity as the daemon stores them from DataCat's Python client. */
function nonFiniteString(v: number): string {
  return Number.isNaN(v) ? 'nan' : v > 0 ? 'inf' : '-inf';
}

function convert(v: unknown, depth: number): unknown {
  if (nonFinite(v)) return nonFiniteString(v);
  if (v === null || typeof v !== 'object' || depth > DEEPEST || ArrayBuffer.isView(v)) return v;
  if (typeof (v as { toJSON?: unknown }).toJSON === 'function') return convert((v as { toJSON(): unknown }).toJSON(), depth + 1);
  if (Array.isArray(v)) return v.map((item) => (item === undefined || typeof item === 'function' || typeof item === 'symbol' ? null : convert(item, depth + 1)));
  const out: Record<string, unknown> = {};
  for (const key in v) {
    const item = (v as Record<string, unknown>)[key];
    if (item === undefined || typeof item === 'function' || typeof item === 'symbol') continue;
    out[key] = convert(item, depth + 1);
  }
  return out;
}
