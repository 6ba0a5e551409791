/**
 * A host's object cache (`$HOME/.dstack/objects/sha256/ab/<hash>`) checked the way the local store
 * is: nothing there is handed to a job on trust. One exec per job asks which objects the host has
 * and proves the ones it has sound — cheaply when an object was hashed before and its (inode, size,
 * mtime, ctime) are unchanged since (records in `objects/verified`), with sha256sum otherwise —
 * moving a damaged one to `objects/quarantine/` and reporting it missing, so it is sent again. What
 * arrives by SFTP is hashed on the host before it takes its name.
 *
 * ctime moves whenever dstack itself marks an object used (`touch -a`), hard-links it into a job's
 * folder or removes that link: each of those steps re-records the objects it just proved or found
 * sound, so the steady state hashes nothing, and a write to an object — its mtime put back or not —
 * is caught by the next job. Eviction goes least recently used first by the access time.
 */
import type { SshConnection } from './connect.js';
import type { HostLayout } from './host-layout.js';
import { shellQuote } from './shell.js';
import { DstackError } from '../../engine/errors.js';

/** `objects/verified` beside `objects/sha256`. */
const recordsOf = (layout: HostLayout): string => `${layout.objects.replace(/\/sha256$/, '')}/verified`;
const quarantineOf = (layout: HostLayout): string => `${layout.objects.replace(/\/sha256$/, '')}/quarantine`;

/** The identity of an inode's content as `stat -c` prints it: inode, size, mtime, ctime. */
const ID = '%i:%s:%.9Y:%.9Z';
/**
 * Prints "<name> <id>" for the paths on its stdin (relative names stripped to the hash). A group, so
 * `RECORD < file` and `… | RECORD >> file` feed and catch the whole pipeline.
 */
const RECORD = `{ xargs -r stat -c '%n ${ID}' -- 2>/dev/null | awk '{ n = $1; sub(/.*\\//, "", n); print n, $2 }'; }`;

/**
 * stdin: "<hash> <size>" per wanted object. stdout: "M <hash>" for each the host lacks (or had
 * damaged: then also "Q <hash>", and it is in quarantine now).
 */
const CHECK_SCRIPT = `set -u
O=$1; T=$2; Q=$3; V=$4
mkdir -p "$O" "$T" "$Q" || exit 3
[ -f "$V" ] || : > "$V"
cd "$O" || exit 3
W=$(mktemp -d "$T/check.XXXXXX") || exit 3
trap 'rm -rf "$W"' EXIT
cat > "$W/want"
awk '{ print substr($1, 1, 2) "/" $1 }' "$W/want" | xargs -r stat -c '%n ${ID} %s %F' -- > "$W/stat" 2>/dev/null
awk 'FILENAME == ARGV[1] { want[$1] = $2; next }
     FILENAME == ARGV[2] { h = $1; sub(/^..\\//, "", h); id[h] = $2; sz[h] = $3; ty[h] = $4; next }
     { rec[$1] = $2 }
     END { for (h in want) {
       if (!(h in id)) print "M", h
       else if (ty[h] != "regular" || sz[h] != want[h]) print "B", h
       else if (rec[h] == id[h]) print "K", h
       else print "C", h } }' "$W/want" "$W/stat" "$V" > "$W/plan"
awk '$1 == "C" { print substr($2, 1, 2) "/" $2 }' "$W/plan" | xargs -r sha256sum -- > "$W/sums" 2>/dev/null
awk 'FILENAME == ARGV[1] { if ($1 != "C") print; else c[$2] = 1; next }
     { n = $2; sub(/^..\\//, "", n); if (n in c) { print ($1 == n ? "G" : "B"), n; delete c[n] } }
     END { for (h in c) print "M", h }' "$W/plan" "$W/sums" > "$W/done"
while read -r s h; do
  case $s in
    M) echo "M $h" ;;
    B) mv -f -- "\${h%"\${h#??}"}/$h" "$Q/$h-$$" 2>/dev/null; echo "Q $h"; echo "M $h" ;;
  esac
done < "$W/done"
awk '$1 == "K" || $1 == "G" { print substr($2, 1, 2) "/" $2 }' "$W/done" > "$W/used"
xargs -r touch -a -c -- < "$W/used"
# Marking them used moved their ctime: proved sound just now, they are recorded afresh.
${RECORD} < "$W/used" >> "$V"
if [ "$(wc -l < "$V")" -gt 50000 ]; then awk '{ r[$1] = $2 } END { for (h in r) print h, r[h] }' "$V" > "$W/v" && mv -f -- "$W/v" "$V"; fi
exit 0
`;

