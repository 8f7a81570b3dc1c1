import { isPlainObject } from './values.js';

export type StateObject = Record<string, unknown>;

/**
 * Deep-merges `patch` into `target` in place, DataCat style: objects merge key by key, `null`
 * deletes a key, anything else (arrays included) replaces. Returns the effective patch, only
 * the keys that changed something, or `null` when the update changes nothing, so the actor can
 * drop no-op updates instead of queueing them.
 *
 * The patch has been validated (validate.ts refuses __proto__/constructor/prototype keys), and
 * targets are created here with plain literals, so a merge can never write to a prototype.
 */
export function mergeState(target: StateObject, patch: StateObject): StateObject | null {
  let effective: StateObject | null = null;
  for (const key of Object.keys(patch)) {
    const next = patch[key];
    const has = Object.prototype.hasOwnProperty.call(target, key);
    const prev = has ? target[key] : undefined;
    if (next === null) {
      if (!has) continue;
      delete target[key];
      (effective ??= {})[key] = null;
    } else if (isPlainObject(next)) {
      if (isPlainObject(prev)) {
        const sub = mergeState(prev, next);
        if (sub !== null) (effective ??= {})[key] = sub;
      } else {
        // Replacing a scalar (or nothing) with an object: null leaves mean "delete" and there
        // is nothing below to delete, so they are left out. The effective patch gets its own
        // copy: a later op in the same turn may merge into target[key] before the patch is
        // encoded into the outbox.
        const fresh = withoutNulls(next);
        target[key] = fresh;
        (effective ??= {})[key] = withoutNulls(next);
      }
    } else {
      if (has && deepEqual(prev, next)) continue;
      target[key] = next;
      (effective ??= {})[key] = next;
    }
  }
  return effective;
}

function withoutNulls(obj: StateObject): StateObject {
  const out: StateObject = {};
  for (const key of Object.keys(obj)) {
    const v = obj[key];
    if (v === null) continue;
    out[key] = isPlainObject(v) ? withoutNulls(v) : v;
  }
  return out;
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  if (ka.length !== kb.length) return false;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k)) return false;
    if (!deepEqual((a as StateObject)[k], (b as StateObject)[k])) return false;
  }
  return true;
}
