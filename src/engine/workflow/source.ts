/**
 * Source text helpers shared by the loader, the planner and the resolver: turning offsets into
 * `file:line:col`, fetching the offending line for an error, and the "did you mean" suggestion.
 */
import { closest, distance } from 'fastest-levenshtein';
import type { SourceLocation } from '../errors.js';
import { readProjectFile } from './read.js';

/**
 * The line a location points at, read again from disk. Used by errors found after loading (the
 * planner, the resolver), which only have the location; errors are rare, so the re-read is cheap.
 */
export function lineTextAt(root: string, loc: SourceLocation): string | undefined {
  return sourceLines(root, loc.file)?.[loc.line - 1];
}

export function sourceLines(root: string, file: string): string[] | undefined {
  // The file may have been replaced since it was loaded (by a FIFO, even): read it as safely.
  const r = readProjectFile(root, file);
  return r.ok ? r.text.split(/\r?\n/) : undefined;
}

/**
 * The closest candidate within a small edit distance, or undefined. Field names use the fixed
 * limit 2; longer names (workflows, variables) allow a third of their length.
 */
export function didYouMean(word: string, candidates: Iterable<string>, maxDistance?: number): string | undefined {
  const list = [...candidates];
  if (list.length === 0) return undefined;
  const best = closest(word, list);
  const limit = maxDistance ?? Math.max(2, Math.floor(word.length / 3));
  return distance(word, best) <= limit ? best : undefined;
}

/** `; did you mean \`x\`?` or ''. */
export const suggestion = (best: string | undefined): string => (best === undefined ? '' : `; did you mean \`${best}\`?`);

export const formatLocation = (loc: SourceLocation): string => `${loc.file}:${loc.line}:${loc.col}`;

/** A name as messages show it: a 100 KB name must not make a 100 KB message. */
export const shown = (s: string): string => (s.length > 60 ? `${s.slice(0, 57)}…` : s);