export interface HostCheck {
  /** Objects to send: not there, or there damaged. */
  readonly missing: readonly string[];
  /** Damaged objects moved to the host's quarantine. */
  readonly quarantined: readonly string[];
}

/** Of `sizes` (hash → size), what the host lacks; the rest proved sound and marked used. One exec. */
export async function checkOnHost(connection: SshConnection, layout: HostLayout, sizes: ReadonlyMap<string, number>): Promise<HostCheck> {
  const stdin = [...sizes].map(([h, s]) => `${h} ${s}\n`).join('');
  const r = await connection.exec(`sh -c ${shellQuote(CHECK_SCRIPT)} dstack ${[layout.objects, layout.objectsTmp, quarantineOf(layout), recordsOf(layout)].map(shellQuote).join(' ')}`, { stdin });
  if (r.code !== 0) {
    throw new DstackError('DS0209', `checking the object cache failed on ${connection.label} (exit ${r.code}): ${r.stderr.toString('utf8').trim().slice(0, 500)}`);
  }
  const missing: string[] = [];
  const quarantined: string[] = [];
  for (const line of r.stdout.toString('utf8').split('\n')) {
    const [tag, hash] = line.split(' ');
    if (!hash || !/^[0-9a-f]{64}$/.test(hash)) continue;
    if (tag === 'M') missing.push(hash);
    else if (tag === 'Q') quarantined.push(hash);
  }
  return { missing, quarantined };
}

/**
 * stdin: "<temp path> <hash>" per upload. Each is hashed on the host; a sound one takes its name (and
 * a record), a wrong one is removed and printed "B <hash>".
 */
const ACCEPT_SCRIPT = `set -u
O=$1; T=$2; V=$3
mkdir -p "$O" "$T" && cd "$O" || exit 3
W=$(mktemp -d "$T/accept.XXXXXX") || exit 3
trap 'rm -rf "$W"' EXIT
cat > "$W/up"
awk '{ print $1 }' "$W/up" | xargs -r sha256sum -- > "$W/sums" 2>/dev/null
awk 'FILENAME == ARGV[1] { want[$1] = $2; next } { got[$2] = $1 }
     END { for (t in want) print (got[t] == want[t] ? "G" : "B"), t, want[t] }' "$W/up" "$W/sums" > "$W/res"
: > "$W/placed"
while read -r s t h; do
  d=\${h%"\${h#??}"}
  if [ "$s" = G ]; then mkdir -p "$d" && mv -f -- "$t" "$d/$h" && echo "$d/$h" >> "$W/placed"
  else rm -f -- "$t"; echo "B $h"; fi
done < "$W/res"
${RECORD} < "$W/placed" >> "$V"
exit 0
`;

/** Moves uploaded temp files into the cache once their bytes are proved to be their hash's. Returns the hashes that arrived wrong. */
export async function acceptUploads(connection: SshConnection, layout: HostLayout, uploads: readonly { readonly tmp: string; readonly hash: string }[]): Promise<string[]> {
  if (uploads.length === 0) return [];
  const stdin = uploads.map((u) => `${u.tmp} ${u.hash}\n`).join('');
  const r = await connection.exec(`sh -c ${shellQuote(ACCEPT_SCRIPT)} dstack ${[layout.objects, layout.objectsTmp, recordsOf(layout)].map(shellQuote).join(' ')}`, { stdin });
  if (r.code !== 0) {
    throw new DstackError('DS0209', `storing the sent objects failed on ${connection.label} (exit ${r.code}): ${r.stderr.toString('utf8').trim().slice(0, 500)}`);
  }
  return r.stdout
    .toString('utf8')
    .split('\n')
    .filter((l) => l.startsWith('B '))
    .map((l) => l.slice(2));
}

/**
 * Shell that appends records for the object paths on its stdin (relative to the objects folder, the
 * current folder), to the file named by `$V`: for objects just made from bytes whose hash the
 * caller has computed, or just hard-linked by dstack right after they were proved sound.
 */
export const RECORD_PATHS = `${RECORD} >> "$V"`;

export { recordsOf };

