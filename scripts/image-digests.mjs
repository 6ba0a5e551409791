#!/usr/bin/env node
// Reads the manifest digest of every default image (provider bash, src/engine/default-image.ts) from
// the registry and writes it into src/engine/default-image-digests.json, so that a workflow without
// `image:` pulls `name:tag@sha256:…` — exactly that image, whatever the tag points at later. It needs
// the registry (Docker Hub by default): run it on a machine that reaches it, and commit the result.
//
//   node scripts/image-digests.mjs [--registry URL] [--check] [--file PATH]
//
// --registry  the registry's HTTP API (default https://registry-1.docker.io, Docker Hub's)
// --check     write nothing; exit 1 when a digest in the file differs from the registry's or is
//             still null, naming each
// --file      the digests file (default the shipped one); its keys are the images asked for
//
// The digest is the registry's `Docker-Content-Digest` for the tag's manifest, asked with the media
// types of an OCI index, a Docker manifest list and both single manifests: a multi-platform image
// gives its index, which the engine resolves to its own platform when it pulls. Anonymous pull
// tokens are fetched from whatever `WWW-Authenticate: Bearer realm=…,service=…,scope=…` challenge the
// registry answers with (Docker Hub's is auth.docker.io), so any registry with public images works.
//
// Prints `REF DIGEST` lines on stdout. Exit 0; 1: --check found a difference; 2: bad usage or an
// unreadable file; 3: the registry or its token server is unreachable, refuses, or lacks a tag.
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const HUB = 'https://registry-1.docker.io';
const DEFAULT_FILE = new URL('../src/engine/default-image-digests.json', import.meta.url).pathname;
const ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');
const TIMEOUT_MS = 30_000;
const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

class Failure extends Error {
  constructor(message, exitCode) {
    super(message);
    this.exitCode = exitCode;
  }
}

function options() {
  try {
    const { values } = parseArgs({ options: { registry: { type: 'string' }, check: { type: 'boolean' }, file: { type: 'string' } } });
    const registry = (values.registry ?? HUB).replace(/\/+$/, '');
    if (!/^https?:\/\/[^/]+$/.test(registry)) throw new Error(`--registry wants the registry's address, e.g. ${HUB} or http://127.0.0.1:5000 (got '${values.registry}')`);
    return { registry, check: values.check === true, file: values.file ?? DEFAULT_FILE };
  } catch (e) {
    throw new Failure(`${e.message}\nusage: node scripts/image-digests.mjs [--registry URL] [--check] [--file PATH]`, 2);
  }
}

function readTable(file) {
  let data;
  try {
    data = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Failure(`cannot read ${file}: ${e.message}`, 2);
  }
  const digests = data?.digests;
  if (typeof digests !== 'object' || digests === null || Array.isArray(digests) || Object.keys(digests).length === 0)
    throw new Failure(`${file} has no "digests" object of image references`, 2);
  return data;
}

/** `dstackai/miniforge:py3.9-0.2` → its repository path in the registry and its tag (Docker Hub's official images live under library/). */
function splitRef(ref, registry) {
  const colon = ref.lastIndexOf(':');
  if (colon <= ref.lastIndexOf('/') || ref.includes('@')) throw new Failure(`'${ref}' is not NAME:TAG`, 2);
  const name = ref.slice(0, colon);
  return { repo: registry === HUB && !name.includes('/') ? `library/${name}` : name, tag: ref.slice(colon + 1) };
}

async function call(url, init, what) {
  try {
    return await fetch(url, { ...init, redirect: 'follow', signal: AbortSignal.timeout(TIMEOUT_MS) });
  } catch (e) {
    const why = e.name === 'TimeoutError' ? `no answer within ${TIMEOUT_MS / 1000} s` : (e.cause?.code ?? e.cause?.message ?? e.message);
    throw new Failure(`cannot reach ${what} (${new URL(url).origin}): ${why}`, 3);
  }
}

/** The registry's own words for a refusal: `CODE: message` of its `errors`, else the status text. */
async function reason(res) {
  const text = await res.text().catch(() => '');
  try {
    const first = JSON.parse(text).errors?.[0];
    if (first?.code) return `${res.status} ${first.code}: ${first.message ?? ''}`.trim();
  } catch {
    // not the registry's JSON
  }
  return `${res.status} ${res.statusText}`.trim();
}

