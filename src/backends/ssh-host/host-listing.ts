/**
 * The artifact paths under a job's folder on a host, listed in ONE exec and read here as the local
 * store would save them: files (exec bit kept), folders (0755), symlinks that resolve inside
 * (escaping ones refused, DS0302), nothing else — fifos, sockets and devices are named and skipped.
 * `find` gives the tree, `realpath` where each link's chain ends, `sha256sum` the content.
 */
import { escapingSymlinkError, symlinkTargetInside } from '../../artifacts/manifest.js';
import type { ManifestEntry, SkippedEntry } from '../../artifacts/types.js';
import { DstackError } from '../../engine/errors.js';
import { insideRelative } from '../../engine/paths.js';
import { asContentHash, type ArtifactSpec } from '../../engine/types.js';
import type { SshConnection } from './connect.js';
import { runScript } from './shell.js';

export interface Listed {
  readonly entries: Map<string, ManifestEntry>;
  /** Paths of files, by hash, for fetching. */
  readonly files: Map<string, string>;
  readonly missing: string[];
  readonly skipped: SkippedEntry[];
}

/**
 * Records separated by NUL: `R root`, then per path `P path parent` + find's entries + `E`, `L link
 * resolved` per symlink (LOOP when the chain never ends: `a -> b`, `b -> /etc` leaves), or `M path`
 * when it is missing; then `H` and sha256sum's lines.
 */
const LIST_SCRIPT = [
  'cd "$1" || exit 3',
  'shift',
  'printf "R\\0%s\\0" "$(pwd -P)"',
  'for p in "$@"; do',
  '  if [ -e "$p" ] || [ -L "$p" ]; then',
  '    printf "P\\0%s\\0%s\\0" "$p" "$(cd "$(dirname -- "$p")" && pwd -P)"',
  '    find "$p" -printf "%y\\0%m\\0%s\\0%p\\0%l\\0"',
  '    printf "E\\0"',
  '    find "$p" -type l -exec sh -c \'for l; do printf "L\\0%s\\0%s\\0" "$l" "$(realpath -m -- "$l" 2>/dev/null || printf LOOP)"; done\' sh {} +',
  '  else printf "M\\0%s\\0" "$p"; fi',
  'done',
  'printf "H\\0"',
  'for p in "$@"; do if [ -e "$p" ] || [ -L "$p" ]; then find "$p" -type f -print0; fi; done | xargs -0 -r sha256sum -z',
].join('\n');

export async function listOnHost(connection: SshConnection, root: string, specs: readonly ArtifactSpec[]): Promise<Listed> {
  const out = await runScript(connection, 'listing the artifacts', LIST_SCRIPT, [root, ...specs.map(relativeOf).map((r) => (r === '' ? '.' : r))]);
  const reader = new ListingReader(out.toString('utf8').split('\0'), connection.label);
  reader.readTree();
  return reader.readHashes();
}

function relativeOf(spec: ArtifactSpec): string {
  const rel = spec.path === '' ? '' : insideRelative(spec.path);
  if (rel === undefined) {
    throw new DstackError('DS0009', `artifact path '${spec.path}' leaves the working directory`, {
      hint: 'artifact paths are relative to the working directory and may not contain `..` that climbs out',
    });
  }
  return rel;
}

const norm = (p: string): string => (p === '.' ? '' : p.startsWith('./') ? p.slice(2) : p);

/** Reads LIST_SCRIPT's answer field by field. */
class ListingReader {
  private i = 0;
  private realRoot = '';
  private readonly entries = new Map<string, ManifestEntry>();
  /** Files seen by find, waiting for their hash. */
  private readonly pending = new Map<string, { mode: number; size: number }>();
  private readonly missing: string[] = [];
  private readonly skipped: SkippedEntry[] = [];

  constructor(
    private readonly fields: readonly string[],
    private readonly label: string,
  ) {}

  private next(): string {
    return this.fields[this.i++] ?? '';
  }

  /** Everything up to `H`: the tree of each path, and where its links lead. */
  readTree(): void {
    for (;;) {
      const tag = this.next();
      if (tag === 'R') this.realRoot = this.next();
      else if (tag === 'M') this.missing.push(norm(this.next()));
      else if (tag === 'P') this.readPath();
      else if (tag === 'L') this.readLink();
      else if (tag === 'H') return;
      else throw new DstackError('DS0209', `unexpected answer from ${this.label} while listing the artifacts`);
    }
  }

  private inside(path: string): boolean {
    return path === this.realRoot || path.startsWith(`${this.realRoot}/`);
  }

  private readPath(): void {
    const rel = norm(this.next());
    const parent = this.next();
    if (rel !== '' && !this.inside(parent)) {
      throw new DstackError('DS0302', `artifact path '${rel}' is reached through a symlink that leaves the working directory (to '${parent}')`);
    }
    for (;;) {
      const type = this.next();
      if (type === 'E' || type === '') return;
      const mode = parseInt(this.next(), 8);
      const size = Number(this.next());
      const path = norm(this.next());
      const target = this.next();
      if (type === 'l') {
        if (symlinkTargetInside(path, target) === undefined) throw escapingSymlinkError(path, target);
        this.entries.set(path, { type: 'symlink', path, target });
      } else if (type === 'd') {
        if (path !== '') this.entries.set(path, { type: 'dir', path, mode: 0o755 });
      } else if (type === 'f') {
        this.pending.set(path, { mode: mode & 0o111 ? 0o755 : 0o644, size });
      } else {
        // Reading a fifo would hang, a device could be anything: not artifacts, and the user is told.
        this.skipped.push({ path: path || '.', kind: type === 'p' ? 'fifo' : type === 's' ? 'socket' : 'device' });
      }
    }
  }

  private readLink(): void {
    const path = norm(this.next());
    const resolved = this.next();
    if (resolved !== 'LOOP' && !this.inside(resolved)) {
      const e = this.entries.get(path);
      throw escapingSymlinkError(path, e?.type === 'symlink' ? e.target : '?', `resolving to '${resolved}' on ${this.label}`);
    }
  }

  /** The rest: `sha256sum -z` lines, "<hash>  <name>\0" (names unescaped with -z); every file must have one. */
  readHashes(): Listed {
    const files = new Map<string, string>();
    for (; this.i < this.fields.length; this.i++) {
      const m = /^([0-9a-f]{64}) [ *](.*)$/s.exec(this.fields[this.i]!);
      const path = m && norm(m[2]!);
      const f = path !== null ? this.pending.get(path) : undefined;
      if (!m || path === null || !f) continue;
      const hash = asContentHash(m[1]!);
      this.entries.set(path, { type: 'file', path, size: f.size, mode: f.mode, hash });
      files.set(hash, path);
    }
    for (const [path] of this.pending) {
      if (!this.entries.has(path)) throw new DstackError('DS0301', `artifact file '${path}' on ${this.label} could not be read`);
    }
    return { entries: this.entries, files, missing: this.missing, skipped: this.skipped };
  }
}
