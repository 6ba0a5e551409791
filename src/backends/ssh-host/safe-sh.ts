/**
 * The no-follow rule of src/engine/safe-fs.ts as POSIX shell, for what dstack makes on a host over
 * SSH (a job's folder, its `cache:` folders): each component below a trusted root is made one at a
 * time, and a symlink on the way stops the script with exit 41 and the link on stderr — never
 * followed. The host's `find` runs `-P` (its default: links are listed, not followed).
 */
import { DstackError } from '../../engine/errors.js';

/** The exit status of a script that met a symlink it refuses to follow. */
export const REFUSED_LINK_EXIT = 41;

/** `mkdir_nofollow ROOT REL`: defines a shell function; paste it at the top of a script. */
export const MKDIR_NOFOLLOW = `mkdir_nofollow() {
  _d=$1; _rest=$2
  while [ -n "$_rest" ]; do
    case $_rest in */*) _c=\${_rest%%/*}; _rest=\${_rest#*/} ;; *) _c=$_rest; _rest= ;; esac
    case $_c in ''|.) continue ;; ..) echo "dstack: refusing '..' in $2" >&2; exit ${REFUSED_LINK_EXIT} ;; esac
    _d=$_d/$_c
    if [ -L "$_d" ]; then echo "dstack: '$_d' is a symlink (to '$(readlink -- "$_d")'); dstack does not follow symlinks there" >&2; exit ${REFUSED_LINK_EXIT}; fi
    if [ ! -d "$_d" ]; then
      mkdir -- "$_d" 2>/dev/null
      if [ -L "$_d" ] || [ ! -d "$_d" ]; then echo "dstack: cannot make the folder '$_d'" >&2; exit 42; fi
    fi
  done
}`;

/** The DstackError for a script that exited REFUSED_LINK_EXIT, from its stderr. */
export function refusedOnHost(host: string, stderr: string): DstackError {
  const line = stderr.split('\n').find((l) => l.startsWith('dstack: ')) ?? stderr.trim();
  return new DstackError('DS0305', `on ${host}: ${line.replace(/^dstack: /, '')}`, {
    hint: 'a job (or someone) put the link there; remove it on that host and run again',
  });
}
