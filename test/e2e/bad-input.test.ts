/**
 * Bad input, end to end: every malformed workflow file or command line exits 2 with its DS code,
 * the place (file:line:col) and the exact message — and never a stack trace. None of these may
 * create a container.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, assertNoCrash, createProject, type CliResult, type Project } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';

/** Runs `dstack ARGS` in a project with this workflows file; cleans up. */
async function inProject(workflows: string | undefined, args: readonly string[]): Promise<CliResult> {
  const p: Project = await createProject(workflows === undefined ? {} : { workflows });
  try {
    return await p.run(args);
  } finally {
    await p.cleanup();
  }
}

function expectUsage(r: CliResult, expected: string): void {
  assert.is(r.exitCode, 2, `exit code; stderr:\n${r.stderr}`);
  assertNoCrash(r);
  assert.is(r.stdout, '', 'errors go to stderr, nothing to stdout');
  assert.ok(r.stderr.includes(expected), `expected in stderr:\n${expected}\n--- got:\n${r.stderr}`);
}

test(
  'malformed YAML: DS0001 with file:line:col and the line',
  withTimeout(20_000, async () => {
    const r = await inProject('workflows:\n  - name: a\n    commands: [echo\n  - x: [\n', ['run', 'a']);
    expectUsage(r, 'error DS0001: malformed YAML: ');
    assert.match(r.stderr, /--> \.dstack\/workflows\.yaml:4:\d+\n/);
    assert.ok(r.stderr.includes('4 |   - x: ['), r.stderr);
  }),
);

test(
  'unknown field: DS0002 with did-you-mean and the place',
  withTimeout(20_000, async () => {
    const r = await inProject(`workflows:\n  - name: a\n    image: ${IMAGE}\n    comands:\n      - echo hi\n`, ['run', 'a']);
    expectUsage(r, 'error DS0002: unknown field `comands` in workflow `a`; did you mean `commands`?\n  --> .dstack/workflows.yaml:4:5\n');
  }),
);

test(
  'wrong type: DS0003 says what was expected',
  withTimeout(20_000, async () => {
    const r = await inProject(`workflows:\n  - name: a\n    image: ${IMAGE}\n    commands: 5\n`, ['run', 'a']);
    expectUsage(
      r,
      'error DS0003: wrong type for `commands` in workflow `a`: expected a list of strings or a multi-line string, got 5\n  --> .dstack/workflows.yaml:4:15\n',
    );
  }),
);

test(
  'memory 8XB: DS0011 with the accepted units',
  withTimeout(20_000, async () => {
    const r = await inProject(`workflows:\n  - name: a\n    image: ${IMAGE}\n    commands: [echo]\n    resources:\n      memory: 8XB\n`, ['run', 'a']);
    expectUsage(r, 'error DS0011: invalid size `8XB` for `resources.memory` in workflow `a`\n  --> .dstack/workflows.yaml:6:15\n');
    assert.ok(r.stderr.includes('= expected a number and a unit, e.g. 512MB, 16GB, 8GiB'), r.stderr);
  }),
);

test(
  'cycle: DS0007 names both edges with their places',
  withTimeout(20_000, async () => {
    const r = await inProject('workflows:\n  - name: a\n    deps: [b]\n    commands: [echo]\n  - name: b\n    deps: [a]\n    commands: [echo]\n', ['run', 'a']);
    expectUsage(r, 'error DS0007: dependency cycle: a → b (.dstack/workflows.yaml:3:12), b → a (.dstack/workflows.yaml:6:12)\n');
  }),
);

test(
  'dep on a missing workflow: DS0006 with did-you-mean',
  withTimeout(20_000, async () => {
    const r = await inProject('workflows:\n  - name: train\n    deps: [prepar]\n    commands: [echo]\n  - name: prepare\n    commands: [echo]\n', ['run', 'train']);
    expectUsage(r, 'error DS0006: workflow `train` depends on unknown workflow `prepar`; did you mean `prepare`?\n  --> .dstack/workflows.yaml:3:12\n');
  }),
);

