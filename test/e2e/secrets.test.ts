/**
 * Secrets, end to end: a secret from `$DSTACK_HOME/secrets.json` reaches the job's environment, but
 * its value is masked in logs and never written to the run store or shown by `ps --json`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, assertNoCrash, containersOf, createProject, runNameOf } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';
const VALUE = 's3cr3t-value';

test(
  'the job sees the secret; logs, ps --json, the plan and the store never hold its value',
  withTimeout(60_000, async () => {
    const p = await createProject({
      secrets: { TOKEN: VALUE },
      workflows: `workflows:
  - name: uses-secret
    image: ${IMAGE}
    env:
      - TOKEN=\${{ secrets.TOKEN }}
    commands:
      - echo token=$TOKEN
      - echo "len=\${#TOKEN} upper=$(echo "$TOKEN" | tr s S)"
`,
    });
    try {
      const r = await p.run(['run', 'uses-secret']);
      assert.is(r.exitCode, 0, r.stderr);
      assertNoCrash(r);
      // The container saw the real value (its length, a transformed copy), the terminal only ***.
      assert.is(r.stdout, 'token=***\nlen=12 upper=S3cr3t-value\n');
      const name = runNameOf(r.stderr);

      const logs = await p.run(['logs', name]);
      assert.is(logs.exitCode, 0, logs.stderr);
      assert.is(logs.stdout, 'token=***\nlen=12 upper=S3cr3t-value\n');

      for (const args of [['ps', '--json'], ['ps', name, '--json'], ['ps', '-a'], ['run', 'uses-secret', '--dry-run'], ['run', 'uses-secret', '--dry-run', '--json']]) {
        const out = await p.run(args);
        assert.is(out.exitCode, 0, out.stderr);
        assert.not.ok(out.stdout.includes(VALUE) || out.stderr.includes(VALUE), `dstack ${args.join(' ')} shows the secret`);
      }
      const plan = JSON.parse((await p.run(['run', 'uses-secret', '--dry-run', '--json'])).stdout) as { jobs: { env: Record<string, string> }[] };
      assert.equal(plan.jobs[0]!.env, { TOKEN: '${{ secrets.TOKEN }}' });

      const stores = readdirSync(p.home).filter((f) => f.startsWith('store.db'));
      assert.ok(stores.includes('store.db'), `store files: ${stores.join(', ')}`);
      for (const f of stores) {
        assert.not.ok(readFileSync(join(p.home, f)).includes(Buffer.from(VALUE)), `${f} holds the secret's bytes`);
      }
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'an unset secret: exit 2, DS0016 names it and where it is used',
  withTimeout(60_000, async () => {
    const p = await createProject({
      secrets: { OTHER: 'x' },
      workflows: `workflows:\n  - name: w\n    image: ${IMAGE}\n    env:\n      - TOKEN=\${{ secrets.MISSING }}\n    commands: [echo hi]\n`,
    });
    try {
      const r = await p.run(['run', 'w']);
      assert.is(r.exitCode, 2, r.stderr);
      assertNoCrash(r);
      assert.ok(r.stderr.includes("error DS0016: secret 'MISSING' used by env TOKEN of w is not set\n"), r.stderr);
      assert.equal(await containersOf(p.home), [], 'nothing started');
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'a secret inside commands works (it used to break the job) and is masked, also when printed in pieces',
  withTimeout(60_000, async () => {
    const p = await createProject({
      secrets: { TOKEN: VALUE },
      workflows: `workflows:
  - name: cmd
    image: ${IMAGE}
    commands:
      - echo "cmd=\${{ secrets.TOKEN }}"
      - echo \${{ secrets.TOKEN }} | tr s S
      - printf 's3cr'; printf '3t-value\\n'
`,
    });
    try {
      const r = await p.run(['run', 'cmd']);
      assertNoCrash(r);
      assert.is(r.exitCode, 0, r.stderr);
      assert.is(r.stdout, 'cmd=***\nS3cr3t-value\n***\n');
      const logs = await p.run(['logs', runNameOf(r.stderr)]);
      assert.is(logs.stdout, 'cmd=***\nS3cr3t-value\n***\n');
      for (const f of readdirSync(p.home).filter((n) => n.startsWith('store.db'))) {
        assert.not.ok(readFileSync(join(p.home, f)).includes(Buffer.from(VALUE)), `${f} holds the secret's bytes`);
      }
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'secret names that are JavaScript object properties are unknown like any other: DS0016, exit 2',
  withTimeout(60_000, async () => {
    for (const name of ['constructor', '__proto__']) {
      const p = await createProject({
        secrets: { OTHER: 'x' },
        workflows: `workflows:\n  - name: w\n    image: ${IMAGE}\n    commands:\n      - echo \${{ secrets.${name} }}\n`,
      });
      try {
        const r = await p.run(['run', 'w']);
        assertNoCrash(r);
        assert.is(r.exitCode, 2, r.stderr);
        assert.ok(r.stderr.includes(`error DS0016: secret '${name}' used by the commands of w is not set\n`), r.stderr);
      } finally {
        await p.cleanup();
      }
    }
  }),
);

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
