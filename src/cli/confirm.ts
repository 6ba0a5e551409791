import { createInterface } from 'node:readline/promises';
import { DstackError } from '../engine/errors.js';

/**
 * Asks before a destructive action. Without a terminal, refuses unless `-y` was given: a script
 * must say so explicitly.
 */
export async function confirm(question: string, yes: boolean, flagHint: string): Promise<void> {
  if (yes) return;
  if (!process.stdin.isTTY) {
    throw new DstackError('DS0103', `${question.replace(/\?$/, '')}: refused without confirmation`, { hint: `pass -y to confirm: ${flagHint}` });
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = (await rl.question(`${question} [y/N] `)).trim().toLowerCase();
    if (answer !== 'y' && answer !== 'yes') throw new DstackError('DS0103', 'cancelled', {});
  } finally {
    rl.close();
  }
}
