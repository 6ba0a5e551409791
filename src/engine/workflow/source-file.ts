/**
 * One YAML file as read, for the loader. Kept apart from source.ts, which the planner and the
 * resolver use on every run: this one needs the YAML library, which a run whose project comes from
 * the parsed-project cache (project-cache.ts) never loads.
 */
import { LineCounter, type Node } from 'yaml';
import { DstackError, type ErrorCode, type SourceLocation } from '../errors.js';

/** One YAML file as read: its path relative to the project root, its text and line index. */
export class SourceFile {
  readonly lines: readonly string[];
  readonly lineCounter = new LineCounter();
  constructor(
    readonly file: string,
    readonly text: string,
  ) {
    this.lines = text.split(/\r?\n/);
  }

  locate(offset: number): SourceLocation {
    const { line, col } = this.lineCounter.linePos(offset);
    return { file: this.file, line, col };
  }

  lineText(line: number): string | undefined {
    return this.lines[line - 1];
  }
}

/** An error at a node of a file: its file:line:col and the line, for the caret. */
export function nodeError(ctx: { readonly src: SourceFile }, node: Node | null | undefined, code: ErrorCode, message: string, hint?: string): DstackError {
  const offset = node?.range?.[0] ?? 0;
  const location = ctx.src.locate(offset);
  return new DstackError(code, message, { location, lineText: ctx.src.lineText(location.line), hint });
}
