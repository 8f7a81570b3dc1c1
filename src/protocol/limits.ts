/**
 * The input limits, named as their config keys so that an error message, the README and the
 * config file all use the same words. Every limit here is enforced in validate.ts or by the
 * gateway, and tested.
 */
export interface Limits {
  /** HTTP body limit in bytes (413 past it). */
  readonly max_body_bytes: number;
  /** WebSocket frame limit in bytes (the socket is closed past it). */
  readonly max_frame_bytes: number;
  /** Ops in one WebSocket frame. */
  readonly max_ops_per_frame: number;
  /** Deepest nesting of objects and arrays inside a value (state, data, metadata). */
  readonly max_depth: number;
  /** Longest free-text string (messages, stack traces, string values in data). */
  readonly max_string_length: number;
  /** Longest name-like string: names, ids, product, version, category, tags, labels, object keys. */
  readonly max_name_length: number;
}

export const DEFAULT_LIMITS: Limits = {
  max_body_bytes: 4 * 1024 * 1024,
  max_frame_bytes: 4 * 1024 * 1024,
  max_ops_per_frame: 10_000,
  max_depth: 64,
  max_string_length: 65_536,
  max_name_length: 256,
};

export function limitsFrom(config: Partial<Limits>): Limits {
  const out: Record<string, number> = { ...DEFAULT_LIMITS };
  for (const key of Object.keys(DEFAULT_LIMITS) as (keyof Limits)[]) {
    const v = config[key];
    if (typeof v === 'number') out[key] = v;
  }
  return out as unknown as Limits;
}
