/**
 * Python's json.dumps (allow_nan, its default) writes float('inf'), float('-inf') and
 * float('nan') as the bare tokens Infinity, -Infinity and NaN, which are not JSON: JSON.parse
 * refuses the whole body. DataCat's Python client documents `buckets=[..., float('inf')]` for
 * histograms, so such bodies are common. After JSON.parse has failed (never on the fast path),
 * the HTTP gateway retries once with those tokens, where they stand as values outside strings,
 * replaced by the strings "inf", "-inf" and "nan": a histogram bound accepts "inf", and a number
 * field holding one of them is refused with the usual invalid_field (`value must be a finite
 * number`) instead of a 400 saying the body is not JSON. Free-form values (state, data,
 * metadata) keep them as those strings.
 *
 * Returns the rewritten text, or null when there is no such token (the body is then reported
 * with JSON.parse's own error). One pass over text already bounded by max_body_bytes.
 */
export function nonFiniteTokensAsStrings(text: string): string | null {
  // Most broken bodies hold neither word: two native searches, no scan.
  if (!text.includes('NaN') && !text.includes('Infinity')) return null;
  const parts: string[] = [];
  let copied = 0; // text before this index is in `parts`
  let prev = 0; // the last character outside strings that is not whitespace (0: none yet)
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      i = stringEnd(text, i);
      prev = QUOTE;
      continue;
    }
    if (c === SPACE || c === TAB || c === LF || c === CR) continue;
    // A token only where a value starts: first, or after ':', ',' or '['.
    if ((c === N || c === I || c === MINUS) && (prev === 0 || prev === COLON || prev === COMMA || prev === BRACKET)) {
      const token = c === N ? 'NaN' : c === I ? 'Infinity' : '-Infinity';
      const end = i + token.length;
      if (text.startsWith(token, i) && (end === text.length || ENDS_VALUE.has(text.charCodeAt(end)))) {
        parts.push(text.slice(copied, i), c === N ? '"nan"' : c === I ? '"inf"' : '"-inf"');
        copied = end;
        i = end - 1;
        prev = QUOTE;
        continue;
      }
    }
    prev = c;
  }
  if (parts.length === 0) return null;
  parts.push(text.slice(copied));
  return parts.join('');
}

/** The index of the quote that closes the string opened at `open` (text.length if none). */
function stringEnd(text: string, open: number): number {
  // indexOf is native and fast on long strings; a quote preceded by an odd number of
  // backslashes is escaped, and the search goes on after it.
  for (let q = open; ; ) {
    q = text.indexOf('"', q + 1);
    if (q < 0) return text.length;
    let b = q - 1;
    while (text.charCodeAt(b) === BACKSLASH) b--;
    if ((q - 1 - b) % 2 === 0) return q;
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const SPACE = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const N = 0x4e;
const I = 0x49;
const MINUS = 0x2d;
const COLON = 0x3a;
const COMMA = 0x2c;
const BRACKET = 0x5b;
/** What may follow a value: whitespace, ',', ']' or '}'. */
const ENDS_VALUE = new Set([SPACE, TAB, LF, CR, COMMA, 0x5d, 0x7d]);
