/**
 * YAML anchors and aliases (`&env` … `*env`), bounded. An alias that names no anchor, and more
 * aliases than any real workflows file needs, are located errors (DS0018) before anything reads
 * the document: they ended in an internal error (exit 70) before (issue 8). The expansion itself
 * ("billion laughs") is bounded where values are built, by the `yaml` package's `maxAliasCount`
 * (see validate.ts).
 *
 * The target of each alias is found once, in one walk: `Alias.resolve(doc)` walks the whole
 * document at every call, which made reading many aliases quadratic.
 */
import { isAlias, isScalar, visit, type Alias, type Document, type Node } from 'yaml';
import type { DstackError } from '../errors.js';
import { nodeError, type SourceFile } from './source-file.js';

/** Aliases in one file; a handful is typical (a shared `env:`), thousands is an attack or a mistake. */
export const MAX_ALIASES = 100;

/** Bounds expansion where values are built (`toJS`): the `yaml` package's own guard against alias bombs. */
export const MAX_ALIAS_EXPANSION = 100;

export type AliasTargets = ReadonlyMap<Alias, Node>;

export function resolveAliases(doc: Document, src: SourceFile): { targets: AliasTargets; errors: DstackError[] } {
  const targets = new Map<Alias, Node>();
  const anchors = new Map<string, Node>();
  const errors: DstackError[] = [];
  // No `*`, no alias: skip the walk (most files; a 5,000-workflow file spends ~5% of its load here).
  if (!src.text.includes('*')) return { targets, errors };
  let count = 0;
  visit(doc, {
    Node: (_key, node, path) => {
      if (isAlias(node)) {
        count += 1;
        if (count === MAX_ALIASES + 1) {
          errors.push(nodeError({ src }, node, 'DS0018', `more than ${MAX_ALIASES} YAML aliases in ${src.file}`,
            'write the values out, or share fewer of them with anchors (&name) and aliases (*name)'));
        }
        const target = anchors.get(node.source);
        if (target && (path as readonly unknown[]).includes(target)) {
          if (count <= MAX_ALIASES) errors.push(nodeError({ src }, node, 'DS0018', `YAML alias \`*${node.source}\` is inside the value it names`, 'an alias cannot repeat a value that contains it'));
        } else if (target) targets.set(node, target);
        else if (count <= MAX_ALIASES) {
          errors.push(nodeError({ src }, node, 'DS0018', `YAML alias \`*${node.source}\` names no anchor before it`,
            `define \`&${node.source}\` on a value above this line, or write the value here`));
        }
        return undefined;
      }
      // An anchor applies from where it is written on; a later one with the same name replaces it.
      if (node.anchor) anchors.set(node.anchor, node);
      return undefined;
    },
  });
  return { targets, errors };
}

/** A node with an alias replaced by its target; `key:` with nothing after it (null) counts as absent. */
export function derefNode(targets: AliasTargets, n: unknown): Node | undefined {
  const v = isAlias(n) ? targets.get(n) : n;
  if (!v || typeof v !== 'object' || (isScalar(v) && v.value === null)) return undefined;
  return v as Node;
}
