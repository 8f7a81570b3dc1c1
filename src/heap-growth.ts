import { setFlagsFromString } from 'node:v8';

/**
 * How far V8 lets the old generation grow past what survived the last full GC before it starts
 * the next one: 300 % is a growing factor of 4, the largest V8 picks by itself (its dynamic factor
 * ranges from 1.1 to 4 with the GC's speed).
 *
 * Why the daemon fixes it: the main thread's live heap is small (~13 MB) while its young
 * generation is large and busy (every frame and request allocates), and with V8's dynamic factor
 * the old generation's headroom ends up smaller than the young generation. V8 then starts
 * incremental marking again as soon as the last one finished: measured at half the peak
 * WebSocket rate (670 k ops/s), 209 full GCs in 25 s on the main thread, 2–16 ms pauses each, and
 * the concurrent marking kept V8's helper threads on a fifth of a core. With this factor: 3–4
 * full GCs in the same 25 s, and the ack p99 went from 29.5 ms to 13.8 ms (README, Performance).
 *
 * The flag is read each time V8 computes a limit, so setting it at startup works (unlike the
 * heap sizes, which are fixed when the isolate is created). It is process-wide: the actor
 * workers get it too (their full GCs went from 25–31 to 1–8 in the same runs).
 */
export const HEAP_GROWING_PERCENT = 300;

/** Applies HEAP_GROWING_PERCENT unless the operator set the flag on node's command line. */
export function tuneHeapGrowth(execArgv: readonly string[] = process.execArgv): boolean {
  if (execArgv.some((arg) => /^--heap[-_]growing[-_]percent\b/.test(arg))) return false;
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  return true;
}
