/** Asserting on dstack's errors. */
import * as assert from 'uvu/assert';
import { DstackError } from '../../src/engine/errors.js';

/** Awaits `p`, which must fail with a DstackError of `code`; returns it for more assertions. */
export async function rejectsWith(p: Promise<unknown>, code: string): Promise<DstackError> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, DstackError, String(e));
    assert.is((e as DstackError).code, code, (e as Error).message);
    return e as DstackError;
  }
  throw new Error(`expected ${code}, got success`);
}
