/**
 * The keys dstack makes for instances. ssh2's ed25519 generator drops a leading zero byte of a key
 * once in 256 pairs (mscdex/ssh2#1390), and such a pair is malformed to ssh2's parser and to OpenSSH: one in a
 * fresh home's client key failed an AWS run in CI. Thousands of pairs make it near certain that a
 * generator without the check would be caught here.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { clientKey, newHostKey } from '../../src/backends/ssh-host/instance-keys.js';
import { withTimeout } from '../helpers/timeout.js';

test(
  'every host key made parses as ed25519 with a 32-byte public key (2,000 pairs)',
  withTimeout(60_000, async () => {
    for (let i = 0; i < 2000; i++) {
      const pair = await newHostKey();
      const parsed = ssh2.utils.parseKey(pair.privateKey);
      assert.not.instance(parsed, Error, `pair ${i}: ${parsed instanceof Error ? parsed.message : ''}\n${pair.privateKey}`);
      const key = parsed as ssh2.ParsedKey;
      assert.is(key.type, 'ssh-ed25519');
      const blob = key.getPublicSSH();
      assert.is(blob.readUInt32BE(15), 32, `pair ${i}: the public key is ${blob.readUInt32BE(15)} bytes`);
      assert.is(pair.publicKey, `ssh-ed25519 ${blob.toString('base64')} dstack-instance-host`);
    }
  }),
);

test(
  "a home's client key is made once, mode 0600, its .pub matching, and read back the same",
  withTimeout(10_000, async () => {
    const home = await mkdtemp(join(tmpdir(), 'dstack-keys-'));
    try {
      const made = await clientKey(home);
      assert.is((await stat(made.path)).mode & 0o777, 0o600);
      assert.is(await readFile(`${made.path}.pub`, 'utf8'), `${made.publicKey}\n`);
      assert.equal(await clientKey(home), made);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  }),
);

test.run();
