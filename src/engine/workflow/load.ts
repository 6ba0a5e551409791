/**
 * Finds the project and loads its workflow files and variables. Every file is parsed with the
 * `yaml` Document API so each node keeps its source range; all errors of all files are collected
 * and thrown together (`DstackErrors` when more than one).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isAlias, isMap, isSeq, parseDocument, type Document, type Node } from 'yaml';
import { DstackError, DstackErrors } from '../errors.js';
import type { Project, VariablesFile, WorkflowSpec } from '../types.js';
import { convertWorkflow, scalarText } from './convert.js';
import { KNOWN_KEYS, variablesFile, workflowItem, workflowsFile } from './schema.js';
import { VARIABLES_FILE, workflowFiles } from './files.js';
import { formatLocation } from './source.js';
import { SourceFile } from './source-file.js';
import { nodeError, validate } from './validate.js';

export { findProjectRoot } from './files.js';

async function parse(root: string, file: string): Promise<{ src: SourceFile; doc: Document; errors: DstackError[] }> {
  const src = new SourceFile(file, await readFile(join(root, file), 'utf8'));
  const doc = parseDocument(src.text, { lineCounter: src.lineCounter, prettyErrors: false });
  const errors = doc.errors.map((e) => {
    // An unclosed quote or bracket is found at the end of the input, past the last line written;
    // point at that last line instead of an empty one.
    const trimmed = src.text.trimEnd().length;
    const location = src.locate(e.pos[0] >= trimmed ? Math.max(0, trimmed - 1) : e.pos[0]);
    return new DstackError('DS0001', `malformed YAML: ${e.message}`, { location, lineText: src.lineText(location.line) });
  });
  return { src, doc, errors };
}

export async function loadProject(root: string): Promise<Project> {
  const files = await workflowFiles(root);
  if (files.length === 0)
    throw new DstackError('DS0012', `no workflows file in ${root}: expected .dstack/workflows.yaml or .dstack/workflows/*.yaml`, {
      hint: 'run `dstack init` to write a starter .dstack/workflows.yaml',
    });
  const errors: DstackError[] = [];
  const workflows = new Map<string, WorkflowSpec>();
  for (const file of files) {
    const before = errors.length;
    await loadFile(root, file, workflows, errors);
    // Within a file, report in reading order (schema and meaning errors are found in two passes).
    errors.splice(before, Infinity, ...errors.slice(before).sort(byPosition));
  }
  const variables = await loadVariables(root, errors);
  if (errors.length === 1) throw errors[0]!;
  if (errors.length > 1) throw new DstackErrors(errors);
  return { root, workflows, variables };
}

const byPosition = (a: DstackError, b: DstackError): number =>
  (a.location?.line ?? 0) - (b.location?.line ?? 0) || (a.location?.col ?? 0) - (b.location?.col ?? 0);

async function loadFile(root: string, file: string, workflows: Map<string, WorkflowSpec>, errors: DstackError[]): Promise<void> {
  const { src, doc, errors: parseErrors } = await parse(root, file);
  errors.push(...parseErrors);
  if (parseErrors.length || !doc.contents) return;
  const base = { src, doc, known: { '': ['workflows'] }, where: ` in ${file}`, rootLabel: 'the file' };
  const fileErrors = validate(workflowsFile, doc.contents, base);
  errors.push(...fileErrors);
  if (fileErrors.length) return;
  const list = isMap(doc.contents) ? doc.contents.get('workflows', true) : undefined;
  for (const raw of isSeq(list) ? (list.items as Node[]) : []) {
    const item = isAlias(raw) ? (raw.resolve(doc) ?? raw) : raw;
    const nameHint = isMap(item) ? scalarText(item.get('name', true) as Node | undefined) : '';
    const shapeErrors = validate(workflowItem, item, {
      src, doc, known: KNOWN_KEYS, rootLabel: 'a workflow entry', where: nameHint ? ` in workflow \`${nameHint}\`` : '',
    });
    errors.push(...shapeErrors);
    if (shapeErrors.length || !isMap(item)) continue;
    const { spec, errors: specErrors } = convertWorkflow({ src, doc }, item);
    errors.push(...specErrors);
    if (!spec) continue;
    const first = workflows.get(spec.name);
    if (first) {
      errors.push(nodeError({ src }, item, 'DS0005',
        `workflow \`${spec.name}\` is defined twice: at ${formatLocation(first.location)} and at ${formatLocation(spec.location)}`,
        'rename or remove one of them'));
    } else workflows.set(spec.name, spec);
  }
}

const EMPTY_VARIABLES: VariablesFile = { global: {}, perWorkflow: {}, locations: new Map() };

/** `.dstack/variables.yaml`: `variables: {global: {k: v}, <workflow>: {k: v}}`, values kept as written. */
async function loadVariables(root: string, errors: DstackError[]): Promise<VariablesFile> {
  const file = VARIABLES_FILE;
  if (!existsSync(join(root, file))) return EMPTY_VARIABLES;
  const { src, doc, errors: parseErrors } = await parse(root, file);
  errors.push(...parseErrors);
  if (parseErrors.length || !doc.contents) return EMPTY_VARIABLES;
  const shapeErrors = validate(variablesFile, doc.contents, { src, doc, known: { '': ['variables'] }, where: ` in ${file}`, rootLabel: 'the file' });
  errors.push(...shapeErrors);
  if (shapeErrors.length) return EMPTY_VARIABLES;
  const sections = isMap(doc.contents) ? doc.contents.get('variables', true) : undefined;
  const global: Record<string, string> = {};
  const perWorkflow: Record<string, Record<string, string>> = {};
  const locations = new Map<string, { file: string; line: number; col: number }>();
  for (const section of isMap(sections) ? sections.items : []) {
    const sectionName = scalarText(section.key as Node);
    const target = sectionName === 'global' ? global : (perWorkflow[sectionName] ??= {});
    for (const pair of isMap(section.value) ? section.value.items : []) {
      const name = scalarText(pair.key as Node);
      target[name] = scalarText(pair.value as Node | undefined);
      locations.set(`${sectionName}.${name}`, src.locate((pair.key as Node).range?.[0] ?? 0));
    }
  }
  return { global, perWorkflow, locations };
}