/** `Bearer realm="…",service="…",scope="…"` → its scheme and parameters. */
function challenge(header) {
  const scheme = /^\s*(\w+)/.exec(header ?? '')?.[1]?.toLowerCase() ?? '';
  const params = {};
  for (const m of (header ?? '').matchAll(/(\w+)=(?:"([^"]*)"|([^\s,]+))/g)) params[m[1].toLowerCase()] = m[2] ?? m[3];
  return { scheme, params };
}

async function bearerToken(header, repo) {
  const { scheme, params } = challenge(header);
  if (scheme !== 'bearer' || !params.realm)
    throw new Failure(`the registry wants credentials for ${repo} (${header || 'no WWW-Authenticate'}); this script reads public images only`, 3);
  const url = new URL(params.realm);
  if (params.service) url.searchParams.set('service', params.service);
  url.searchParams.set('scope', params.scope ?? `repository:${repo}:pull`);
  const res = await call(url, {}, 'the token server');
  if (!res.ok) throw new Failure(`the token server ${url.origin} refused an anonymous pull token for ${repo}: ${await reason(res)}`, 3);
  const body = await res.json().catch(() => ({}));
  const token = body.token ?? body.access_token;
  if (typeof token !== 'string' || !token) throw new Failure(`the token server ${url.origin} answered no token for ${repo}`, 3);
  return token;
}

/** The digest the registry gives for `ref`'s manifest, fetching a pull token when challenged (once per repository). */
async function manifestDigest(registry, ref, tokens) {
  const { repo, tag } = splitRef(ref, registry);
  const url = `${registry}/v2/${repo}/manifests/${encodeURIComponent(tag)}`;
  const ask = (method) => call(url, { method, headers: { Accept: ACCEPT, ...(tokens.has(repo) ? { Authorization: `Bearer ${tokens.get(repo)}` } : {}) } }, 'the registry');
  let res = await ask('HEAD');
  if (res.status === 401 && !tokens.has(repo)) {
    tokens.set(repo, await bearerToken(res.headers.get('www-authenticate'), repo));
    res = await ask('HEAD');
  }
  // A HEAD answer has no body: ask again with GET for the registry's reason, or for the bytes to hash.
  if (!res.ok || !res.headers.get('docker-content-digest')) res = await ask('GET');
  if (res.status === 404) throw new Failure(`${ref}: ${registry} has no such tag (${await reason(res)})`, 3);
  if (res.status === 401 || res.status === 403) throw new Failure(`${ref}: ${registry} refused to give its manifest (${await reason(res)})`, 3);
  if (!res.ok) throw new Failure(`${ref}: ${registry} answered ${await reason(res)}`, 3);
  const header = res.headers.get('docker-content-digest');
  const digest = header ?? `sha256:${createHash('sha256').update(Buffer.from(await res.arrayBuffer())).digest('hex')}`;
  if (!DIGEST_RE.test(digest)) throw new Failure(`${ref}: ${registry} gave a digest that is not sha256 (${digest})`, 3);
  return digest;
}

async function main() {
  const o = options();
  const data = readTable(o.file);
  const tokens = new Map();
  const found = {};
  for (const ref of Object.keys(data.digests)) {
    found[ref] = await manifestDigest(o.registry, ref, tokens);
    process.stdout.write(`${ref} ${found[ref]}\n`);
  }
  if (o.check) {
    const differ = Object.keys(found).filter((ref) => data.digests[ref] !== found[ref]);
    for (const ref of differ)
      process.stderr.write(data.digests[ref] ? `${ref}: the file has ${data.digests[ref]}, ${o.registry} has ${found[ref]}\n` : `${ref}: not pinned in the file; ${o.registry} has ${found[ref]}\n`);
    process.stderr.write(differ.length ? `${differ.length} of ${Object.keys(found).length} differ from ${o.registry}: run without --check to write them\n` : `all ${Object.keys(found).length} match ${o.registry}\n`);
    return differ.length ? 1 : 0;
  }
  const next = { ...data, registry: o.registry, read: new Date().toISOString().slice(0, 10), digests: { ...data.digests, ...found } };
  const tmp = `${o.file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(next, null, 2)}\n`);
  renameSync(tmp, o.file);
  process.stderr.write(`wrote ${Object.keys(found).length} digests to ${o.file}\n`);
  return 0;
}

try {
  process.exitCode = await main();
} catch (e) {
  if (!(e instanceof Failure)) throw e;
  process.stderr.write(`image-digests: ${e.message}\n`);
  process.exitCode = e.exitCode;
}
