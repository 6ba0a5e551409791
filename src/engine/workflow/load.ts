/**
 * Finds the project and loads its workflow files and variables. Every file is read safely (read.ts)
 * and parsed with the `yaml` Document API so each node keeps its source range. Problems do not stop
 * the load: each becomes a Diagnostic scoped to what it takes down — one workflow, a file that
 * could not be read, or (a broken variables file) the whole project — and the project comes back
 * with every workflow that loaded (issue 12: one broken workflow never blocks the rest). Only a
 * project with no workflows file at all is an error here.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { isMap, isSeq, parseDocument, type Document, type Node } from 'yaml';
import { toDiagnostic, workflowScope } from '../diagnostics.js';
import { DstackError, type SourceLocation } from '../errors.js';
import type { Diagnostic, DiagnosticScope, Project, VariablesFile, WorkflowSpec } from '../types.js';
import { derefNode, resolveAliases, type AliasTargets } from './aliases.js';
import { checkProject } from './check.js';
import { convertWorkflow, scalarText } from './convert.js';
import { KNOWN_KEYS, variablesFile, workflowItem, workflowsFile } from './schema.js';
import { VARIABLES_FILE, workflowFiles } from './files.js';
import { readProjectFile } from './read.js';
import { formatLocation, shown } from './source.js';
import { SourceFile, nodeError } from './source-file.js';
import { validate } from './validate.js';

export { findProjectRoot } from './files.js';

interface Parsed {
  readonly src: SourceFile;
  readonly doc: Document;
  readonly aliases: AliasTargets;
}

/** A file read and parsed, or the errors that make it unreadable (its workflows are then unknown). */
function parse(root: string, file: string): { parsed?: Parsed; errors: DstackError[]; doc?: Document } {
  const read = readProjectFile(root, file);
  if (!read.ok) return { errors: [new DstackError('DS0017', `${file} cannot be read: ${read.reason}`, { hint: read.hint })] };
  const src = new SourceFile(file, read.text);
  const doc = parseDocument(src.text, { lineCounter: src.lineCounter, prettyErrors: false });
  const errors = doc.errors.map((e) => {
    // An unclosed quote or bracket is found at the end of the input, past the last line written;
    // point at that last line instead of an empty one.
    const trimmed = src.text.trimEnd().length;
    const location = src.locate(e.pos[0] >= trimmed ? Math.max(0, trimmed - 1) : e.pos[0]);
    // The parser reports nesting deeper than the stack allows as this RangeError's message.
    const message = /Maximum call stack size exceeded/.test(e.message) ? 'values nested too deeply' : e.message.split('\n')[0]!;
    return new DstackError('DS0001', `malformed YAML: ${message}`, { location, lineText: src.lineText(location.line) });
  });
  if (errors.length) return { errors, doc };
  const aliases = resolveAliases(doc, src);
  if (aliases.errors.length) return { errors: aliases.errors, doc };
  return { parsed: { src, doc, aliases: aliases.targets }, errors: [] };
}

export async function loadProject(root: string): Promise<Project> {
  const files = await workflowFiles(root);
  if (files.length === 0)
    throw new DstackError('DS0012', `no workflows file in ${root}: expected .dstack/workflows.yaml or .dstack/workflows/*.yaml`, {
      hint: 'run `dstack init` to write a starter .dstack/workflows.yaml',
    });
  const diagnostics: Diagnostic[] = [];
  const workflows = new Map<string, WorkflowSpec>();
  const definedAt = new Map<string, SourceLocation>();
  for (const file of files) {
    const before = diagnostics.length;
    loadFile(root, file, { workflows, definedAt, diagnostics });
    // Within a file, report in reading order (schema and meaning problems are found in two passes).
    diagnostics.splice(before, Infinity, ...diagnostics.slice(before).sort(byPosition));
  }
  const variables = loadVariables(root, diagnostics);
  const project: Project = { root, workflows, variables, diagnostics };
  checkProject(project, diagnostics);
  return project;
}

const byPosition = (a: Diagnostic, b: Diagnostic): number =>
  (a.location?.line ?? 0) - (b.location?.line ?? 0) || (a.location?.col ?? 0) - (b.location?.col ?? 0);

interface Acc {
  readonly workflows: Map<string, WorkflowSpec>;
  /** Where each name was first written, valid or not: a name given twice is an error either way. */
  readonly definedAt: Map<string, SourceLocation>;
  readonly diagnostics: Diagnostic[];
}

