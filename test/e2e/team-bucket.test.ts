/**
 * Two dstack homes play two members of a team sharing a bucket — a shared folder, and S3 (moto's,
 * through the real SDK): alice runs and pushes; bob sees the run in `ps --remote`, reuses its job
 * as a cached dep ("cached by alice's run … (bucket)"), pulls it and copies a file out
 * byte-identical; a second push sends nothing; two pushes of one tag name race and one wins.
 * Their projects are two folders with the same repository id, as two clones would be. Two more
 * members with repositories of their own try 0.7's deps on another repository (owner/repo/name).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, assertNoCrash, createProject, runNameOf, type Project, assertOk as ok } from '../helpers/cli.js';
import { motoEnv, startMoto, type Moto } from '../helpers/moto.js';
import { createBucket, emptyBucket, testS3Client } from '../helpers/s3.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';
const REPO_ID = `local-${randomBytes(16).toString('hex')}`;

const WORKFLOWS = `workflows:
  - name: prep
    image: ${IMAGE}
    commands:
      - mkdir -p data
      - echo shared-data > data/a.txt
      - head -c 300000 /dev/urandom > data/blob.bin
    artifacts:
      - data
  - name: train
    image: ${IMAGE}
    deps: [prep]
    commands:
      - echo train-sees-$(cat data/a.txt)
      - mkdir -p model && wc -c < data/blob.bin > model/size.txt
    artifacts:
      - model
`;

interface PushJson {
  run: string;
  objects: { total: number; sent: number };
  bytes: { total: number; sent: number };
}
interface PsRemote {
  run: string;
  owner: string;
  status: string;
  where?: string;
}

interface Team {
  readonly config: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly cleanup: () => Promise<void>;
}

function scenario(kind: string, makeTeam: () => Promise<Team>): void {
  const test = suite(`team bucket (${kind})`);
  let team: Team;
  let alice: Project;
  let bob: Project;
  let run = '';
  const member = (owner: string): Promise<Project> =>
    createProject({ workflows: WORKFLOWS, files: { '.dstack/repo-id': `${REPO_ID}\n`, 'notes.txt': 'x\n' }, env: { ...team.env, DSTACK_OWNER: owner } });

  test.before(
    withTimeout(120_000, async () => {
      team = await makeTeam();
      alice = await member('alice');
      bob = await member('bob');
      for (const p of [alice, bob]) ok(await p.run(team.config), 'config');
    }),
  );
  test.after(
    withTimeout(120_000, async () => {
      await alice?.cleanup();
      await bob?.cleanup();
      await team?.cleanup();
    }),
  );

  test('alice runs and pushes; a second push sends 0 bytes', withTimeout(180_000, async () => {
    const r = ok(await alice.run(['run', 'train']), 'run');
    run = runNameOf(r.stderr);
    const first = JSON.parse(ok(await alice.run(['push', run, '--json']), 'push').stdout) as PushJson;
    assert.is(first.run, run);
    assert.is(first.objects.total, 3);
    assert.is(first.objects.sent, 3);
    assert.ok(first.bytes.sent > 300_000);
    const second = JSON.parse(ok(await alice.run(['push', run, '--json']), 'push again').stdout) as PushJson;
    assert.equal([second.objects.sent, second.bytes.sent, second.bytes.total], [0, 0, first.bytes.total]);
    const text = ok(await alice.run(['push', run]), 'push, text');
    assert.match(text.stderr, new RegExp(`^Pushed run ${run} to team \\(.*\\): 0 objects sent \\(0 B\\), 3 already there, in \\d+\\.\\d s\\n$`));
    assert.is(text.stdout, '');
  }));

  test('bob sees it in ps --remote, with its owner', withTimeout(60_000, async () => {
    const runs = await bob.json<PsRemote[]>(['ps', '--remote', '--json']);
    assert.equal(runs.map((r) => [r.run, r.owner, r.status]), [[run, 'alice', 'done']]);
    const table = ok(await bob.run(['ps', '--remote']), 'ps --remote table');
    assert.match(table.stdout, new RegExp(`^RUN +WORKFLOW +SUBMITTED +OWNER +STATUS +TAG +BACKEND +DURATION\\n${run} +train +.+ +alice +done +local +\\d+s\\n$`));
  }));

  test("bob's run reuses alice's prep from the bucket, and says so", withTimeout(180_000, async () => {
    const plan = ok(await bob.run(['run', 'train', '--dry-run', '--explain']), 'dry run');
    assert.match(plan.stdout, new RegExp(`^1\\. prep  cached by alice's run ${run} \\(bucket\\)\\n2\\. train  runs\\n`));
    const r = ok(await bob.run(['run', 'train']), 'run');
    assert.match(r.stderr, new RegExp(`  prep: cached by alice's run ${run} \\(bucket\\)\\n`));
    assert.match(r.stdout, /train-sees-shared-data/);
    const mine = runNameOf(r.stderr);
    const jobs = (await bob.json<{ jobs: { workflow: string; reason: string | null; cachedFrom: string | null }[] }>(['ps', mine, '--json'])).jobs;
    assert.equal([jobs[0]!.reason, jobs[0]!.cachedFrom], [null, `${run}/prep`]);
  }));

  test('bob reads it without pulling, then pulls it and copies a file out byte-identical', withTimeout(120_000, async () => {
    const ls = ok(await bob.run(['ls', run]), 'ls');
    assert.match(ls.stdout, /data\/blob\.bin +300 kB +prep/);
    const logs = ok(await bob.run(['logs', run]), 'logs');
    assert.match(logs.stdout, /train \| train-sees-shared-data/);
    const out = await mkdtemp(join(tmpdir(), 'dstack-e2e-cp-'));
    try {
      ok(await alice.run(['cp', run, 'data/blob.bin', join(out, 'alice.bin')]), 'alice cp');
      const pulled = ok(await bob.run(['pull', run]), 'pull');
      assert.match(pulled.stderr, new RegExp(`^Pulled run ${run} \\(by alice\\): \\d objects? fetched`));
      ok(await bob.run(['cp', run, 'data/blob.bin', join(out, 'bob.bin')]), 'bob cp');
      assert.equal(await readFile(join(out, 'bob.bin')), await readFile(join(out, 'alice.bin')));
      const all = await bob.json<PsRemote[]>(['ps', '-a', '--json']);
      assert.is(all.find((r) => r.run === run)?.where, 'local+team');
      const again = ok(await bob.run(['pull', run]), 'pull again');
      assert.is(again.exitCode, 0);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }));

  test('two teammates push a tag of the same name at once: one wins, the other is told who', withTimeout(120_000, async () => {
    ok(await alice.run(['tags', 'add', 'shared', run]), 'alice tag');
    await writeFile(join(bob.dir, 'notes.txt'), 'bob-notes\n');
    ok(await bob.run(['tags', 'add', 'shared', '-a', 'notes.txt']), 'bob tag');
    const [a, b] = await Promise.all([alice.run(['push', ':shared']), bob.run(['push', ':shared'])]);
    const results = [a, b];
    assert.is(results.filter((x) => x.exitCode === 0).length, 1, `${a.stderr}\n${b.stderr}`);
    const loser = results.find((x) => x.exitCode !== 0)!;
    assertNoCrash(loser);
    assert.is(loser.exitCode, 2);
    assert.match(loser.stderr, /^error DS0270: tag 'shared' already exists in .* with other artifacts: it was pushed by (alice \(from run \S+\)|bob), /);
  }));

  test('push of a run that does not exist, and ps --remote with no bucket, are clear errors', withTimeout(60_000, async () => {
    const r = await alice.run(['push', 'nope-run-1']);
    assert.equal([r.exitCode, r.stdout, r.stderr], [2, '', "error DS0101: no run named 'nope-run-1'\n  = list runs with `dstack ps -a`, or name a tag as `:TAG`\n"]);
    const lone = await createProject({ workflows: WORKFLOWS });
    try {
      const n = await lone.run(['ps', '--remote']);
      assert.equal(
        [n.exitCode, n.stdout, n.stderr],
        [2, '', 'error DS0267: no team bucket is configured\n  = add one: dstack config folder --name team --path /mnt/team, or dstack config s3 --name team --bucket BUCKET\n'],
      );
    } finally {
      await lone.cleanup();
    }
  }));

  test("deps on another repository, as in 0.7 (`workflow: acme/data/prep`, `tag: acme/data/v1`), resolve through the bucket", withTimeout(240_000, async () => {
    const repo = `acme/data-${randomBytes(4).toString('hex')}`;
    const dana = await createProject({ workflows: WORKFLOWS, env: { ...team.env, DSTACK_OWNER: 'dana' } });
    const uses = (dep: string): string => `workflows:\n  - name: use\n    image: ${IMAGE}\n    deps:\n      - ${dep}\n    commands:\n      - cat data/a.txt\n`;
    const carol = await createProject({ workflows: uses(`workflow: ${repo}/prep`), env: { ...team.env, DSTACK_OWNER: 'carol' } });
    try {
      // dana's clone has a remote URL: its identity is github.com/acme/data-…, which `acme/data-…` names.
      execFileSync('git', ['init', '-q'], { cwd: dana.dir });
      execFileSync('git', ['remote', 'add', 'origin', `https://github.com/${repo}.git`], { cwd: dana.dir });
      for (const p of [dana, carol]) ok(await p.run(team.config), 'config');
      const made = runNameOf(ok(await dana.run(['run', 'prep']), 'dana runs prep').stderr);
      ok(await dana.run(['push', made]), 'dana pushes');
      ok(await dana.run(['tags', 'add', 'v1', made]), 'dana tags');
      ok(await dana.run(['push', ':v1']), 'dana pushes the tag');
      const plan = ok(await carol.run(['run', 'use', '--dry-run']), 'plan');
      assert.match(plan.stdout, /use +runs/);
      assert.is(ok(await carol.run(['run', 'use']), 'the workflow dep').stdout, 'shared-data\n');
      await writeFile(join(carol.dir, '.dstack', 'workflows.yaml'), uses(`tag: ${repo}/v1`));
      assert.is(ok(await carol.run(['run', 'use']), 'the tag dep').stdout, 'shared-data\n');
      await writeFile(join(carol.dir, '.dstack', 'workflows.yaml'), uses(`workflow: ${repo}/nope`));
      const missing = await carol.run(['run', 'use']);
      assertNoCrash(missing);
      assert.is(missing.exitCode, 2, missing.stderr);
      assert.match(missing.stderr, new RegExp(`^error DS0272: no successful run of nope in github\\.com/${repo} in the team bucket\\n  --> \\.dstack/workflows\\.yaml:5:9\\n`), missing.stderr);
    } finally {
      await dana.cleanup();
      await carol.cleanup();
    }
  }));

  test('the bucket is a remote like the others: config list shows it, --remote refuses it, config delete removes it', withTimeout(60_000, async () => {
    const listed = JSON.parse(ok(await alice.run(['config', 'list', '--json']), 'config list --json').stdout) as { default: string | null; remotes: { name: string; kind: string }[] };
    assert.equal([listed.default, listed.remotes.map((r) => [r.name, r.kind])], [null, [['team', team.config[1]]]], 'a bucket never becomes the default remote');
    const table = ok(await alice.run(['config', 'list']), 'config list').stdout;
    assert.match(table, new RegExp(`^NAME +KIND +BUCKET\\nteam +${team.config[1]} +\\S+`));
    const refused = await alice.run(['run', 'train', '--remote', 'team']);
    assert.equal(
      [refused.exitCode, refused.stderr],
      [2, `error DS0268: remote 'team' is a ${team.config[1]} bucket: it stores runs, it does not run them\n  = name a pool or a cloud with --remote NAME (see \`dstack config list\`); the team bucket serves the cache and \`dstack push\` by itself\n`],
    );
    const lone = await createProject({ workflows: WORKFLOWS, env: team.env });
    try {
      ok(await lone.run(team.config), 'config');
      ok(await lone.run(['config', 'delete', 'team', '-y']), 'config delete');
      assert.equal((await lone.json<{ remotes: unknown[] }>(['config', 'list', '--json'])).remotes, []);
    } finally {
      await lone.cleanup();
    }
  }));

  test('nothing left behind', withTimeout(30_000, async () => assertNoContainersLeft()));
  test.run();
}

scenario('shared folder', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dstack-e2e-team-'));
  return { config: ['config', 'folder', '--name', 'team', '--path', dir], env: {}, cleanup: () => rm(dir, { recursive: true, force: true }) };
});

let moto: Moto | undefined;
scenario('S3 on moto', async () => {
  moto = await startMoto();
  const client = testS3Client(moto.endpoint);
  await createBucket(client, 'team-e2e');
  return {
    config: ['config', 's3', '--name', 'team', '--bucket', 'team-e2e', '--prefix', 'dstack'],
    env: motoEnv(moto.endpoint),
    cleanup: async () => {
      await emptyBucket(client, 'team-e2e');
      client.destroy();
      await moto?.stop();
    },
  };
});