/** Staging-script lines that re-record objects it just hard-linked (proved sound a moment before; the links moved their ctime). */
export function recordLines(layout: HostLayout, linked: readonly string[]): string[] {
  if (linked.length === 0) return [];
  const lines = [`V=${shellQuote(recordsOf(layout))}`, 'cd "$O"'];
  for (let i = 0; i < linked.length; i += 200) lines.push(`printf '%s\\n' ${linked.slice(i, i + 200).map((h) => `${h.slice(0, 2)}/${h}`).join(' ')} | ${RECORD_PATHS}`);
  return lines;
}

/**
 * stdin: "ab/<hash>" per object hard-linked into the job's folder. Removes the folder (`$3`); the
 * objects whose records held just before keep them (removing a link moved their ctime).
 */
const REMOVE_SCRIPT = `O=$1; V=$2; J=$3
W=$(mktemp -d) || exit 3
trap 'rm -rf "$W"' EXIT
cat > "$W/linked"
if cd "$O" 2>/dev/null && [ -s "$W/linked" ] && [ -f "$V" ]; then
  xargs -r stat -c '%n ${ID}' -- < "$W/linked" 2>/dev/null > "$W/stat"
  awk 'FILENAME == ARGV[1] { rec[$1] = $2; next } { h = $1; sub(/.*\\//, "", h); if (rec[h] == $2) print $1 }' "$V" "$W/stat" > "$W/sound"
fi
rm -rf -- "$J"; s=$?
[ -s "$W/sound" ] && ${RECORD} < "$W/sound" >> "$V"
exit $s
`;

/** Removes a job's folder on the host, keeping the records of the objects it had hard-linked. */
export async function removeJobDirOnHost(connection: SshConnection, layout: HostLayout, jobDir: string, linked: readonly string[]): Promise<void> {
  const stdin = linked.map((h) => `${h.slice(0, 2)}/${h}\n`).join('');
  const r = await connection.exec(`sh -c ${shellQuote(REMOVE_SCRIPT)} dstack ${[layout.objects, recordsOf(layout), jobDir].map(shellQuote).join(' ')}`, { stdin });
  if (r.code !== 0) throw new Error(`rm of ${jobDir} on ${connection.label}: ${r.stderr.toString('utf8').trim()}`);
}

/**
 * Keeps the host's object cache under `maxBytes`: removes the least recently used objects (access
 * time, set on every use: object-cache.ts) that no job uses now — none hard-linked into a job's deps folder, none
 * used in the last `guardSeconds` (a job being staged). One exec to list, one to remove.
 */
export async function evictObjects(connection: SshConnection, layout: HostLayout, maxBytes: number, guardSeconds = 600): Promise<{ readonly removed: number; readonly bytes: number }> {
  const out = await hostScript(connection, 'sizing the object cache', '[ -d "$1" ] || exit 0\nfind "$1" -type f -printf "%A@ %s %n %p\\0"', [layout.objects]);
  const now = Date.now() / 1000;
  let total = 0;
  const candidates: { at: number; size: number; path: string }[] = [];
  for (const rec of out.toString('utf8').split('\0')) {
    const m = /^(\S+) (\d+) (\d+) (.*)$/s.exec(rec);
    if (!m) continue;
    const size = Number(m[2]);
    total += size;
    const at = Number(m[1]);
    if (Number(m[3]) === 1 && now - at > guardSeconds) candidates.push({ at, size, path: m[4]! });
  }
  if (total <= maxBytes) return { removed: 0, bytes: 0 };
  candidates.sort((a, b) => a.at - b.at);
  const doomed: string[] = [];
  let freed = 0;
  for (const c of candidates) {
    if (total - freed <= maxBytes) break;
    doomed.push(c.path);
    freed += c.size;
  }
  if (doomed.length) await hostScript(connection, 'trimming the object cache', 'xargs -0 -r rm -f --', [], `${doomed.join('\0')}\0`);
  return { removed: doomed.length, bytes: freed };
}

/** Runs a script with positional arguments; a non-zero exit is DS0209 naming the host. */
async function hostScript(connection: SshConnection, what: string, script: string, args: readonly string[], stdin?: string): Promise<Buffer> {
  const r = await connection.exec(`sh -c ${shellQuote(script)} dstack ${args.map(shellQuote).join(' ')}`, stdin === undefined ? {} : { stdin });
  if (r.code !== 0) throw new DstackError('DS0209', `${what} failed on ${connection.label} (exit ${r.code}): ${r.stderr.toString('utf8').trim().slice(0, 500)}`);
  return r.stdout;
}
