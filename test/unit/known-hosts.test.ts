/**
 * The known_hosts parser and matcher. The hashed lines and fingerprints are real output of
 * OpenSSH's `ssh-keygen -H` and `ssh-keygen -l` for the keys below.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { checkHostKey, fingerprint, hostKeyName, hostsMatch, keyTypeOf, knownHostsEntry, knownKeyTypes, parseKnownHosts } from '../../src/backends/ssh-host/known-hosts.js';

const A = 'AAAAC3NzaC1lZDI1NTE5AAAAIEuvio/7tKPiCB3H/6LmyVoAIcL48s9Df2dK3yojFvzC';
const B = 'AAAAC3NzaC1lZDI1NTE5AAAAIKPG2hdc16EPV/ZL27Ewu1olYEK+uglgpyAIuM3Fcdob';
const C = 'AAAAC3NzaC1lZDI1NTE5AAAAIHevbUORMGITboYc1daMBtFL0A+0TRmon1Wz5lHHweDr';
const R =
  'AAAAB3NzaC1yc2EAAAADAQABAAAAgQDltOmKL/BzjJ89xpJSoZMNNWtxtlHCiU983brQsJ2xK+mXzUXiJaTHLKIu1nIGQq5Gv6DAm0z2mTMJucB1LJiZ+LJKwGtZUH0YeOVU0tLJqN7gVSchAWnclACR7rG/Zvi/jnkhew+8jFlGBjPqMdfc7R8XOAOi5xrb0BPUkyyW6Q==';
const key = (b64: string): Buffer => Buffer.from(b64, 'base64');

// `ssh-keygen -H` of "hashed.example ssh-ed25519 A" and "[hashed.example]:2222 ssh-ed25519 B".
const HASHED_22 = `|1|5weTRqWVVlWT2rnLQJJRe+kLOq4=|XxWcXf9v27JpVJSEddNuuDfy8WY= ssh-ed25519 ${A}`;
const HASHED_2222 = `|1|cPbRwsIW76R9GeKy1i4fEzslKwI=|1yMCu5SkSssJKOUxIZXUyTynpFg= ssh-ed25519 ${B}`;

const FILE = [
  '# comment line',
  '',
  `plain.example ssh-ed25519 ${A}`,
  `[ported.example]:2222 ssh-ed25519 ${B} a comment`,
  `one.example,two.example,10.0.0.9 ssh-ed25519 ${C}`,
  `*.wild.example,!bad.wild.example ssh-ed25519 ${A}`,
  `node?.lab ssh-rsa ${R}`,
  HASHED_22,
  HASHED_2222,
  `@revoked * ssh-ed25519 ${C}`,
  `@cert-authority *.example ssh-ed25519 ${B}`,
  `@unknown-marker plain.example ssh-ed25519 ${B}`,
  'broken line',
  `plain.example ssh-rsa ${A}`, // type disagrees with the blob: corrupt, skipped
  `plain.example ssh-ed25519 not*base64`,
  '   ',
].join('\n');

test('parse: comments, blank, malformed and unknown-marker lines are skipped; line numbers kept', () => {
  const lines = parseKnownHosts(FILE);
  assert.equal(
    lines.map((l) => [l.line, l.marker ?? '', l.hosts, l.keyType]),
    [
      [3, '', 'plain.example', 'ssh-ed25519'],
      [4, '', '[ported.example]:2222', 'ssh-ed25519'],
      [5, '', 'one.example,two.example,10.0.0.9', 'ssh-ed25519'],
      [6, '', '*.wild.example,!bad.wild.example', 'ssh-ed25519'],
      [7, '', 'node?.lab', 'ssh-rsa'],
      [8, '', HASHED_22.split(' ')[0]!, 'ssh-ed25519'],
      [9, '', HASHED_2222.split(' ')[0]!, 'ssh-ed25519'],
      [10, 'revoked', '*', 'ssh-ed25519'],
      [11, 'cert-authority', '*.example', 'ssh-ed25519'],
    ],
  );
  assert.ok(lines[0]!.key.equals(key(A)));
  assert.equal(parseKnownHosts('a ssh-ed25519 ' + A + '\r\nb ssh-ed25519 ' + B + '\r\n').map((l) => l.hosts), ['a', 'b']);
});

test('names: port 22 is the bare host, other ports are bracketed', () => {
  assert.is(hostKeyName('h.example', 22), 'h.example');
  assert.is(hostKeyName('h.example', 2222), '[h.example]:2222');
  assert.is(hostKeyName('::1', 2222), '[::1]:2222');
  assert.is(knownHostsEntry('h', 22, key(A)), `h ssh-ed25519 ${A}`);
  assert.is(knownHostsEntry('127.0.0.1', 32768, key(A)), `[127.0.0.1]:32768 ssh-ed25519 ${A}`);
});

test('match: plain, ports, comma lists, wildcards, negation, case', () => {
  assert.ok(hostsMatch('plain.example', 'plain.example', 22));
  assert.ok(hostsMatch('plain.example', 'PLAIN.example', 22));
  assert.not.ok(hostsMatch('plain.example', 'plain.example', 2222), 'a bare name is port 22 only');
  assert.ok(hostsMatch('[ported.example]:2222', 'ported.example', 2222));
  assert.not.ok(hostsMatch('[ported.example]:2222', 'ported.example', 22));
  assert.not.ok(hostsMatch('[ported.example]:2222', 'ported.example', 2223));
  for (const h of ['one.example', 'two.example', '10.0.0.9']) assert.ok(hostsMatch('one.example,two.example,10.0.0.9', h, 22), h);
  assert.not.ok(hostsMatch('one.example,two.example', 'three.example', 22));
  assert.ok(hostsMatch('*.wild.example,!bad.wild.example', 'good.wild.example', 22));
  assert.not.ok(hostsMatch('*.wild.example,!bad.wild.example', 'bad.wild.example', 22), 'negation wins');
  assert.not.ok(hostsMatch('!bad.wild.example', 'other.example', 22), 'a negation alone matches nothing');
  assert.ok(hostsMatch('node?.lab', 'node1.lab', 22));
  assert.not.ok(hostsMatch('node?.lab', 'node10.lab', 22));
  assert.not.ok(hostsMatch('a.b', 'aXb', 22), 'dots are literal');
  assert.ok(hostsMatch('[10.0.0.*]:2222', '10.0.0.7', 2222));
});

test('match: hashed entries (HashKnownHosts), port 22 and other ports', () => {
  const [h22, h2222] = [HASHED_22.split(' ')[0]!, HASHED_2222.split(' ')[0]!];
  assert.ok(hostsMatch(h22, 'hashed.example', 22));
  assert.not.ok(hostsMatch(h22, 'hashed.example', 2222));
  assert.not.ok(hostsMatch(h22, 'other.example', 22));
  assert.ok(hostsMatch(h2222, 'hashed.example', 2222));
  assert.not.ok(hostsMatch(h2222, 'hashed.example', 22));
  assert.not.ok(hostsMatch('|2|abc|def', 'hashed.example', 22), 'unknown hash kinds match nothing');
  assert.not.ok(hostsMatch('|1|bm90|', 'hashed.example', 22));
});

test('check: known, new, changed (same type, other key), other types only, revoked', () => {
  const lines = parseKnownHosts(FILE);
  assert.equal(checkHostKey(lines, 'plain.example', 22, key(A)), { status: 'known', line: lines[0]! });
  assert.is(checkHostKey(lines, 'hashed.example', 22, key(A)).status, 'known');
  assert.is(checkHostKey(lines, 'hashed.example', 2222, key(B)).status, 'known');
  assert.is(checkHostKey(lines, 'two.example', 22, key(C)).status, 'revoked', '@revoked wins even over a matching line');

  const changed = checkHostKey(lines, 'plain.example', 22, key(B));
  assert.is(changed.status, 'changed');
  assert.equal(changed.status === 'changed' ? changed.lines.map((l) => l.line) : [], [3]);
  assert.is(checkHostKey(lines, 'hashed.example', 2222, key(A)).status, 'changed');
  assert.is(checkHostKey(lines, 'x.wild.example', 22, key(B)).status, 'changed');
  assert.equal(checkHostKey(lines, 'bad.wild.example', 22, key(B)), { status: 'new', otherTypes: [] });
  assert.equal(checkHostKey(lines, 'plain.example', 2222, key(A)), { status: 'new', otherTypes: [] });
  assert.equal(checkHostKey(lines, 'unknown.example', 22, key(A)), { status: 'new', otherTypes: [] });
  // Only an RSA key is known for node1.lab: an ed25519 key is new, as OpenSSH sees it.
  assert.equal(checkHostKey(lines, 'node1.lab', 22, key(A)), { status: 'new', otherTypes: ['ssh-rsa'] });
  assert.is(checkHostKey(lines, 'node1.lab', 22, key(R)).status, 'known');
  // @cert-authority lines are not host keys.
  assert.equal(checkHostKey(lines, 'ca.example', 22, key(B)), { status: 'new', otherTypes: [] });
  assert.equal(checkHostKey([], 'h', 22, key(A)), { status: 'new', otherTypes: [] });
});

test('key types and fingerprints match ssh-keygen -l', () => {
  assert.is(keyTypeOf(key(A)), 'ssh-ed25519');
  assert.is(keyTypeOf(key(R)), 'ssh-rsa');
  assert.is(keyTypeOf(Buffer.alloc(2)), undefined);
  assert.is(fingerprint(key(A)), 'SHA256:8K0el2Gx2K1DOpYtq18Ki3EaQfmzbFwmhsyg/A5Tss0');
  assert.is(fingerprint(key(R)), 'SHA256:QyxN8OBtM5V5fDAmtTTwTk7lU8drdzv5QgFTRsUWB8I');
  assert.equal(knownKeyTypes(parseKnownHosts(FILE), 'node1.lab', 22), ['ssh-rsa']);
  assert.equal(knownKeyTypes(parseKnownHosts(FILE), 'plain.example', 22), ['ssh-ed25519']);
});

test.run();
