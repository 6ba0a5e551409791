/**
 * Waiting for a condition instead of sleeping: tests synchronise on what they can observe (a log
 * line, a notice, a container), polled every few milliseconds up to a bound that only a broken
 * system reaches.
 */
import { setTimeout as delay } from 'node:timers/promises';

/** Resolves once `fn` returns true; throws `timed out waiting for <what>` after `ms`. */
export async function until(what: string, ms: number, fn: () => boolean | Promise<boolean>, everyMs = 25): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await delay(everyMs);
  }
}

/** A promise whose settling can be asked about at any moment. */
export function watched<T>(p: Promise<T>): { readonly promise: Promise<T>; settled(): boolean } {
  let done = false;
  const promise = p.finally(() => (done = true));
  promise.catch(() => undefined);
  return { promise, settled: () => done };
}
