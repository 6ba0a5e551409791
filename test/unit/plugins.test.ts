/**
 * A cloud joins by being a plugin, and nothing else: the fake cloud of the tests
 * (test/helpers/fake-cloud.ts) — a plugin made with `instancePlugin`, its own remote schema and its
 * own `dstack config fakecloud` command — is added to a registry, and the unchanged CLI (src/cli/main.ts)
 * configures it, lists it, resolves `--remote` to it, refuses what it cannot run with its reason,
 * and deletes it. The built-in registry, which does not have it, calls its remotes an unknown kind.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { registry as builtIn } from '../../src/backends/index.js';
import { localPlugin } from '../../src/backends/local/index.js';
import { BackendRegistry } from '../../src/backends/registry.js';
import { sshPlugin } from '../../src/backends/ssh/index.js';
import { main } from '../../src/cli/main.js';
import { DstackError, formatError } from '../../src/engine/errors.js';
import { assertSupported } from '../../src/engine/preflight.js';
import { fakeCloudPlugin } from '../helpers/fake-cloud.js';
import { jobSpec } from '../helpers/spec.js';
import { withTimeout } from '../helpers/timeout.js';

const registry = new BackendRegistry([localPlugin, sshPlugin, fakeCloudPlugin]);

function sink(): { stream: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  return {
    stream: new Writable({ write: (c: Buffer, _e, done) => (chunks.push(Buffer.from(c)), done()) }),
    text: () => Buffer.concat(chunks).toString('utf8'),
  };
}

/** `dstack ARGS` in this process, with `registry`'s plugins. */
async function dstack(home: string, args: string[], backends = registry): Promise<{ code: number; out: string; err: string }> {
  const [out, err] = [sink(), sink()];
  const before = process.env.DSTACK_HOME;
  process.env.DSTACK_HOME = home;
  try {
    const code = await main(args, { backends: async () => backends, stdout: out.stream, stderr: err.stream });
    return { code, out: out.text(), err: err.text() };
  } finally {
    if (before === undefined) delete process.env.DSTACK_HOME;
    else process.env.DSTACK_HOME = before;
  }
}

