/**
 * The instance's user-data (src/backends/aws/user-data.ts): one bash script that bash accepts, whose
 * steps come in the order that keeps an instance safe (host key, authorized key, then the dead-man
 * switch before anything that can fail or hang), with the Docker install only on a plain image and
 * the NVIDIA step only for GPU jobs. It runs for real in the AWS integration tests' instances.
 */
import { spawnSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { userData, USER_DATA_LIMIT, type UserDataOptions } from '../../src/backends/aws/user-data.js';

const PEM = `-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
-----END OPENSSH PRIVATE KEY-----
`;
const base: UserDataOptions = {
  login: 'ubuntu',
  authorizedKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEuvio/7tKPiCB3H/6LmyVoAIcL48s9Df2dK3yojFvzC it's me",
  hostKey: { privatePem: PEM, publicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKPG2hdc16EPV/ZL27Ewu1olYEK+uglgpyAIuM3Fcdob host' },
  deadManSwitch: 'echo switch-started',
  installDocker: true,
  gpu: false,
  label: 'wet-mangust-1/train (run wet-mangust-1)',
};

const steps = (script: string): string[] => [...script.matchAll(/^step '([^']+)'$/gm)].map((m) => m[1]!);
const bashAccepts = (script: string): string => {
  const r = spawnSync('bash', ['-n'], { input: script, encoding: 'utf8' });
  return r.status === 0 ? 'ok' : r.stderr;
};

test('a plain image: host key, authorized key, dead-man switch, docker (installed), done — and bash accepts it', () => {
  const s = userData(base);
  assert.ok(s.startsWith('#!/bin/bash\n# dstack bootstrap for wet-mangust-1/train (run wet-mangust-1)'));
  assert.equal(steps(s), ['host key', 'authorized key', 'dead-man switch', 'docker', 'done']);
  assert.is(bashAccepts(s), 'ok');
  assert.ok(s.includes('apt-get install -y -q docker.io'));
  assert.ok(s.includes(`${PEM.trim()}\nDSTACK_HOST_KEY`));
  // Quoted for the shell: the comment's apostrophe stays in the key line.
  assert.ok(s.includes(`printf '%s\\n' 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEuvio/7tKPiCB3H/6LmyVoAIcL48s9Df2dK3yojFvzC it'\\''s me' >> "$home/.ssh/authorized_keys"`));
  assert.ok(s.indexOf('echo switch-started') < s.indexOf("step 'docker'"), 'the switch starts before anything that can hang');
});

test('a GPU job on the deep-learning image: no Docker install, an nvidia step', () => {
  const s = userData({ ...base, installDocker: false, gpu: true });
  assert.equal(steps(s), ['host key', 'authorized key', 'dead-man switch', 'docker', 'nvidia', 'done']);
  assert.not.ok(s.includes('apt-get install'));
  assert.ok(s.includes('nvidia-smi -L'));
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
  assert.throws(() => userData({ ...base, deadManSwitch: `: '${'x'.repeat(USER_DATA_LIMIT)}'` }), /over EC2's 16 KB/);
});

test.run();
