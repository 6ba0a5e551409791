/**
 * Hostile jobs and artifacts outside /workflow, end to end on real Docker (issue 12, task K): a job
 * plants links out (to /proc/1/root, to /etc), a link inside and a fifo under its absolute artifact;
 * the save follows none of them and does not hang on the fifo, and the dependent gets what is
 * legitimately there — every symlink kept as a symlink, as outside artifacts keep `bin/python ->
 * /usr/bin/python3` (they are read in the container, never on the host). A job that writes more than
 * DSTACK_ARTIFACT_LIMIT under its artifact fails with DS0045, nothing of it left in the store.
 */
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeCanary, type Canary } from '../helpers/canary.js';
import { assertNoContainersLeft, assertNoCrash, containersOf, createProject, runNameOf } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';

let canary: Canary;
test.before(() => {
  canary = makeCanary();
});
test.after(() => canary.remove());

/** Every file under `dir` with its size. */
function sizes(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else out.set(p, st.size);
    }
  };
  walk(dir);
  return out;
}

test('links out, a link inside and a fifo under /opt/env: kept as links, never followed, the fifo skipped without a hang', withTimeout(120_000, async () => {
  const workflows = `workflows:
  - name: plant
    image: ${IMAGE}
    commands:
      - mkdir -p /opt/env/lib && echo legit > /opt/env/lib/data.txt
      - ln -s /proc/1/root /opt/env/host && ln -s /etc /opt/env/etc && ln -s ${canary.dir} /opt/env/canary
      - ln -s lib/data.txt /opt/env/inside && mkfifo /opt/env/pipe
    artifacts:
      - /opt/env
  - name: use
    image: ${IMAGE}
    deps:
      - workflow: plant
    commands:
      - cat /opt/env/lib/data.txt /opt/env/inside
      - for l in host etc canary inside; do echo "$l -> $(readlink /opt/env/$l)"; done
      - test -e /opt/env/pipe || echo no-pipe
`;
  const p = await createProject({ workflows });
  try {
    const r = await p.run(['run', 'use'], { timeoutMs: 110_000 });
    assertNoCrash(r);
    assert.is(r.exitCode, 0, r.stderr);
    assert.ok(r.stderr.includes('artifact entry /opt/env/pipe (a fifo) was not saved'), r.stderr);
    assert.ok(
      r.stdout.includes(`use   | legit\nuse   | legit\nuse   | host -> /proc/1/root\nuse   | etc -> /etc\nuse   | canary -> ${canary.dir}\nuse   | inside -> lib/data.txt\nuse   | no-pipe\n`),
      r.stdout,
    );
    canary.assertUntouched();
    const ls = await p.run(['ls', runNameOf(r.stderr), '/opt/env']);
    assert.is(ls.exitCode, 0, ls.stderr);
    assert.match(ls.stdout, /^\/opt\/env\/lib\/data\.txt +6 B +plant$/m);
    assert.not.match(ls.stdout, /pipe|passwd|shadow/);
    assert.equal(await containersOf(p.home), []);
  } finally {
    await p.cleanup();
  }
}));

test('DSTACK_ARTIFACT_LIMIT: 2 MiB of /dev/zero under a 1 MiB limit fail the job with DS0045, no object of it stored, no temp file left', withTimeout(120_000, async () => {
  const workflows = `workflows:
  - name: fill
    image: ${IMAGE}
    commands:
      - mkdir -p /opt/big && head -c 2097152 /dev/zero > /opt/big/zero && echo small > /opt/big/a.txt
    artifacts:
      - /opt/big
`;
  const p = await createProject({ workflows });
  try {
    const r = await p.run(['run', 'fill'], { env: { DSTACK_ARTIFACT_LIMIT: '1MiB' }, timeoutMs: 110_000 });
    assertNoCrash(r);
    assert.is(r.exitCode, 2, r.stderr);
    assert.ok(r.stderr.includes('error DS0045: artifact /opt/big holds more than 1 MiB (DSTACK_ARTIFACT_LIMIT): it was not saved\n  = make the job keep less under /opt/big, or raise the limit: DSTACK_ARTIFACT_LIMIT=100GiB dstack run …\n'), r.stderr);
    // What was stored before the refusal (small files of the same artifact) is unreferenced: prune's to collect.
    const stored = [...sizes(join(p.home, 'objects')).entries()].map(([f, n]) => [relative(p.home, f), n] as const).filter(([f]) => !f.startsWith('objects/verified'));
    assert.ok(stored.every(([f, n]) => n < 1024 * 1024 && f.startsWith('objects/sha256/')), JSON.stringify(stored));
    assert.equal(await containersOf(p.home), []);
    assert.equal(readdirSync(join(p.home, 'jobs')), []);

    const bad = await p.run(['run', 'fill'], { env: { DSTACK_ARTIFACT_LIMIT: 'lots' } });
    assert.is(bad.exitCode, 2);
    assert.is(bad.stdout, '');
    assert.is(bad.stderr, "error DS0046: DSTACK_ARTIFACT_LIMIT must be a size or unlimited, got 'lots'\n  = expected a number and a unit, e.g. 512MB, 16GB, 8GiB (MB/GB decimal, MiB/GiB binary); e.g. DSTACK_ARTIFACT_LIMIT=100GiB\n");
  } finally {
    await p.cleanup();
  }
}));

test('nothing left: no job container', withTimeout(30_000, async () => {
  await assertNoContainersLeft();
}));

test.run();
