/**
 * A dstack 0.7 project runs (issue 12): a Python environment under /opt/venv, made by one workflow and
 * kept as an artifact outside /workflow, is imported — and changed — by the next, locally and on the
 * SSH pool; a broken workflow sits beside the working ones; `resources.local: true`; folders of
 * artifacts written without `mkdir`. The image is dstack-test/venv (python3-venv from Debian's
 * packages, scripts/build-images.sh venv).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoCrash, createProject, runNameOf, type Project } from '../helpers/cli.js';
import { assertNoHostOrContainerLeft, configurePool } from '../helpers/pool.js';
import { removeHost, startHost, type TestHost } from '../helpers/ssh-hosts.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/venv:latest';

const WORKFLOWS = `workflows:
  - name: make-env
    provider: bash
    image: ${IMAGE}
    commands:
      - python3 -m venv --without-pip /opt/venv
      - site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
      - mkdir -p $site/greet && cp greet.py $site/greet/__init__.py
    artifacts:
      - /opt/venv
  - name: use-env
    provider: bash
    image: ${IMAGE}
    deps:
      - workflow: make-env
    commands:
      - /opt/venv/bin/python -c 'import greet; print(greet.hello())'
      - echo added-by-use-env > /opt/venv/added.txt && cat /opt/venv/added.txt
      - /opt/venv/bin/python -c 'import sys; print(sys.prefix)' > /opt/models/prefix.txt
    artifacts:
      - /opt/models
  - name: report
    provider: bash
    image: ${IMAGE}
    deps:
      - workflow: use-env
    resources:
      local: true
    commands:
      - echo "prefix $(cat /opt/models/prefix.txt)" > output/report.txt
      - cat output/report.txt
    artifacts:
      - ./output
  - name: broken
    provider: bash
    image: ${IMAGE}
    resources:
      memory: lots
    commands:
      - echo never
`;

const FILES = { 'greet.py': 'def hello():\n    return "hello from the venv"\n' };

let hosts: TestHost[] = [];
let p: Project;
let pool: Project;

test.before(withTimeout(60_000, async () => {
  [p, pool, ...hosts] = await Promise.all([createProject({ workflows: WORKFLOWS, files: FILES }), createProject({ workflows: WORKFLOWS, files: FILES }), startHost()]);
  await configurePool(pool, hosts);
}));

test.after(withTimeout(60_000, async () => {
  await Promise.all([p?.cleanup(), pool?.cleanup()]);
  await Promise.all(hosts.map((h) => removeHost(h)));
}));

test('locally: the venv made by one job is imported and changed by the next; artifact folders made; the broken workflow only warned about', withTimeout(180_000, async () => {
  const r = await p.run(['run', 'report'], { timeoutMs: 170_000 });
  assertNoCrash(r);
  assert.is(r.exitCode, 0, r.stderr);
  assert.ok(r.stdout.includes('use-env  | hello from the venv\nuse-env  | added-by-use-env\n'), r.stdout);
  assert.ok(r.stdout.includes('report   | prefix /opt/venv\n'), r.stdout);
  assert.ok(r.stderr.startsWith('warning: 1 error elsewhere in this project, in workflows this run does not need:\n  .dstack/workflows.yaml:38:15 DS0011 invalid size `lots` for `resources.memory` in workflow `broken`\n'), r.stderr);
  const run = runNameOf(r.stderr);

  const ls = await p.run(['ls', run, '/opt/venv/lib/']);
  assert.is(ls.exitCode, 0, ls.stderr);
  assert.match(ls.stdout, /^\/opt\/venv\/lib\/python3\.11\/site-packages\/greet\/__init__\.py +46 B +make-env$/m);
  const models = await p.run(['ls', run, '/opt/models']);
  assert.match(models.stdout, /^\/opt\/models\/prefix\.txt +10 B +use-env$/m);
  const cp = await p.run(['cp', run, '/opt/venv', join(p.home, 'copy')]);
  assert.is(cp.exitCode, 0, cp.stderr);
  assert.match(cp.stderr, /^warning: skipped the symlink bin\/python3 -> \/usr\/bin\/python3: it points outside what is copied$/m);
  assert.is(await readFile(join(p.home, 'copy/lib/python3.11/site-packages/greet/__init__.py'), 'utf8'), FILES['greet.py']);
  const all = await p.run(['cp', run, '.', join(p.home, 'all')]);
  assert.ok(all.stderr.includes(`note: not copied, outside /workflow: /opt/models, /opt/venv (copy each by its path: \`dstack cp ${run} /opt/models DST\`)\n`), all.stderr);

  // Cached: the absolute artifact is part of the dependents' inputs like any other.
  const again = await p.run(['run', 'report', '--dry-run']);
  assert.is(again.exitCode, 0, again.stderr);
  assert.ok(again.stdout.startsWith(`1. make-env  cached (run ${run})\n2. use-env  cached (run ${run})\n`), again.stdout);
}));

test('on the SSH pool: the same pair through the host engine\'s archive API, the venv restored there', withTimeout(180_000, async () => {
  const r = await pool.run(['run', 'use-env', '--remote', 'pool'], { env: { DSTACK_KNOWN_HOSTS: join(pool.home, 'known_hosts') }, timeoutMs: 170_000 });
  assertNoCrash(r);
  assert.is(r.exitCode, 0, r.stderr);
  assert.ok(r.stdout.includes('use-env  | hello from the venv\nuse-env  | added-by-use-env\n'), r.stdout);
  const ls = await pool.run(['ls', runNameOf(r.stderr), '/opt/models/']);
  assert.match(ls.stdout, /^\/opt\/models\/prefix\.txt +10 B +use-env$/m);
}));

test('nothing left: no job container, no SSH host', withTimeout(60_000, async () => {
  await Promise.all([p.cleanup(), pool.cleanup()]);
  await Promise.all(hosts.map((h) => removeHost(h)));
  hosts = [];
  await assertNoHostOrContainerLeft();
}));

test.run();