test(
  'the fake cloud is configured, listed, resolved and deleted through the unchanged CLI',
  withTimeout(10_000, async () => {
    const home = mkdtempSync(join(tmpdir(), 'dstack-plugins-'));
    try {
      const none = await dstack(home, ['config', 'list']);
      assert.is(
        none.err,
        'No remotes configured; add one with `dstack config ssh --name NAME --host user@host[:port]` or `dstack config fakecloud --name NAME --region REGION`\n',
      );
      const saved = await dstack(home, ['config', 'fakecloud', '--name', 'fc', '--region', 'eu-1']);
      assert.equal([saved.code, saved.err], [0, "Saved remote 'fc' in eu-1 (the default)\n"]);
      assert.is((await dstack(home, ['config', 'ssh', '--name', 'lab', '--host', 'me@h1'])).code, 0);

      const list = await dstack(home, ['config', 'list']);
      assert.is(
        list.out,
        [
          'NAME  KIND       REGION  HOSTS  JOBS/HOST  IDENTITY',
          'fc *  fakecloud  eu-1    -      -          -',
          'lab   ssh        -       me@h1  1          (agent or ~/.ssh)',
          '',
        ].join('\n'),
      );
      assert.equal(JSON.parse(readFileSync(join(home, 'config.json'), 'utf8')).remotes[0], { name: 'fc', kind: 'fakecloud', region: 'eu-1' });

      assert.is(await registry.backendIdFor(home, ''), 'fakecloud:fc');
      assert.is(await registry.backendIdFor(home, 'lab'), 'ssh:lab');
      const backend = (await registry.open('fakecloud:fc', { home }))!;
      assert.is(backend.id, 'fakecloud:fc');
      const gpu = jobSpec({ workflow: 'train', resources: { gpu: { count: 1 } } });
      assert.equal(backend.supports(gpu), { ok: false, reason: 'fakecloud offers no GPU instances in eu-1: ask for gpu: 0' });
      let refused: DstackError | undefined;
      try {
        assertSupported(backend, [{ workflow: 'prep', spec: jobSpec({ workflow: 'prep' }) }, { workflow: 'train', spec: gpu }]);
      } catch (e) {
        refused = e as DstackError;
      }
      assert.is(
        refused && formatError(refused),
        'error DS0213: fakecloud:fc cannot run train: fakecloud offers no GPU instances in eu-1: ask for gpu: 0\n' +
          '  = ask for what this backend offers, or run elsewhere: `--remote NAME` (see `dstack config list`), or without --remote',
      );
      assert.is(refused?.exitCode, 2);
      await backend.close();

      const del = await dstack(home, ['config', 'delete', 'fc', '-y']);
      assert.is(del.code, 0, del.err);
      assert.equal(JSON.parse((await dstack(home, ['config', 'list', '--json'])).out).remotes.map((r: { name: string }) => r.name), ['lab']);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }),
);

test(
  "a fake cloud remote is checked by the plugin's schema; a dstack without the plugin calls its kind unknown",
  withTimeout(10_000, async () => {
    const home = mkdtempSync(join(tmpdir(), 'dstack-plugins-'));
    try {
      const file = join(home, 'config.json');
      writeFileSync(file, JSON.stringify({ remotes: [{ name: 'fc', kind: 'fakecloud', region: '' }] }));
      const bad = await dstack(home, ['config', 'list']);
      assert.is(bad.code, 2);
      assert.is(
        bad.err,
        `error DS0210: ${file} is not a valid dstack configuration: remotes[0] (fc) region: expected to have a length of at least 1 elements (got 0)\n` +
          '  = fix or remove the file; `dstack config <ssh|fakecloud>` writes a new one\n',
      );
      writeFileSync(file, JSON.stringify({ remotes: [{ name: 'fc', kind: 'fakecloud', region: 'eu-1' }] }));
      const unknown = await dstack(home, ['config', 'list'], builtIn);
      assert.is(unknown.code, 2);
      assert.is(
        unknown.err,
        `error DS0210: ${file} is not a valid dstack configuration: remotes[0] (fc) has an unknown kind "fakecloud" (this dstack knows ssh, aws, folder, s3)\n` +
          '  = fix or remove the file; `dstack config <ssh|aws|folder|s3>` writes a new one\n',
      );
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }),
);

test(
  'the team bucket\'s remotes are plugins that store runs and run none: saved, listed, never the default, refused by --remote (DS0268), deleted',
  withTimeout(10_000, async () => {
    const home = mkdtempSync(join(tmpdir(), 'dstack-plugins-'));
    try {
      const saved = await dstack(home, ['config', 'folder', '--name', 'team', '--path', home], builtIn);
      assert.equal([saved.code, saved.err], [0, `Saved remote 'team': the team bucket in ${home}; send a run there with \`dstack push RUN\`\n`]);
      const listed = await dstack(home, ['config', 'list'], builtIn);
      assert.equal(listed.out.split('\n')[0]!.split(/ +/), ['NAME', 'KIND', 'BUCKET']);
      assert.match(listed.out, new RegExp(`^team +folder +${home}$`, 'm'));
      assert.is(JSON.parse(readFileSync(join(home, 'config.json'), 'utf8')).default, undefined, 'not the default remote');
      const refused = await builtIn.backendIdFor(home, 'team').then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(refused instanceof DstackError);
      assert.is(formatError(refused), "error DS0268: remote 'team' is a folder bucket: it stores runs, it does not run them\n  = name a pool or a cloud with --remote NAME (see `dstack config list`); the team bucket serves the cache and `dstack push` by itself");
      const none = await builtIn.backendIdFor(home, '').catch((e: unknown) => e);
      assert.is((none as DstackError).code, 'DS0211', '--remote alone finds no default');
      const deleted = await dstack(home, ['config', 'delete', 'team', '-y'], builtIn);
      assert.is(deleted.code, 0, deleted.err);
      assert.equal(JSON.parse(readFileSync(join(home, 'config.json'), 'utf8')).remotes, []);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }),
);

test('two plugins of one kind are refused', () => {
  assert.throws(() => new BackendRegistry([localPlugin, sshPlugin, sshPlugin]), /two backend plugins of kind 'ssh'/);
});

test.run();
