/**
 * Before the first write to a team bucket: it must exist. A bucket that does not is offered to be
 * created on a terminal (and refused with a hint elsewhere: a script must say so itself, with
 * `dstack config s3 … --create`).
 */
import { createInterface } from 'node:readline/promises';
import { DstackError } from '../engine/errors.js';
import type { TeamStore } from '../remote-store/team-store.js';

export async function ensureBucket(team: TeamStore, stderr: NodeJS.WritableStream): Promise<void> {
  try {
    await team.bucket.check();
  } catch (e) {
    if (!(e instanceof DstackError) || e.code !== 'DS0260' || !team.bucket.create || !process.stdin.isTTY) throw e;
    const rl = createInterface({ input: process.stdin, output: stderr });
    let answer: string;
    try {
      answer = (await rl.question(`${e.message}. Create it? [y/N] `)).trim().toLowerCase();
    } finally {
      rl.close();
    }
    if (answer !== 'y' && answer !== 'yes') throw e;
    await team.bucket.create();
    stderr.write(`Created ${team.where}\n`);
  }
}
