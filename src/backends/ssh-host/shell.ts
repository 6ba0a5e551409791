/** Building POSIX shell commands to run on a host over SSH (sshd hands them to the login shell), and running scripts. */
import { DstackError } from '../../engine/errors.js';
import type { SshConnection } from './connect.js';

/** Quotes one word for a POSIX shell: `it's` → `'it'\''s'`. Plain words stay as they are. */
export const shellQuote = (word: string): string => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`);

/** Joins words into one command line, each quoted. */
export const shellJoin = (words: readonly string[]): string => words.map(shellQuote).join(' ');

/**
 * Wraps a command so that it dies with its SSH channel: it runs in a session (process group) of its
 * own, and when the channel's stdin reaches EOF — the client ended it, or the connection is gone and
 * sshd closed it — the whole group gets SIGTERM. sshd itself refuses "signal" requests for root
 * logins (no privilege separation after a root login: "session signalling requires privilege
 * separation"), so this is how an abort reaches the remote process. The command's own stdin is
 * /dev/null; its exit status is the wrapper's.
 */
export function boundToChannel(command: string): string {
  const script = [
    // Asynchronous lists get /dev/null as stdin: keep the channel's on fd 3 for the watcher.
    'exec 3<&0',
    'if command -v setsid >/dev/null 2>&1; then setsid sh -c "$1" </dev/null 3<&- & else sh -c "$1" </dev/null 3<&- & fi',
    'p=$!',
    '( cat <&3 >/dev/null 2>&1; kill -TERM -$p 2>/dev/null || kill -TERM $p 2>/dev/null ) >/dev/null 2>&1 &',
    'w=$!',
    'exec 3<&-',
    'wait $p; s=$?',
    'kill $w 2>/dev/null',
    'exit $s',
  ].join('\n');
  return `sh -c ${shellQuote(script)} dstack ${shellQuote(command)}`;
}

/** Runs a script with positional arguments; non-zero exits are errors naming the host. */
export async function runScript(connection: SshConnection, what: string, script: string, args: readonly string[], stdin?: string): Promise<Buffer> {
  const command = `sh -c ${shellQuote(script)} dstack ${args.map(shellQuote).join(' ')}`;
  const r = await connection.exec(command, stdin === undefined ? {} : { stdin });
  if (r.code !== 0) {
    throw new DstackError('DS0209', `${what} failed on ${connection.label} (exit ${r.code}): ${r.stderr.toString('utf8').trim().slice(0, 500)}`);
  }
  return r.stdout;
}
