/**
 * Real pulls against a real registry on loopback (test/helpers/registry.ts), through the local
 * backend: progress as the engine reports it, a name the registry does not have, and a private
 * image behind htpasswd — without credentials, with wrong ones, with the right ones.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { localPlugin } from '../../src/backends/local/index.js';
import type { Backend, BackendNotice } from '../../src/engine/backend.js';
import { BUSYBOX, closeTestDocker, ensureBusybox, testDocker } from '../helpers/docker.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { busyboxSpec } from '../helpers/job-harness.js';
import { withTimeout } from '../helpers/timeout.js';
import { rejectsWith } from '../helpers/errors.js';

const USER = 'alice';
const PASSWORD = `pw-${process.pid}-${Date.now()}`;
const LAYER = 3_000_000;

let home = '';
let open: Registry;
let locked: Registry;
let backend: Backend;

test.before(async () => {
  await ensureBusybox();
  home = await mkdtemp(join(tmpdir(), 'dstack-registry-home-'));
  [open, locked] = await Promise.all([startRegistry(), startRegistry({ auth: { username: USER, password: PASSWORD } })]);
  backend = localPlugin.open({ home });
});

test.after(async () => {
  await backend?.close();
  await Promise.all([open?.stop(), locked?.stop()]);
  closeTestDocker();
  await rm(home, { recursive: true, force: true });
});

const notices = (): { list: BackendNotice[]; notify: (n: BackendNotice) => void } => {
  const list: BackendNotice[] = [];
  return { list, notify: (n) => list.push(n) };
};


test(
  'a pull from the registry: progress in bytes up to the layer, then pull-done; the digest is the pulled image',
  withTimeout(90_000, async () => {
    const image = await open.pushFresh(`dstack-test/pull:${process.pid}`, { sizeBytes: LAYER });
    const n = notices();
    const digest = await backend.imageDigest(busyboxSpec({ image }), { notify: n.notify, signal: AbortSignal.timeout(60_000) });
    const progress = n.list.filter((x): x is Extract<BackendNotice, { kind: 'pull-progress' }> => x.kind === 'pull-progress');
    assert.ok(progress.length >= 1, JSON.stringify(n.list));
    // The base layer is already in the engine ("Already exists"); the fresh one is downloaded.
    const last = progress.at(-1)!;
    assert.ok(last.total >= LAYER, `total ${last.total}`);
    assert.is(last.current, last.total, 'the last progress is the whole download');
    assert.ok(progress.every((p) => p.image === image && p.current <= p.total));
    assert.equal(n.list.at(-1), { kind: 'pull-done', image });
    const inspected = (await testDocker().imageInspect(image)) as { Id: string };
    assert.is(digest, inspected.Id);
  }),
);

test(
  'a name the registry does not have: DS0201 with its answer, nothing pulled',
  withTimeout(60_000, async () => {
    const image = `${open.host}/dstack-test/does-not-exist:${process.pid}`;
    const e = await rejectsWith(backend.imageDigest(busyboxSpec({ image }), { notify: () => undefined, signal: AbortSignal.timeout(60_000) }), 'DS0201');
    assert.match(e.message, `image '${image}' is not available locally and could not be pulled (`);
    assert.match(e.message, 'manifest unknown');
  }),
);

test(
  'a private image: no registry_auth → DS0290, a wrong password → DS0291 (never echoed), the right one pulls',
  withTimeout(90_000, async () => {
    const image = await locked.pushTagOf(BUSYBOX, `private/app:${process.pid}`);
    const anonymous = await rejectsWith(backend.imageDigest(busyboxSpec({ image }), { notify: () => undefined, signal: AbortSignal.timeout(60_000) }), 'DS0290');
    assert.match(anonymous.message, `image '${image}' needs credentials: the registry answered '`);
    assert.match(anonymous.hint ?? '', 'registry_auth:');

    const wrong = busyboxSpec({ image, registryAuth: { username: USER, password: 'not-the-password' } });
    const refused = await rejectsWith(backend.imageDigest(wrong, { notify: () => undefined, signal: AbortSignal.timeout(60_000) }), 'DS0291');
    assert.match(refused.message, `the registry refused the credentials of registry_auth for image '${image}' (`);
    assert.not.ok(refused.message.includes('not-the-password'));

    const right = busyboxSpec({ image, registryAuth: { username: USER, password: PASSWORD }, script: 'echo private-ok' });
    const n = notices();
    const digest = await backend.imageDigest(right, { notify: n.notify, signal: AbortSignal.timeout(60_000) });
    assert.equal(n.list.at(-1), { kind: 'pull-done', image });
    assert.is(digest, ((await testDocker().imageInspect(BUSYBOX)) as { Id: string }).Id, 'the same image as the one pushed');
  }),
);

test(
  'nothing is left: no container made to build an image',
  withTimeout(20_000, async () => {
    const left = await testDocker().call<{ Id: string }[]>('GET', '/containers/json', { query: { all: true, filters: JSON.stringify({ name: ['dstack-registry-'] }) } });
    assert.equal(left.map((c) => c.Id), []);
  }),
);

test.run();