test(
  'unknown variable: DS0008 with where to declare it',
  withTimeout(20_000, async () => {
    const r = await inProject('workflows:\n  - name: a\n    commands:\n      - echo ${{ variables.nope }}\n', ['run', 'a']);
    expectUsage(r, 'error DS0008: unknown variable `nope` in `commands[0]` of workflow `a`\n  --> .dstack/workflows.yaml:4:14\n');
    assert.ok(r.stderr.includes('= declare it in .dstack/variables.yaml under `global:` or `a:`'), r.stderr);
  }),
);

test(
  'artifact paths ../x and /: DS0009',
  withTimeout(20_000, async () => {
    for (const [path, why] of [['../x', 'leaves the working directory'], ['/', 'is not a folder whose content can be kept']]) {
      const r = await inProject(`workflows:\n  - name: a\n    commands: [echo]\n    artifacts: [${path}]\n`, ['run', 'a']);
      expectUsage(r, `error DS0009: artifact path \`${path}\` in workflow \`a\` ${why}\n  --> .dstack/workflows.yaml:4:17\n`);
    }
  }),
);

test(
  'dry-run reports the same errors (nothing runs, still exit 2)',
  withTimeout(20_000, async () => {
    const r = await inProject(`workflows:\n  - name: a\n    image: ${IMAGE}\n    comands: [echo]\n`, ['run', 'a', '--dry-run']);
    expectUsage(r, 'error DS0002: unknown field `comands`');
  }),
);

test(
  'unknown flag: DS0100 with the usage',
  withTimeout(20_000, async () => {
    const r = await inProject(undefined, ['ps', '--bogus']);
    expectUsage(r, 'error DS0100: Unsupported option name ("--bogus").');
    assert.ok(r.stderr.includes('$ dstack ps [-a,--all] [-A,--all-projects] [--json] [-w,--watch] [RUN]'), r.stderr);
    assert.ok(r.stderr.includes('= see `dstack --help`'), r.stderr);
  }),
);

test(
  'unknown command: DS0100',
  withTimeout(20_000, async () => {
    const r = await inProject(undefined, ['bogus']);
    expectUsage(r, "error DS0100: unknown command 'bogus'\n");
  }),
);

test(
  'unknown run: DS0101 for logs, ps, stop and rm',
  withTimeout(20_000, async () => {
    const p = await createProject();
    try {
      for (const args of [['logs', 'nope'], ['ps', 'nope'], ['stop', 'nope'], ['rm', 'nope', '-y']]) {
        const r = await p.run(args);
        expectUsage(r, "error DS0101: no run named 'nope'\n  = list runs with `dstack ps -a`\n");
      }
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  '--since 5x: DS0102',
  withTimeout(20_000, async () => {
    const r = await inProject(undefined, ['logs', 'nope', '--since', '5x']);
    expectUsage(r, "error DS0102: --since expects a duration like 30s, 5m, 2h or 1d, got '5x'");
  }),
);

test(
  'no workflows file: DS0012 suggests dstack init',
  withTimeout(20_000, async () => {
    const r = await inProject(undefined, ['run', 'a']);
    expectUsage(r, 'error DS0012: no .dstack/workflows.yaml in this folder or any folder above it\n  = create one with `dstack init`\n');
  }),
);

test(
  'run with no workflow name, a flag without its value, a --retry that is no count: DS0100',
  withTimeout(20_000, async () => {
    const p = await createProject({ workflows: `workflows:\n  - name: a\n    image: ${IMAGE}\n    commands: [echo]\n` });
    try {
      expectUsage(await p.run(['run']), 'error DS0100: which workflow?');
      expectUsage(await p.run(['run', 'a', '--memory']), 'error DS0100: --memory needs a value');
      for (const bad of ['x', '-1', '1.5', '11']) expectUsage(await p.run(['run', 'a', `--retry=${bad}`]), `error DS0100: --retry expects a whole number from 0 to 10, got '${bad}'`);
    } finally {
      await p.cleanup();
    }
  }),
);

test('no container was made by any of these', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
