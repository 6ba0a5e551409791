/** Secrets at execution: masking across chunk boundaries, commands that use them, names that are not JavaScript's. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DstackError } from '../../src/engine/errors.js';
import { BASH_BOOTSTRAP } from '../../src/engine/resolve.js';
import { containerSecrets, secretSourceOf, StreamMasker } from '../../src/engine/secrets.js';
import { secretMarker } from '../../src/engine/types.js';
import { jobSpec } from '../helpers/spec.js';
import { withTimeout } from '../helpers/timeout.js';

/** A masker whose timer never fires on its own within a test (flushes come from close()). */
function masked(values: readonly string[], chunks: readonly (string | Buffer)[], flushMs = 60_000): string {
  const out: Buffer[] = [];
  const m = new StreamMasker(values, (d) => out.push(d), flushMs);
  for (const c of chunks) m.write(typeof c === 'string' ? Buffer.from(c) : c);
  m.close();
  return Buffer.concat(out).toString('utf8');
}

const SECRET = 'hunter2-very-secret';

test('a value split at every offset, and across three chunks, is masked, and nothing of it shows', () => {
  const text = `before ${SECRET} after\n`;
  for (let i = 0; i <= text.length; i++) {
    const got = masked([SECRET], [text.slice(0, i), text.slice(i)]);
    assert.is(got, 'before *** after\n', `split at ${i}`);
  }
  for (let i = 1; i < text.length; i++) {
    for (let j = i + 1; j < text.length; j += 3) {
      assert.is(masked([SECRET], [text.slice(0, i), text.slice(i, j), text.slice(j)]), 'before *** after\n', `split at ${i}, ${j}`);
    }
  }
});

test('bytes split inside a multi-byte character, several values, one the start of another, and one per byte', () => {
  const v = 'пароль-секрет';
  const bytes = Buffer.from(`x${v}y`);
  for (let i = 0; i <= bytes.length; i++) assert.is(masked([v], [bytes.subarray(0, i), bytes.subarray(i)]), 'x***y', `split at byte ${i}`);
  assert.is(masked(['abcd', 'abcdefgh'], ['xxabcdefghyy abcd z']), 'xx***yy *** z');
  assert.is(masked([SECRET], [...`a${SECRET}b${SECRET}`].map((c) => c)), 'a***b***');
  assert.is(masked(['abc'], ['abc']), 'abc', 'values under 4 characters are not masked');
});

test('an ordinary print loop in random chunks: every occurrence masked, the rest byte for byte', () => {
  let seed = 42;
  const random = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  let text = '';
  for (let i = 0; i < 20_000; i++) text += `step ${i} token=${SECRET} loss=${(1 / (i + 1)).toFixed(6)}\n`;
  const chunks: string[] = [];
  for (let at = 0; at < text.length; ) {
    const n = 1 + Math.floor(random() * 8192);
    chunks.push(text.slice(at, at + n));
    at += n;
  }
  const got = masked([SECRET], chunks);
  assert.not.ok(got.includes('hunter2'), 'no part of a value long enough to recognise');
  assert.is(got, text.split(SECRET).join('***'));
});

test(
  'what is held back (a prompt ending in the start of a value) comes out after the flush time; the rest of the value is still masked',
  withTimeout(5000, async () => {
    const out: string[] = [];
    const m = new StreamMasker([SECRET], (d) => out.push(d.toString()), 30);
    m.write(Buffer.from('Password: hunt'));
    assert.equal(out, ['Password: '], 'a possible start of the value is held');
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (out.length === 2) resolve(clearInterval(poll));
      }, 5);
    });
    assert.equal(out, ['Password: ', 'hunt'], 'shown after the flush time, so a prompt without a newline appears');
    m.write(Buffer.from('er2-very-secret!\n'));
    m.close();
    assert.equal(out, ['Password: ', 'hunt', '***!\n']);
  }),
);

test('a secret in commands reaches the shell through an env variable; in env as its value; in an entrypoint as is', () => {
  const source = secretSourceOf({ TOKEN: 's3cr3t-value', KEY: 'k3y-value' });
  const script = `echo ${secretMarker('TOKEN')} | md5sum\ncurl -H "auth: ${secretMarker('KEY')}" x`;
  const bash = jobSpec({
    command: ['/bin/sh', '-c', BASH_BOOTSTRAP, 'dstack', script],
    env: { A: `x-${secretMarker('KEY')}`, B: 'plain' },
  });
  const c = containerSecrets(bash, source);
  assert.equal(c.spec.command, ['/bin/sh', '-c', BASH_BOOTSTRAP, 'dstack', 'echo ${DSTACK_SECRET_TOKEN} | md5sum\ncurl -H "auth: ${DSTACK_SECRET_KEY}" x']);
  assert.equal(c.env, { A: 'x-k3y-value', B: 'plain', DSTACK_SECRET_TOKEN: 's3cr3t-value', DSTACK_SECRET_KEY: 'k3y-value' });
  assert.equal([...c.revealed].sort(), ['k3y-value', 's3cr3t-value']);
  assert.not.ok(c.spec.command!.join('').includes('\0'), 'no NUL reaches argv');
  assert.ok(bash.command![4]!.includes('\0'), 'the recorded spec is untouched');

  const docker = jobSpec({ provider: 'docker', entrypoint: ['/app', `--token=${secretMarker('TOKEN')}`], command: [`serve ${secretMarker('KEY')}`] });
  const d = containerSecrets(docker, source);
  assert.equal(d.spec.entrypoint, ['/app', '--token=s3cr3t-value']);
  assert.equal(d.spec.command, ['serve k3y-value']);
  assert.equal(d.env, {});
});

test('an unknown secret is DS0016 whatever its name, constructor and __proto__ included', () => {
  const source = secretSourceOf(JSON.parse('{"__proto__": 5, "real": "value-1234"}') as Record<string, unknown>);
  assert.is(source('real'), 'value-1234');
  for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'missing']) {
    assert.is(source(name), undefined, name);
    const spec = jobSpec({ command: ['/bin/sh', '-c', `echo ${secretMarker(name)}`] });
    try {
      containerSecrets(spec, source);
      assert.unreachable(name);
    } catch (e) {
      assert.instance(e, DstackError);
      assert.is((e as DstackError).code, 'DS0016', name);
      assert.match((e as DstackError).message, `secret '${name}'`);
    }
  }
});

test.run();
