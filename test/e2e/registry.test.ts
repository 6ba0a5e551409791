/**
 * Real pulls end to end, with no registry outside: a private image behind htpasswd pulled with
 * `registry_auth` from secrets (the password never stored, logged or printed), and a Docker Hub
 * name resolved through the engine's `--registry-mirror` on loopback. Every registry here is a
 * real one on 127.0.0.1 (test/helpers/registry.ts).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, assertNoCrash, createProject, docker, runNameOf, type Project } from '../helpers/cli.js';
import { BUSYBOX, ensureBusybox } from '../helpers/docker.js';
import { engineMirrors, startRegistry } from '../helpers/registry.js';
import { withTimeout } from '../helpers/timeout.js';

const USER = 'reg-user';
const PASSWORD = `Reg-Pass-${process.pid}-${Date.now()}`;

/** Every file under `dir` whose bytes hold `needle`. */
function filesHolding(dir: string, needle: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesHolding(p, needle));
    else if (name !== 'secrets.json' && readFileSync(p).includes(needle)) out.push(p);
  }
  return out;
}

test.before(ensureBusybox);

test(
  'a private image: registry_auth from secrets pulls it and the job runs; the password is nowhere in the home or the output; a wrong one is DS0291',
  withTimeout(120_000, async () => {
    const registry = await startRegistry({ auth: { username: USER, password: PASSWORD } });
    let p: Project | undefined;
    try {
      const image = await registry.pushTagOf(BUSYBOX, `private/app:${process.pid}`);
      p = await createProject({
        workflows: `workflows:
  - name: private
    image: ${image}
    registry_auth:
      username: \${{ secrets.REG_USER }}
      password: \${{ secrets.REG_PASS }}
    commands:
      - echo private-ok
`,
        secrets: { REG_USER: USER, REG_PASS: PASSWORD },
      });
      const r = await p.run(['run', 'private']);
      assert.is(r.exitCode, 0, r.stderr);
      assertNoCrash(r);
      assert.is(r.stdout, 'private-ok\n');
      assert.ok(r.stderr.includes(`  pulled ${image}\n`), r.stderr);
      const name = runNameOf(r.stderr);
      const shown = [r.stdout, r.stderr, (await p.run(['ps', name, '--json'])).stdout, (await p.run(['logs', name])).stdout];
      assert.not.ok(shown.some((t) => t.includes(PASSWORD)), 'the password was printed');
      assert.equal(filesHolding(p.home, PASSWORD), [], 'the password is stored outside secrets.json');

      // Gone from the engine again, and the secret replaced by a wrong one.
      await docker(['rmi', image]);
      const wrong = 'not-the-password-at-all';
      const add = await p.run(['secrets', 'add', 'REG_PASS', wrong]);
      assert.is(add.exitCode, 0, add.stderr);
      const refused = await p.run(['run', 'private']);
      assert.is(refused.exitCode, 2, refused.stderr);
      assertNoCrash(refused);
      assert.ok(refused.stderr.includes(`error DS0291: the registry refused the credentials of registry_auth for image '${image}' (`), refused.stderr);
      assert.not.ok(refused.stderr.includes(wrong) || refused.stdout.includes(wrong));
      assert.equal(filesHolding(p.home, wrong), []);
    } finally {
      await p?.cleanup();
      await registry.stop();
    }
  }),
);

const HOW_TO_MIRROR =
  'the Docker engine has no registry mirror on loopback, so a Docker Hub name cannot be pulled here without reaching Docker Hub: ' +
  'start dockerd with `--registry-mirror http://127.0.0.1:5055` (scripts/ensure-docker.sh does when it starts the daemon itself), ' +
  'or add "registry-mirrors": ["http://127.0.0.1:5055"] to /etc/docker/daemon.json and send dockerd SIGHUP';

/** The engine's mirror on this machine, when it has one: `http://127.0.0.1:PORT`. */
async function loopbackMirror(): Promise<number | undefined> {
  for (const m of await engineMirrors()) {
    const u = new URL(m);
    if ((u.hostname === '127.0.0.1' || u.hostname === 'localhost') && u.protocol === 'http:' && u.port) return Number(u.port);
  }
  return undefined;
}

const mirrorPort = await loopbackMirror();
const hubTest = 'a Docker Hub name is pulled through the engine’s --registry-mirror on loopback, and the job runs';
if (mirrorPort === undefined && process.env.CI !== 'true') {
  // Outside CI a developer's engine may well have no mirror: say so loudly, in the count too.
  process.stderr.write(`skipped: ${hubTest}\n  because ${HOW_TO_MIRROR}\n`);
  test.skip(hubTest, () => undefined);
} else {
  test(
    hubTest,
    withTimeout(120_000, async () => {
      if (mirrorPort === undefined) throw new Error(HOW_TO_MIRROR);
      const mirror = await startRegistry({ port: mirrorPort });
      // A Hub name (no registry host) nobody else has: it can only come from the mirror.
      const hubName = `dstack-test/hub-${process.pid}:1`;
      let p: Project | undefined;
      try {
        await mirror.pushTagOf(BUSYBOX, hubName);
        p = await createProject({ workflows: `workflows:\n  - name: hub\n    image: ${hubName}\n    commands: [echo from-the-mirror]\n` });
        const r = await p.run(['run', 'hub']);
        assert.is(r.exitCode, 0, r.stderr);
        assertNoCrash(r);
        assert.is(r.stdout, 'from-the-mirror\n');
        assert.ok(r.stderr.includes(`  pulled ${hubName}\n`), r.stderr);

        // Pinned as the default image is once its digest is read (name:tag@sha256:…): pulled by
        // digest through the mirror, shown pinned.
        await docker(['rmi', hubName]);
        const pinned = `${hubName}@${mirror.digests.get(`${mirror.host}/${hubName}`)}`;
        await writeFile(join(p.dir, '.dstack', 'workflows.yaml'), `workflows:\n  - name: hub\n    image: ${pinned}\n    commands: [echo pinned]\n`);
        const plan = await p.run(['run', 'hub', '--dry-run']);
        assert.ok(plan.stderr.includes(`   image:    ${pinned}\n`) || plan.stdout.includes(`   image:    ${pinned}\n`), plan.stdout + plan.stderr);
        const again = await p.run(['run', 'hub']);
        assert.is(again.exitCode, 0, again.stderr);
        assert.is(again.stdout, 'pinned\n');
        assert.ok(again.stderr.includes(`  pulled ${pinned}\n`), again.stderr);
      } finally {
        await p?.cleanup();
        await docker(['rmi', '-f', hubName]).catch(() => undefined);
        await docker(['rmi', '-f', `${hubName.split(':')[0]}@${mirror.digests.get(`${mirror.host}/${hubName}`)}`]).catch(() => undefined);
        await mirror.stop();
      }
    }),
  );
}

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
