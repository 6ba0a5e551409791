/**
 * Two things clipanion does not do for us: it writes an option's value as `#0` (`--since #0`) in
 * every usage line, and for a command it does not know it prints every command, numbered. Here the
 * value gets a name a person can read, and an unknown command gets the closest known ones.
 */
/** What an option's value is, by its long name; `VALUE` for any other. */
const PLACEHOLDERS: Readonly<Record<string, string>> = {
  '--since': 'DURATION',
  '--older-than': 'DURATION',
  '--name': 'NAME',
  '--host': 'USER@HOST[:PORT]',
  '--identity': 'KEY_FILE',
  '--jobs-per-host': 'N',
  '--artifact': 'PATH',
};

/**
 * `--since #0` → `--since DURATION`, `-a,--artifact #0` → `-a,--artifact PATH`; the option table of
 * a command's help is aligned again for the longer names.
 */
export function namePlaceholders(text: string): string {
  const named = text.replace(/((?:-{1,2}[\w-]+,)*-{1,2}[\w-]+)((?: #\d+)+)/g, (_all, names: string, values: string) => {
    const long = names.split(',').find((n) => n.startsWith('--')) ?? names;
    const placeholder = PLACEHOLDERS[long] ?? 'VALUE';
    return `${names}${values.replace(/#\d+/g, placeholder)}`;
  });
  return named === text ? text : alignOptionTable(named);
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/** clipanion's option rows: two spaces, the option padded to the longest, four spaces, the description. */
function alignOptionTable(text: string): string {
  const lines = text.split('\n');
  const header = lines.findIndex((l) => l.replace(ANSI, '') === 'Options');
  if (header < 0) return text;
  const rows: { readonly at: number; readonly def: string; readonly desc: string; readonly bold: boolean }[] = [];
  for (let i = header + 2; i < lines.length; i++) {
    const plain = lines[i]!.replace(ANSI, '');
    const m = /^ {2}(-\S*(?: \S+)*) {2,}(.*)$/.exec(plain);
    if (!m) break;
    rows.push({ at: i, def: m[1]!, desc: m[2]!, bold: lines[i]!.includes('\x1b[1m') });
  }
  const width = Math.max(0, ...rows.map((r) => r.def.length));
  for (const r of rows) {
    const def = r.def.padEnd(width);
    lines[r.at] = `  ${r.bold ? `\x1b[1m${def}\x1b[22m` : def}    ${r.desc}`;
  }
  return lines.join('\n');
}

/**
 * The message for a command line that names no command, given the paths of every command
 * (`[['ps'], ['secrets', 'add'], …]`): which word is unknown, and the closest known one when a
 * typo away.
 */
export function unknownCommand(argv: readonly string[], paths: readonly (readonly string[])[]): { readonly message: string; readonly hint: string } {
  const top = [...new Set(paths.map((p) => p[0]).filter((w): w is string => w !== undefined && !w.startsWith('-')))];
  const group = paths.filter((p) => p.length > 1 && p[0] === argv[0]).map((p) => p[1]!);
  if (group.length > 0) {
    const word = argv[1];
    const subs = [...new Set(group)];
    const near = word === undefined ? [] : nearest(word, subs);
    return {
      message: word === undefined || word.startsWith('-') ? `\`dstack ${argv[0]}\` needs a subcommand` : `unknown command 'dstack ${argv[0]} ${word}'`,
      hint: near.length ? `did you mean ${orList(near.map((n) => `\`dstack ${argv[0]} ${n}\``))}?` : `one of: ${subs.map((s) => `dstack ${argv[0]} ${s}`).join(', ')}`,
    };
  }
  const word = argv[0] ?? '';
  const near = nearest(word, top);
  return {
    message: `unknown command '${word}'`,
    hint: near.length ? `did you mean ${orList(near.map((n) => `\`dstack ${n}\``))}? (every command: \`dstack --help\`)` : `commands: ${top.join(', ')}; see \`dstack --help\``,
  };
}

const orList = (xs: readonly string[]): string => (xs.length <= 1 ? (xs[0] ?? '') : `${xs.slice(0, -1).join(', ')} or ${xs.at(-1)}`);

/**
 * The known words closest to `word` when it is a typo away: edits counted with two neighbouring
 * letters swapped as one (`sp` is one from `ps`, as from `cp`: both are offered), at most one edit
 * in a word of up to three letters, two in a longer one.
 */
function nearest(word: string, words: readonly string[]): string[] {
  const allowed = word.length <= 3 ? 1 : 2;
  const scored = words.map((w) => ({ w, d: editDistance(word, w) })).filter((x) => x.d <= allowed);
  const best = Math.min(...scored.map((x) => x.d));
  return scored.filter((x) => x.d === best).map((x) => x.w);
}

/** Optimal string alignment: Levenshtein plus the swap of two neighbouring letters. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}
