/**
 * A small, seeded generator of malformed workflow files for the fuzz test: it starts from our own
 * 0.7-style corpus (test/fixtures/compat-0.7) and applies a few mutations each — hostile values,
 * YAML's special characters, aliases and bombs, deletions, duplicated or re-indented lines, keys
 * swapped for known and unknown ones, two files spliced. The same seed gives the same cases.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** mulberry32: a tiny PRNG with a 32-bit state, enough to make cases reproducible from a seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Rng {
  readonly next: () => number;
  int(n: number): number;
  pick<T>(xs: readonly T[]): T;
}

export function rng(seed: number): Rng {
  const next = prng(seed);
  return { next, int: (n) => Math.floor(next() * n), pick: (xs) => xs[Math.floor(next() * xs.length)]! };
}

const HOSTILE_VALUES = [
  '1e9', '-1', '1e100', '99999999999999999999999', '0', '0.0000001MB', '.inf', '.nan', '-.inf', '0x10', '0o7', '1_000',
  '""', "''", '~', 'null', 'true', 'yes', 'no', 'on', '[]', '{}', '[[[]]]', '{a: {b: {c: 1}}}',
  'a b c', 'UPPER/Case:Tag', '${{ secrets.X }}', '${{', '}}', '$${{ x }}', '${{ run.args }}', '${{ variables.nope }}', '${{ nope.deeper }}',
  '../../etc', '/', '/proc/self', '~/x', '~root/x', '/opt/conda/envs/x', './a/../../b',
  '"\\u0000"', '"\\t\\r\\n"', '"\\ud800"', 'é', '😀', '\u202e', 'K80', '16GB', '8XB', '1.5 GiB', '3.10',
  '!!binary aGk=', '!!str 1', '!custom x', '*undefined', '&anchor x', '|\n  block', '>\n  folded',
];
const TOKENS = ['&a ', '*a', '[', ']', '{', '}', ': ', '- ', '"', "'", '\t', '\n', '#', '|', '>', '? ', ',', '!!map ', '%YAML 1.2\n', '---\n', '...\n', '\0', '\uFEFF', '${{', '}}', '$$', '\\', '@', '`'];
const KEYS = ['name', 'provider', 'image', 'commands', 'setup', 'deps', 'artifacts', 'cache', 'env', 'ports', 'working_dir', 'python', 'inputs', 'resources', 'cpu', 'memory', 'gpu', 'shm_size', 'interruptible', 'local', 'remote', 'registry_auth', 'workflow', 'tag', 'path', 'mount', 'help', 'entrypoint', 'workflows', 'variables', '<<', 'comands', '__proto__', 'constructor'];

/** The seed files: our own corpus (each file, and the multi-file project's files). */
export function seedCorpus(dir: string): string[] {
  const out: string[] = [];
  for (const f of readdirSync(dir).sort()) if (f.endsWith('.yaml')) out.push(readFileSync(join(dir, f), 'utf8'));
  const wf = join(dir, 'project/.dstack/workflows');
  for (const f of readdirSync(wf).sort()) out.push(readFileSync(join(wf, f), 'utf8'));
  return out;
}

type Mutation = (text: string, r: Rng, seeds: readonly string[]) => string;

const lines = (t: string): string[] => t.split('\n');

