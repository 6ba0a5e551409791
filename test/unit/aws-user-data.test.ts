/**
 * The instance's user-data (src/backends/aws/user-data.ts): one bash script that bash accepts, whose
 * steps come in the order that keeps an instance safe (the shared boot script — host key, dead-man
 * switch — before anything that can fail or hang), with the Docker install only on a plain image and
 * the NVIDIA step only for GPU jobs. It runs for real in the AWS integration tests' instances.
 */
import { spawnSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { userData, USER_DATA_LIMIT, type UserDataOptions } from '../../src/backends/aws/user-data.js';

const base: UserDataOptions = {
  login: 'ubuntu',
  authorizedKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEuvio/7tKPiCB3H/6LmyVoAIcL48s9Df2dK3yojFvzC it's me",
  bootScript: '#!/bin/sh\necho host-key-and-switch\n',
  installDocker: true,
  gpu: false,
  label: 'wet-mangust-1/train (run wet-mangust-1)',
};

const steps = (script: string): string[] => [...script.matchAll(/^step '([^']+)'$/gm)].map((m) => m[1]!);
const bashAccepts = (script: string): string => {
  const r = spawnSync('bash', ['-n'], { input: script, encoding: 'utf8' });
  return r.status === 0 ? 'ok' : r.stderr;
};

test('a plain image: the shared boot script first, authorized key, docker (installed), done — and bash accepts it', () => {
  const s = userData(base);
  assert.ok(s.startsWith('#!/bin/bash\n# dstack bootstrap for wet-mangust-1/train (run wet-mangust-1)'));
  assert.equal(steps(s), ['boot script', 'authorized key', 'docker', 'done']);
  assert.is(bashAccepts(s), 'ok');
  assert.ok(s.includes('apt-get install -y -q docker.io'));
  assert.ok(s.includes("cat > /var/lib/dstack/boot.sh <<'DSTACK_BOOT_SCRIPT'\n#!/bin/sh\necho host-key-and-switch\nDSTACK_BOOT_SCRIPT\nsh /var/lib/dstack/boot.sh\n"));
  // Quoted for the shell: the comment's apostrophe stays in the key line.
  assert.ok(s.includes(`printf '%s\\n' 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEuvio/7tKPiCB3H/6LmyVoAIcL48s9Df2dK3yojFvzC it'\\''s me' >> "$home/.ssh/authorized_keys"`));
  assert.ok(s.indexOf('echo host-key-and-switch') < s.indexOf("step 'docker'"), 'the switch starts before anything that can hang');
});

test('a GPU job on the deep-learning image: no Docker install, an nvidia step', () => {
  const s = userData({ ...base, installDocker: false, gpu: true });
  assert.equal(steps(s), ['boot script', 'authorized key', 'docker', 'nvidia', 'done']);
  assert.not.ok(s.includes('apt-get install'));
  assert.ok(s.includes('nvidia-smi -L'));
  assert.is(bashAccepts(s), 'ok');
});

test('a max duration powers the instance off after it, whatever happens', () => {
  const s = userData({ ...base, maxDurationSeconds: 43200 });
  assert.equal(steps(s), ['boot script', 'authorized key', 'max duration', 'docker', 'done']);
  assert.ok(s.includes("nohup sh -c 'sleep 43200; shutdown -h now' >/dev/null 2>&1 &"));
  assert.is(bashAccepts(s), 'ok');
});

test('a failing step is written down with its name, for dstack to read', () => {
  const s = userData(base);
  assert.ok(s.includes("trap 'failed $?' ERR"));
  assert.ok(s.includes(`printf "step '%s' failed with status %s\\n" "$(cat /var/lib/dstack/step)" "$1" > /var/lib/dstack/bootstrap.failed`));
  assert.ok(s.trimEnd().endsWith('touch /var/lib/dstack/bootstrap.done'));
});

test('nothing of the user\'s environment gets in, and the script stays under EC2\'s 16 KB', () => {
  const before = process.env.AWS_SECRET_ACCESS_KEY;
  process.env.AWS_SECRET_ACCESS_KEY = 'SECRET-THAT-MUST-NOT-LEAK';
  try {
    const s = userData(base);
    assert.not.ok(s.includes('SECRET-THAT-MUST-NOT-LEAK'));
    assert.ok(Buffer.byteLength(s) < USER_DATA_LIMIT);
  } finally {
    if (before === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
    else process.env.AWS_SECRET_ACCESS_KEY = before;
  }
  assert.throws(() => userData({ ...base, bootScript: `#!/bin/sh\n: '${'x'.repeat(USER_DATA_LIMIT)}'` }), /over EC2's 16 KB/);
});

test.run();
