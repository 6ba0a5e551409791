/**
 * Run names: `wet-mangust-1`. A random adjective-animal prefix plus a per-prefix counter kept in the
 * store (`name_counters`), incremented inside the transaction that creates the run, so names stay
 * unique even when several dstack processes create runs at once, and are never reused after a
 * run is deleted.
 */

export const ADJECTIVES: readonly string[] = [
  'angry', 'bald', 'big', 'bitter', 'black', 'blue', 'bold', 'brave', 'bright', 'brown',
  'calm', 'chilly', 'clever', 'cold', 'cool', 'crazy', 'curly', 'damp', 'dark', 'dry',
  'eager', 'early', 'empty', 'fair', 'fancy', 'fast', 'fat', 'fluffy', 'funny', 'fuzzy',
  'gentle', 'giant', 'gold', 'green', 'grumpy', 'happy', 'heavy', 'hot', 'huge', 'lazy',
  'light', 'little', 'loud', 'lucky', 'mad', 'mean', 'nice', 'odd', 'old', 'pink',
  'proud', 'quick', 'quiet', 'red', 'rich', 'sad', 'shy', 'silly', 'slow', 'smart',
  'soft', 'sour', 'swift', 'tall', 'tame', 'tiny', 'warm', 'wet', 'wild', 'young',
];

export const ANIMALS: readonly string[] = [
  'ant', 'ape', 'bat', 'bear', 'beaver', 'bee', 'bison', 'boar', 'bobcat', 'bull',
  'camel', 'cat', 'cobra', 'cougar', 'cow', 'crab', 'crane', 'crow', 'deer', 'dingo',
  'dog', 'donkey', 'dove', 'duck', 'eagle', 'eel', 'elk', 'emu', 'falcon', 'ferret',
  'fish', 'fox', 'frog', 'goat', 'goose', 'gopher', 'hare', 'hawk', 'horse', 'hyena',
  'ibis', 'jackal', 'koala', 'lemur', 'lion', 'lizard', 'llama', 'lynx', 'mangust', 'mole',
  'moose', 'mouse', 'newt', 'otter', 'owl', 'panda', 'parrot', 'puma', 'rabbit', 'rat',
  'raven', 'seal', 'shark', 'sheep', 'snail', 'snake', 'swan', 'tiger', 'wolf', 'yak',
];

/** `[0, 1)`, like `Math.random`; injectable so tests can pin or narrow the prefixes. */
export type RandomSource = () => number;

function pick(list: readonly string[], random: RandomSource): string {
  const i = Math.min(list.length - 1, Math.max(0, Math.floor(random() * list.length)));
  return list[i] as string;
}

/** A random `adjective-animal` prefix. */
export function randomPrefix(random: RandomSource = Math.random): string {
  return `${pick(ADJECTIVES, random)}-${pick(ANIMALS, random)}`;
}

export function formatRunName(prefix: string, n: number): string {
  return `${prefix}-${n}`;
}

/** Splits `wet-mangust-12` into its prefix and counter; undefined for a name not of that shape. */
export function parseRunName(name: string): { readonly prefix: string; readonly n: number } | undefined {
  const m = /^([a-z]+-[a-z]+)-([1-9][0-9]*)$/.exec(name);
  if (!m) return undefined;
  return { prefix: m[1] as string, n: Number(m[2]) };
}