const MUTATIONS: readonly Mutation[] = [
  // A value written on its key's line (`key: value`, `- value`) replaced by a hostile one: the
  // file still parses, mostly, so the checks behind the parser are what is exercised.
  (t, r) => {
    const ls = lines(t);
    const at = (l: string): RegExpExecArray | null => /^(\s*(?:-\s+)?[\w.-]+:)\s+\S/.exec(l) ?? /^(\s*-)\s+[^:\s][^:]*$/.exec(l);
    const candidates = ls.map((l, i) => (at(l) ? i : -1)).filter((i) => i >= 0);
    if (candidates.length === 0) return t;
    const i = r.pick(candidates);
    ls[i] = `${at(ls[i]!)![1]} ${r.pick(HOSTILE_VALUES)}`;
    return ls.join('\n');
  },
  // A YAML special character or token at a random place.
  (t, r) => {
    const at = r.int(t.length + 1);
    return t.slice(0, at) + r.pick(TOKENS) + t.slice(at);
  },
  // A span deleted.
  (t, r) => {
    const at = r.int(t.length);
    return t.slice(0, at) + t.slice(at + 1 + r.int(40));
  },
  // A line duplicated (a name given twice, a key twice).
  (t, r) => {
    const ls = lines(t);
    const i = r.int(ls.length);
    ls.splice(i, 0, ls[i]!);
    return ls.join('\n');
  },
  // A line re-indented.
  (t, r) => {
    const ls = lines(t);
    const i = r.int(ls.length);
    ls[i] = r.next() < 0.5 ? ls[i]!.replace(/^ {1,2}/, '') : `${' '.repeat(1 + r.int(3))}${ls[i]}`;
    return ls.join('\n');
  },
  // A key swapped for another, known or not.
  (t, r) => t.replace(/([A-Za-z_]+):/g, (m, k: string) => (r.next() < 0.15 ? `${r.pick(KEYS)}:` : m)),
  // Two files spliced at random lines.
  (t, r, seeds) => {
    const other = lines(r.pick(seeds));
    const ls = lines(t);
    return [...ls.slice(0, r.int(ls.length + 1)), ...other.slice(r.int(other.length))].join('\n');
  },
  // Aliases: a bomb, an undefined one, or one inside its own anchor.
  (t, r) => {
    const kind = r.int(3);
    if (kind === 0) return `l0: &l0 [x,x,x,x,x,x,x,x,x,x]\n${Array.from({ length: 6 }, (_, i) => `l${i + 1}: &l${i + 1} [${Array(10).fill(`*l${i}`).join(',')}]`).join('\n')}\n${t}`;
    if (kind === 1) return t.replace(/: ([^\n]+)/, ': *nowhere');
    return t.replace(/workflows:/, 'workflows: &w').replace(/deps:\n(\s+)- /, 'deps: *w\n$1- ');
  },
  // Nesting deeper than a parser's stack, or long values.
  (t, r) => {
    const kind = r.int(3);
    if (kind === 0) return t.replace(/commands:/, `commands: ${'['.repeat(2000 + r.int(3000))}`);
    if (kind === 1) return t.replace(/name: ([^\n]+)/, `name: ${'n'.repeat(100 + r.int(5000))}`);
    return t.replace(/(image|python): ([^\n]+)|commands:/, `image: ${'x'.repeat(1000 + r.int(100_000))}\n    commands:`);
  },
  // Many workflows: a long chain, or a file over the size cap.
  (t, r) => {
    if (r.next() < 0.5) {
      const n = 200 + r.int(800);
      const ws = Array.from({ length: n }, (_, i) => `  - name: c${i}\n    commands: [echo]${i ? `\n    deps: [c${i - 1}]` : ''}`);
      return `${t}\n${t.includes('workflows:') ? '' : 'workflows:\n'}${ws.join('\n')}\n`;
    }
    return `${t}\n# ${'pad '.repeat(300_000)}\n`;
  },
];

/**
 * How often each mutation is drawn, in MUTATIONS' order: values and keys most (they reach the
 * checks behind the parser), the parser-breaking and the expensive ones less.
 */
const WEIGHTS = [8, 2, 2, 2, 2, 4, 2, 2, 1, 1];
const DRAW = WEIGHTS.flatMap((w, i) => Array<number>(w).fill(i));

/** One malformed file from a seed file: 1 to 3 mutations. */
export function mutate(seed: string, r: Rng, seeds: readonly string[]): { text: string; mutations: number[] } {
  let text = seed;
  const applied: number[] = [];
  const n = 1 + r.int(3);
  for (let i = 0; i < n; i++) {
    const m = r.pick(DRAW);
    applied.push(m);
    text = MUTATIONS[m]!(text, r, seeds);
  }
  return { text, mutations: applied };
}

/** The workflow to ask for: the first `name:` in the file, as written, or `a`. */
export function targetOf(text: string): string {
  const m = /name:\s*([A-Za-z0-9._-]{1,200})/.exec(text);
  return m ? m[1]! : 'a';
}
