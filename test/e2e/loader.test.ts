/**
 * The loader through the built binary (issues 8 and 12): files that are not files, YAML that
 * expands or points nowhere, values no machine could satisfy — each exit 2 with its code, place
 * and exact text, nothing on stdout, never a trace or a hang — and a broken workflow that stays
 * with itself: the others run, with one warning; `dstack run` lists what can run.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, assertNoCrash, createProject, type CliResult, type Project } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';

async function inProject(workflows: string | undefined, args: readonly string[], prepare?: (p: Project) => void): Promise<CliResult> {
  const p = await createProject(workflows === undefined ? { files: { '.dstack/.keep': '' } } : { workflows });
  try {
    prepare?.(p);
    return await p.run(args, { timeoutMs: 30_000 });
  } finally {
    await p.cleanup();
  }
}

function expectExactly(r: CliResult, stderr: string): void {
  assertNoCrash(r);
  assert.is(r.stdout, '', 'errors go to stderr, nothing to stdout');
  assert.fixture(r.stderr, stderr);
  assert.is(r.exitCode, 2, `exit code; stderr:\n${r.stderr}`);
}

const t = (name: string, fn: () => Promise<void>, ms = 30_000): void => test(name, withTimeout(ms, fn));
const wf = (body: string): string => `workflows:\n  - name: a\n    image: ${IMAGE}\n    commands: [echo]\n${body}`;

t('a FIFO, a directory and a symlink to /dev/zero as the workflows file: DS0017, no hang, exit 2', async () => {
  const cases: [string, (file: string) => void][] = [
    ['a FIFO', (f) => execFileSync('mkfifo', [f])],
    ['a directory', (f) => mkdirSync(f)],
    ['a device', (f) => symlinkSync('/dev/zero', f)],
  ];
  for (const [what, make] of cases) {
    const r = await inProject(undefined, ['run', 'a', '--dry-run'], (p) => make(join(p.dir, '.dstack/workflows.yaml')));
    expectExactly(r, [
      `error DS0017: .dstack/workflows.yaml cannot be read: it is ${what}`,
      '  = make .dstack/workflows.yaml a regular file, or remove it',
      '',
      'error DS0006: unknown workflow `a`',
      '  = it may be in a file that could not be read (above)',
      '',
    ].join('\n'));
  }
});

t('an alias bomb and an undefined alias: DS0018 at the alias (a name made out of the file gets its error alone)', async () => {
  const bomb = 'x: &x [a,a,a,a,a,a,a,a,a]\ny: &y [*x,*x,*x,*x,*x,*x,*x,*x,*x]\nz: &z [*y,*y,*y,*y,*y,*y,*y,*y,*y]\nworkflows: [*z]\n';
  expectExactly(await inProject(bomb, ['run', 'a', '--dry-run']), [
    'error DS0018: YAML aliases here expand to too many values (more than 100 repeats)',
    '  --> .dstack/workflows.yaml:2:8',
    '  |',
    '2 | y: &y [*x,*x,*x,*x,*x,*x,*x,*x,*x]',
    '  |        ^',
    '  = write the values out instead of nesting aliases of aliases',
    '',
    'error DS0006: unknown workflow `a`',
    '  = it may be in a file that could not be read (above)',
    '',
  ].join('\n'));
  const r = await inProject('workflows:\n  - name: a\n    image: *img\n', ['run', 'a', '--dry-run']);
  expectExactly(r, [
    'error DS0018: YAML alias `*img` names no anchor before it',
    '  --> .dstack/workflows.yaml:3:12',
    '  |',
    '3 |     image: *img',
    '  |            ^',
    '  = define `&img` on a value above this line, or write the value here',
    '',
  ].join('\n'));
});

t('values no machine could satisfy: DS0019 with the bound, at the value', async () => {
  const cases: [string, string, string][] = [
    ['    ports: 1e9\n', '`ports` in workflow `a` is out of bounds: the most is 100\n  --> .dstack/workflows.yaml:5:12\n  |\n5 |     ports: 1e9\n  |            ^\n  = the number of ports to publish, e.g. `ports: 1`\n', ''],
    ['    resources:\n      cpu: 1e100\n', '`resources.cpu` in workflow `a` is out of bounds: the most is 1024\n  --> .dstack/workflows.yaml:6:12\n  |\n6 |       cpu: 1e100\n  |            ^\n  = a number of CPUs from 0.01 to 1024\n', ''],
    ['    resources:\n      memory: 0.0000001MB\n', "`resources.memory` in workflow `a` is out of bounds: the least is 6MiB\n  --> .dstack/workflows.yaml:6:15\n  |\n6 |       memory: 0.0000001MB\n  |               ^\n  = a size from 6MiB (Docker's least) to 32TiB, e.g. 16GB\n", ''],
    ['    resources:\n      gpu: 99999999999999999999999\n', '`resources.gpu` in workflow `a` is out of bounds: the most is 16\n  --> .dstack/workflows.yaml:6:12\n  |\n6 |       gpu: 99999999999999999999999\n  |            ^\n  = a number of GPUs from 0 to 16\n', ''],
  ];
  for (const [body, text] of cases) expectExactly(await inProject(wf(body), ['run', 'a', '--dry-run']), `error DS0019: ${text}`);
});

t('image names Docker refuses, a secret in an image, a name too long for a folder: exit 2 at the place', async () => {
  const at = (line: number, col: number, text: string): string => `  --> .dstack/workflows.yaml:${line}:${col}\n  |\n${line} | ${text}\n  | ${' '.repeat(col - 1)}^\n`;
  const image = (value: string): string => `workflows:\n  - name: a\n    image: ${value}\n    commands: [echo]\n`;
  expectExactly(await inProject(image('""'), ['run', 'a']), `error DS0020: invalid image \`\` in workflow \`a\`: the image name is empty\n${at(3, 12, '    image: ""')}`);
  expectExactly(await inProject(image('a b c'), ['run', 'a']), `error DS0020: invalid image \`a b c\` in workflow \`a\`: an image name cannot contain spaces\n${at(3, 12, '    image: a b c')}`);
  expectExactly(await inProject(image('"${{ secrets.TOKEN }}"'), ['run', 'a']),
    `error DS0021: \`image\` in workflow \`a\` reads a secret; image names are stored and shown, so they cannot hold one\n${at(3, 12, '    image: "${{ secrets.TOKEN }}"')}  = put the registry credentials under \`registry_auth:\` (username and password may read secrets)\n`);
  const long = 'w'.repeat(5000);
  const r = await inProject(`workflows:\n  - name: ${long}\n    image: ${IMAGE}\n    commands: [echo]\n`, ['run', long, '--dry-run']);
  assertNoCrash(r);
  assert.is(r.exitCode, 2);
  assert.ok(r.stderr.startsWith(`error DS0019: workflow name \`${'w'.repeat(57)}…\` is 5000 characters long; the most is 128\n  --> .dstack/workflows.yaml:2:11\n`), r.stderr.slice(0, 300));
});

const PROJECT = `workflows:
  - name: ok
    image: ${IMAGE}
    commands: [echo ok]
  - name: ide
    provider: code
  - name: after-ide
    image: ${IMAGE}
    deps: [ide]
    commands: [echo]
`;

t('a broken workflow stays with itself: others plan with one warning, it and its dependents are refused', async () => {
  const p = await createProject({ workflows: PROJECT, files: { '.dstack/workflows/bad.yaml': 'workflows:\n  - name: lost\n    commands: [echo\n' } });
  try {
    const ok = await p.run(['run', 'ok', '--dry-run']);
    assertNoCrash(ok);
    assert.is(ok.exitCode, 0, ok.stderr);
    assert.is(ok.stdout, `1. ok  runs\n   image:    ${IMAGE}\n   commands: echo ok\n`);
    assert.fixture(ok.stderr, [
      'warning: 2 errors elsewhere in this project, in workflows this run does not need:',
      '  .dstack/workflows.yaml:6:15 DS0027 provider `code` in workflow `ide` is a dev environment, which this dstack cannot run yet; the workflow is not runnable',
      '  .dstack/workflows/bad.yaml:3:19 DS0001 malformed YAML: Flow sequence in block collection must be sufficiently indented and end with a ]',
      '  (`dstack run` with no workflow lists what can run and what cannot)',
      '',
    ].join('\n'));
    const after = await p.run(['run', 'after-ide']);
    expectExactly(after, [
      'error DS0027: provider `code` in workflow `ide` is a dev environment, which this dstack cannot run yet; the workflow is not runnable',
      '  --> .dstack/workflows.yaml:6:15',
      '  |',
      '6 |     provider: code',
      '  |               ^',
      '  = the rest of the project runs; for a server of your own, use `provider: bash`, `ports: 1`, and start it on 0.0.0.0:$PORT_0',
      '',
      'error DS0023: workflow `after-ide` cannot run: it depends on `ide`, which has errors (above)',
      '  = fix those, or run a workflow that does not need them',
      '',
    ].join('\n'));
    const lost = await p.run(['run', 'lost', '--dry-run']);
    expectExactly(lost, [
      'error DS0001: malformed YAML: Flow sequence in block collection must be sufficiently indented and end with a ]',
      '  --> .dstack/workflows/bad.yaml:3:19',
      '  |',
      '3 |     commands: [echo',
      '  |                   ^',
      '',
    ].join('\n'));
    expectExactly(await p.run(['run']), [
      'error DS0100: which workflow? `dstack run` needs one of:',
      '  ok',
      'these cannot run:',
      '  after-ide — DS0023 workflow `after-ide` cannot run: it depends on `ide`, which has errors',
      '  ide — .dstack/workflows.yaml:6:15 DS0027 provider `code` in workflow `ide` is a dev environment, which this dstack cannot run yet; the workflow is not runnable',
      '  lost — .dstack/workflows/bad.yaml:3:19 DS0001 malformed YAML: Flow sequence in block collection must be sufficiently indented and end with a ]',
      '  = for example: dstack run NAME --dry-run --explain',
      '',
    ].join('\n'));
    // The parsed-project cache keeps the diagnostics: the same words on a second run.
    const again = await p.run(['run', 'ok', '--dry-run']);
    assert.is(again.stderr, ok.stderr);
  } finally {
    await p.cleanup();
  }
});

t('a flag one edit away from a variable: DS0024 with did-you-mean; after -- it is an argument', async () => {
  const p = await createProject({
    workflows: `workflows:\n  - name: a\n    image: ${IMAGE}\n    commands:\n      - echo \${{ seed }} \${{ run.args }}\n`,
    variables: 'variables:\n  global:\n    seed: 1\n',
  });
  try {
    expectExactly(await p.run(['run', 'a', '--sede', '7', '--dry-run']), [
      'error DS0024: unknown argument `--sede`; did you mean `--seed` (the variable `seed`)?',
      '  = to pass `--sede` to the workflow as it is, put it after `--`: dstack run WORKFLOW -- --sede …',
      '',
    ].join('\n'));
    const ok = await p.run(['run', 'a', '--seed', '7', '--dry-run', '--', '--sede', '7']);
    assert.is(ok.exitCode, 0, ok.stderr);
    assert.ok(ok.stdout.includes('   commands: echo 7 --sede 7\n'), ok.stdout);
  } finally {
    await p.cleanup();
  }
});

t('resources.remote: true with no remote configured says so; local: true plans locally', async () => {
  expectExactly(await inProject(wf('    resources:\n      remote: true\n'), ['run', 'a', '--dry-run']), [
    'error DS0211: workflow `a` asks to run remotely (`resources.remote: true`), but no remote is configured',
    '  = add one: dstack config ssh --name NAME --host user@host[:port], or dstack config aws --name NAME --region REGION --bucket BUCKET',
    '',
  ].join('\n'));
  const r = await inProject(wf('    resources:\n      local: true\n'), ['run', 'a', '--dry-run']);
  assert.is(r.exitCode, 0, r.stderr);
});

t('with a default remote configured, local: true runs locally and remote: true goes to the remote', async () => {
  const p = await createProject({
    workflows: `workflows:\n  - name: here\n    image: ${IMAGE}\n    commands: [echo ran-here]\n    resources: {local: true}\n  - name: there\n    image: ${IMAGE}\n    commands: [echo]\n    resources: {remote: true}\n`,
  });
  try {
    // Nothing listens on port 9 and the hermetic home has no key: reaching the remote fails, which shows it was chosen.
    assert.is((await p.run(['config', 'ssh', '--name', 'pool', '--host', 'root@127.0.0.1:9', '--default'])).exitCode, 0);
    const here = await p.run(['run', 'here']);
    assert.is(here.exitCode, 0, here.stderr);
    assert.is(here.stdout, 'ran-here\n');
    const there = await p.run(['run', 'there']);
    assertNoCrash(there);
    assert.is(there.exitCode, 3, there.stderr);
    assert.match(there.stderr, /^error DS020[56]: .*root@127\.0\.0\.1:9/);
  } finally {
    await p.cleanup();
  }
});

t('an artifact outside /workflow: a dry run plans it, marked, with no warning (runs save it: envs.test.ts)', async () => {
  const p = await createProject({ workflows: wf('    artifacts: [/opt/venv]\n') });
  try {
    const dry = await p.run(['run', 'a', '--dry-run']);
    assert.is(dry.exitCode, 0, dry.stderr);
    assert.ok(dry.stdout.includes('   saves:    /opt/venv (outside /workflow)\n'), dry.stdout);
    assert.is(dry.stderr, '');
  } finally {
    await p.cleanup();
  }
});

t('a 5,000-workflow dependency chain plans (no stack overflow)', async () => {
  const lines = ['workflows:'];
  for (let i = 0; i < 5000; i++) lines.push(`  - name: w${i}`, `    image: ${IMAGE}`, '    commands: [echo]', ...(i ? [`    deps: [w${i - 1}]`] : []));
  const p = await createProject({ workflows: `${lines.join('\n')}\n` });
  try {
    const r = await p.run(['run', 'w4999', '--dry-run', '--json'], { timeoutMs: 110_000 });
    assertNoCrash(r);
    assert.is(r.exitCode, 0, r.stderr.slice(0, 2000));
    const jobs = (JSON.parse(r.stdout) as { jobs: { workflow: string }[] }).jobs;
    assert.is(jobs.length, 5000);
    assert.is(jobs[4999]!.workflow, 'w4999');
  } finally {
    await p.cleanup();
  }
}, 120_000);

t('no container was made by any of these', () => assertNoContainersLeft());


test.run();
