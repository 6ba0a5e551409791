/**
 * An instance must never outlive the dstack that launched it by long, whatever happens to that
 * dstack (Ctrl-C, a crash, a laptop closed, a lost network): every instance runs a dead-man switch
 * from its first boot, which shuts it down — the cloud then terminates it (AWS:
 * InstanceInitiatedShutdownBehavior=terminate) — once a heartbeat file has not been touched for a
 * ttl. The dstack running the job touches it over SSH every ttl/3 (`Heartbeat`).
 *
 * The switch is a fragment of the instance's boot script (`bootScript`), which AWS and GCP embed in
 * their user-data as it is. It uses only POSIX sh and GNU coreutils (`stat -c`, `touch -d @N`).
 */
import { Renewer } from './renewer.js';
import type { SshConnection } from './session.js';
import { shellQuote } from './shell.js';

/** World-writable so that whichever user dstack logs in as can touch it; only its mtime matters. */
export const HEARTBEAT_FILE = '/var/tmp/dstack-heartbeat';

export interface DeadManOptions {
  /** Shut down when the heartbeat is older than this. */
  readonly ttlSeconds: number;
  /** Time from boot before the first heartbeat is due (SSH and Docker coming up, the first touch). */
  readonly graceSeconds: number;
  /** How often the switch looks (default ttl/6, at least 1 s). */
  readonly checkEverySeconds?: number;
  /** What ends the instance (default `shutdown -h now`; a test instance maps it to its own end). */
  readonly shutdown?: string;
  readonly file?: string;
}

/** The switch: arms the heartbeat file with the grace, then watches it in the background. */
export function deadManSwitch(o: DeadManOptions): string {
  const file = o.file ?? HEARTBEAT_FILE;
  const every = o.checkEverySeconds ?? Math.max(1, Math.floor(o.ttlSeconds / 6));
  const watch = [
    'while sleep "$3"; do',
    '  m=$(stat -c %Y "$1" 2>/dev/null) || m=0',
    '  if [ $(( $(date +%s) - m )) -gt "$2" ]; then',
    `    ${o.shutdown ?? 'shutdown -h now'}`,
    '    exit 0',
    '  fi',
    'done',
  ].join('\n');
  return [
    `# dstack's dead-man switch: shut down once ${file} is ${o.ttlSeconds} s old`,
    `install -m 0666 /dev/null ${shellQuote(file)} && chmod 0666 ${shellQuote(file)}`,
    // Due at boot + grace + ttl: the mtime starts in the future by the grace.
    `touch -d "@$(( $(date +%s) + ${Math.round(o.graceSeconds)} ))" ${shellQuote(file)}`,
    `nohup sh -c ${shellQuote(watch)} dstack-deadman ${shellQuote(file)} ${Math.round(o.ttlSeconds)} ${every} >/dev/null 2>&1 &`,
  ].join('\n');
}

/** Installs the host key dstack made for this instance; an sshd already running is restarted to show it. */
export function hostKeyInstall(hostKey: { readonly privateKey: string; readonly publicKey: string }): string {
  const key = '/etc/ssh/ssh_host_ed25519_key';
  return [
    '# the host key dstack made for this instance: its first connection is verified against it',
    'mkdir -p /etc/ssh',
    `(umask 077 && printf '%s\\n' ${shellQuote(hostKey.privateKey.trim())} > ${key})`,
    `printf '%s\\n' ${shellQuote(hostKey.publicKey.trim())} > ${key}.pub && chmod 644 ${key}.pub`,
    'if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q ssh 2>/dev/null; then systemctl restart ssh',
    'elif command -v systemctl >/dev/null 2>&1 && systemctl is-active -q sshd 2>/dev/null; then systemctl restart sshd',
    'elif [ -s /run/sshd.pid ]; then kill -HUP "$(cat /run/sshd.pid)"; fi',
  ].join('\n');
}

/** The script an instance runs as root at first boot (its user-data, or part of it). */
export function bootScript(o: { readonly hostKey: { readonly privateKey: string; readonly publicKey: string }; readonly deadMan: DeadManOptions }): string {
  return ['#!/bin/sh', hostKeyInstall(o.hostKey), deadManSwitch(o.deadMan), ''].join('\n');
}

/** Keeps an instance alive while its job runs: touches the heartbeat every `everyMs` until released. */
export class Heartbeat {
  readonly #renewer: Renewer;
  #released: Promise<void> | undefined;

  constructor(connection: SshConnection, everyMs: number, file: string = HEARTBEAT_FILE) {
    const touch = `touch ${shellQuote(file)}`;
    // A failed touch is tried again next time; only a dead connection stops it (the instance is lost then).
    this.#renewer = new Renewer(connection, everyMs, async () => (await connection.exec(touch), true));
  }

  /** Stops touching; the instance is terminated by its backend right after, or shuts itself down. */
  release(): Promise<void> {
    this.#released ??= this.#renewer.stop();
    return this.#released;
  }
}
