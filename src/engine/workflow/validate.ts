/**
 * Runs a typanion schema over a YAML node's value and turns each typanion error (`.resources.gpu:
 * Expected …`) into a DstackError at the node the path leads to, so no raw typanion message ever
 * reaches the user without its file:line:col.
 */
import type * as t from 'typanion';
import { isMap, isScalar, isSeq, type Document, type Node } from 'yaml';
import type { DstackError } from '../errors.js';
import { MAX_ALIAS_EXPANSION, derefNode, type AliasTargets } from './aliases.js';
import { MISSING } from './schema.js';
import { nodeError, type SourceFile } from './source-file.js';
import { didYouMean, suggestion } from './source.js';

export { nodeError } from './source-file.js';

type Segment = string | number;

export interface ValidateContext {
  readonly src: SourceFile;
  readonly doc: Document;
  readonly aliases: AliasTargets;
  /** The node whose JS value was validated. */
  readonly root: Node;
  /** Known keys by path pattern (`resources`, `artifacts[]`), for "did you mean". */
  readonly known: Readonly<Record<string, readonly string[]>>;
  /** Appended after a field's name: " in workflow `train`". */
  readonly where: string;
  /** How to name the root itself in a message: "a workflow entry", "the file". */
  readonly rootLabel: string;
}

export function validate(schema: t.AnyStrictValidator, node: Node, ctx: Omit<ValidateContext, 'root'>): DstackError[] {
  const errors: string[] = [];
  let value: unknown;
  try {
    value = node.toJS(ctx.doc, { maxAliasCount: MAX_ALIAS_EXPANSION });
  } catch (e) {
    // The `yaml` package's guard against alias bombs ("Excessive alias count…"); undefined and
    // self-containing aliases were reported before (aliases.ts), so this is the expansion.
    if (!(e instanceof ReferenceError)) throw e;
    const first = [...ctx.aliases.keys()].find((a) => (a.range?.[0] ?? -1) >= (node.range?.[0] ?? 0)) ?? node;
    return [nodeError(ctx, first, 'DS0018', `YAML aliases here expand to too many values (more than ${MAX_ALIAS_EXPANSION} repeats)`,
      'write the values out instead of nesting aliases of aliases')];
  }
  if (schema(value, { errors })) return [];
  return errors.map((e) => toDstackError(e, { ...ctx, root: node }));
}

function toDstackError(raw: string, ctx: ValidateContext): DstackError {
  const { segments, message } = parseTypanionError(raw);
  const { node, parent, keyNode } = follow(ctx, segments);
  const display = segments.length ? `\`${displayPath(segments)}\`` : ctx.rootLabel;
  if (message.startsWith('Extraneous property')) {
    const key = String(segments[segments.length - 1]);
    const parentPath = segments.slice(0, -1);
    const known = ctx.known[pattern(parentPath)] ?? [];
    const best = didYouMean(key, known, 2);
    const inWhere = parentPath.length ? ` in \`${displayPath(parentPath)}\`${ctx.where}` : ctx.where;
    return nodeError(ctx, keyNode ?? node, 'DS0002', `unknown field \`${key}\`${inWhere}${suggestion(best)}`,
      best ? undefined : `known fields: ${known.join(', ')}`);
  }
  if (message === MISSING) {
    return nodeError(ctx, parent ?? node, 'DS0004', `missing required field ${display}${ctx.where}`);
  }
  const m = /^Expected (.*) \(got (.*)\)$/s.exec(message);
  const detail = m ? `expected ${m[1]}, got ${m[2]}` : message.charAt(0).toLowerCase() + message.slice(1);
  return nodeError(ctx, node, 'DS0003', `wrong type for ${display}${ctx.where}: ${detail}`);
}

/** Parses typanion's `<path>: <message>`, where path is `.`, `.key`, `[0]` and `["odd key"]` segments. */
export function parseTypanionError(raw: string): { segments: Segment[]; message: string } {
  const segments: Segment[] = [];
  let i = 0;
  for (;;) {
    const rest = raw.slice(i);
    let m: RegExpExecArray | null;
    if ((m = /^\.([A-Za-z_][A-Za-z0-9_]*)/.exec(rest))) segments.push(m[1]!);
    else if ((m = /^\[(\d+)\]/.exec(rest))) segments.push(Number(m[1]));
    else if ((m = /^\[("(?:[^"\\]|\\.)*")\]/.exec(rest))) segments.push(JSON.parse(m[1]!) as string);
    else if ((m = /^\.(?=[[:])/.exec(rest))) void 0;
    else break;
    i += m[0].length;
  }
  return { segments, message: raw.slice(i).replace(/^: /, '') };
}

/** Walks the YAML nodes along a typanion path; stops at the deepest node that exists. */
function follow(ctx: ValidateContext, segments: readonly Segment[]): { node: Node; parent?: Node; keyNode?: Node } {
  let node: Node = ctx.root;
  let parent: Node | undefined;
  let keyNode: Node | undefined;
  for (const seg of segments) {
    const cur: unknown = derefNode(ctx.aliases, node) ?? node;
    let next: unknown;
    keyNode = undefined;
    if (isMap(cur)) {
      const pair = cur.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      keyNode = isScalar(pair?.key) ? pair.key : undefined;
      next = pair?.value ?? keyNode;
    } else if (isSeq(cur) && typeof seg === 'number') {
      next = cur.items[seg];
    }
    if (!next || typeof next !== 'object') return { node, parent: node };
    parent = node;
    node = next as Node;
  }
  return { node, parent, keyNode };
}

const displayPath = (segments: readonly Segment[]): string =>
  segments.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? s : `.${s}`)).join('');

const pattern = (segments: readonly Segment[]): string =>
  segments.map((s, i) => (typeof s === 'number' ? '[]' : i === 0 ? s : `.${s}`)).join('');
