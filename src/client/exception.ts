/** The event fields describing a thrown value, as DataCat's exception events carry them. */
export interface ExceptionFields {
  exception_type: string;
  exception_msg: string;
  stacktrace?: string[];
  source_file?: string;
  source_line?: number;
  source_function?: string;
}

// "    at fn (file:line:col)" or "    at file:line:col" (V8's stack format).
const FRAME = /^\s*at (?:(.*?) \()?(.+?):(\d+):\d+\)?$/;

/**
 * Describes anything that can be thrown. JavaScript throws non-Errors too (strings, objects), and
 * reading `.stack` or calling `String()` on a hostile value can itself throw: this never does.
 */
export function exceptionFields(err: unknown): ExceptionFields {
  if (err instanceof Error) {
    // `name` is what V8 prints, but a subclass that does not set it still says "Error": then the
    // class name says more (as Python's type(e).__name__ does).
    const type = safe(() => (err.name && err.name !== 'Error' ? err.name : err.constructor?.name || err.name), 'Error');
    const out: ExceptionFields = { exception_type: type, exception_msg: safe(() => String(err.message), '') };
    const stack = safe(() => (typeof err.stack === 'string' ? err.stack : ''), '');
    if (stack) {
      // The lines as V8 prints them, header included, like Python's traceback.format_exception.
      out.stacktrace = stack.split('\n');
      // The innermost frame is where it was thrown.
      for (const line of out.stacktrace) {
        const m = FRAME.exec(line);
        if (!m) continue;
        if (m[1]) out.source_function = m[1];
        out.source_file = m[2]!;
        out.source_line = Number(m[3]);
        break;
      }
    }
    return out;
  }
  const type = err === null ? 'null' : typeof err === 'object' ? safe(() => (err as object).constructor?.name ?? 'Object', 'Object') : typeof err;
  return { exception_type: type, exception_msg: safe(() => String(err), '') };
}

function safe<T>(fn: () => T | undefined, fallback: T): T {
  try {
    return fn() ?? fallback;
  } catch {
    return fallback;
  }
}
