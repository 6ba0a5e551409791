/**
 * Tags in the team bucket (`repos/<repo>/tags/<name>.json`): created once, by whoever gets there
 * first. Two teammates pushing the same tag name at once cannot both win — the write is create-only
 * — and the one who loses is told who holds the name; pushing a tag that says the same again is
 * not an error.
 */
import { DstackError } from '../engine/errors.js';
import type { ContentHash } from '../engine/types.js';
import { tagKey, tagsPrefix } from './layout.js';
import type { TeamStore } from './team-store.js';

export interface TeamTag {
  readonly version: 1;
  readonly name: string;
  readonly home: string;
  readonly owner: string;
  /** The run (its name in the bucket) it was taken from; absent for a tag of local files. */
  readonly run?: string;
  readonly manifest: ContentHash;
  readonly files: number;
  readonly size: number;
  readonly createdAt: number;
}

function parseTag(body: Buffer, key: string, where: string): TeamTag {
  try {
    const t = JSON.parse(body.toString('utf8')) as TeamTag;
    if (t.version === 1 && typeof t.name === 'string' && typeof t.owner === 'string' && /^[0-9a-f]{64}$/.test(t.manifest) && typeof t.createdAt === 'number') return t;
  } catch {
    // reported below
  }
  throw new DstackError('DS0266', `the tag record ${where}/${key} is damaged`, { hint: 'ask its owner to push the tag again' });
}

export async function getTeamTag(store: TeamStore, repo: string, name: string, signal?: AbortSignal): Promise<TeamTag | undefined> {
  const key = tagKey(repo, name);
  const body = await store.bucket.read(key, signal);
  return body && parseTag(body, key, store.where);
}

export async function listTeamTags(store: TeamStore, repo: string, signal?: AbortSignal): Promise<TeamTag[]> {
  const out: TeamTag[] = [];
  for await (const e of store.bucket.list(tagsPrefix(repo), signal ? { signal } : {})) {
    if (!e.key.endsWith('.json')) continue;
    const body = await store.bucket.read(e.key, signal);
    if (body) out.push(parseTag(body, e.key, store.where));
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : 1));
}

/**
 * Creates the tag; `created: false` when the same tag (same artifacts) is already there. A tag of
 * the same name with other artifacts is DS0270 naming who made it and when.
 */
export async function putTeamTag(store: TeamStore, repo: string, tag: TeamTag, signal?: AbortSignal): Promise<{ readonly created: boolean }> {
  const key = tagKey(repo, tag.name);
  if (await store.bucket.write(key, Buffer.from(JSON.stringify(tag)), { createOnly: true, ...(signal ? { signal } : {}) })) return { created: true };
  const there = await getTeamTag(store, repo, tag.name, signal);
  if (there && there.manifest === tag.manifest) return { created: false };
  const by = there ? `${there.owner}${there.run ? ` (from run ${there.run})` : ''}, ${new Date(there.createdAt).toISOString().slice(0, 16).replace('T', ' ')}` : 'someone else';
  throw new DstackError('DS0270', `tag '${tag.name}' already exists in ${store.where} with other artifacts: it was pushed by ${by}`, {
    hint: `pick another name (\`dstack tags add NEW-NAME ${tag.run ?? 'RUN'}\`, then \`dstack push :NEW-NAME\`), or use theirs: \`dstack pull :${tag.name}\``,
  });
}