function loadFile(root: string, file: string, acc: Acc): void {
  const { parsed, errors, doc } = parse(root, file);
  const fileScope = (names: readonly string[]): DiagnosticScope => ({ kind: 'file', file, workflows: names });
  if (!parsed) {
    const names = doc ? namesIn(doc) : [];
    acc.diagnostics.push(...errors.map((e) => toDiagnostic(e, fileScope(names))));
    return;
  }
  const { src, aliases } = parsed;
  if (!parsed.doc.contents) return;
  const base = { src, doc: parsed.doc, aliases, known: { '': ['workflows'] }, where: ` in ${file}`, rootLabel: 'the file' };
  const fileErrors = validate(workflowsFile, parsed.doc.contents, base);
  if (fileErrors.length) {
    acc.diagnostics.push(...fileErrors.map((e) => toDiagnostic(e, fileScope(namesIn(parsed.doc)))));
    return;
  }
  const list = isMap(parsed.doc.contents) ? parsed.doc.contents.get('workflows', true) : undefined;
  for (const raw of isSeq(list) ? (list.items as Node[]) : []) {
    const item = derefNode(aliases, raw) ?? raw;
    const nameNode = isMap(item) ? derefNode(aliases, item.get('name', true)) : undefined;
    const name = scalarText(nameNode);
    const scope: DiagnosticScope = name ? workflowScope(name) : { kind: 'entry' };
    const push = (es: readonly DstackError[], severity: Diagnostic['severity'] = 'error'): void =>
      void acc.diagnostics.push(...es.map((e) => toDiagnostic(e, scope, severity)));
    if (name && nameNode) {
      const first = acc.definedAt.get(name);
      const here = src.locate(item.range?.[0] ?? 0);
      if (first) {
        push([nodeError({ src }, item, 'DS0005', `workflow \`${shown(name)}\` is defined twice: at ${formatLocation(first)} and at ${formatLocation(here)}`,
          'rename or remove one of them')]);
        continue;
      }
      acc.definedAt.set(name, here);
    }
    const shapeErrors = validate(workflowItem, item, {
      src, doc: parsed.doc, aliases, known: KNOWN_KEYS, rootLabel: 'a workflow entry', where: name ? ` in workflow \`${shown(name)}\`` : '',
    });
    push(shapeErrors);
    if (shapeErrors.length || !isMap(item)) continue;
    const { spec, errors: specErrors, warnings } = convertWorkflow({ src, aliases }, item);
    push(specErrors);
    push(warnings, 'warning');
    if (spec) acc.workflows.set(spec.name, spec);
  }
}

/** The workflow names that can be made out of a file that failed to load, for messages; never throws. */
function namesIn(doc: Document): string[] {
  try {
    const list = isMap(doc.contents) ? doc.contents.get('workflows', true) : undefined;
    if (!isSeq(list)) return [];
    const names: string[] = [];
    for (const item of list.items) {
      const name = isMap(item) ? scalarText(item.get('name', true) as Node | undefined) : '';
      if (name && !names.includes(name)) names.push(name);
    }
    return names;
  } catch {
    // A document too broken to walk: no names, the file's error is reported all the same.
    return [];
  }
}

const EMPTY_VARIABLES: VariablesFile = { global: {}, perWorkflow: {}, locations: new Map() };

/**
 * `.dstack/variables.yaml`: `variables: {global: {k: v}, <workflow>: {k: v}}`, values kept as
 * written. Any workflow may read its values, so a problem in it blocks every run.
 */
function loadVariables(root: string, diagnostics: Diagnostic[]): VariablesFile {
  const file = VARIABLES_FILE;
  if (!existsSync(join(root, file))) return EMPTY_VARIABLES;
  const project: DiagnosticScope = { kind: 'project' };
  const { parsed, errors } = parse(root, file);
  diagnostics.push(...errors.map((e) => toDiagnostic(e, project)));
  if (!parsed?.doc.contents) return EMPTY_VARIABLES;
  const { src, doc, aliases } = parsed;
  const shapeErrors = validate(variablesFile, doc.contents!, { src, doc, aliases, known: { '': ['variables'] }, where: ` in ${file}`, rootLabel: 'the file' });
  diagnostics.push(...shapeErrors.map((e) => toDiagnostic(e, project)));
  if (shapeErrors.length) return EMPTY_VARIABLES;
  const sections = isMap(doc.contents) ? derefNode(aliases, doc.contents.get('variables', true)) : undefined;
  const global: Record<string, string> = {};
  const perWorkflow: Record<string, Record<string, string>> = {};
  const locations = new Map<string, SourceLocation>();
  for (const section of isMap(sections) ? sections.items : []) {
    const sectionName = scalarText(section.key as Node);
    if (sectionName !== 'global' && !Object.hasOwn(perWorkflow, sectionName)) setOwn(perWorkflow, sectionName, {});
    const target = sectionName === 'global' ? global : perWorkflow[sectionName]!;
    const values = derefNode(aliases, section.value);
    for (const pair of isMap(values) ? values.items : []) {
      const name = scalarText(pair.key as Node);
      setOwn(target, name, scalarText(derefNode(aliases, pair.value)));
      locations.set(`${sectionName}.${name}`, src.locate((pair.key as Node).range?.[0] ?? 0));
    }
  }
  return { global, perWorkflow, locations };
}

/** Sets an own property whatever the name: `__proto__` in a YAML file must not reach a prototype. */
function setOwn<T>(o: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
}
