/**
 * Which keys a connection offers, in OpenSSH's order: an explicit identity (or, when it is
 * protected by a passphrase, the agent that holds it), else the agent, then ~/.ssh/id_ed25519 and
 * id_rsa. Keys are read into memory for ssh2 and never written anywhere.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { AnyAuthMethod } from 'ssh2';
import { DstackError } from '../../engine/errors.js';
import { targetLabel, type SshTarget } from './session.js';

export interface AuthOptions {
  /** A private key file; without it: the agent, then ~/.ssh/id_ed25519, id_rsa. */
  readonly identity?: string;
  /** Told about keys that could not be used. */
  readonly notify?: (message: string) => void;
  /** Where SSH_AUTH_SOCK and HOME come from. */
  readonly env: NodeJS.ProcessEnv;
}

export interface AuthPlan {
  readonly methods: AnyAuthMethod[];
  /** What was offered, for the message when all of them are refused. */
  readonly tried: string[];
}

type ParseKey = typeof import('ssh2').utils.parseKey;

export async function authPlan(target: SshTarget, options: AuthOptions, parseKey: ParseKey): Promise<AuthPlan> {
  const { env } = options;
  const methods: AnyAuthMethod[] = [];
  const tried: string[] = [];
  const home = env.HOME || homedir();
  const agent = env.SSH_AUTH_SOCK && existsSync(env.SSH_AUTH_SOCK) ? env.SSH_AUTH_SOCK : undefined;
  const label = targetLabel(target);
  const addAgent = (): void => {
    if (!agent) return;
    methods.push({ type: 'agent', username: target.user, agent });
    tried.push(`the SSH agent (${agent})`);
  };
  const addKey = async (path: string, explicit: boolean): Promise<void> => {
    const data = await readKey(path, explicit, label);
    if (!data) return;
    const parsed = parseKey(data);
    if (parsed instanceof Error) {
      const encrypted = /encrypted|passphrase/i.test(parsed.message);
      const why = encrypted ? 'is protected by a passphrase' : `is not a private key ssh2 can read (${parsed.message})`;
      if (explicit && !agent) {
        throw new DstackError('DS0206', `cannot log in to ${label}: identity file ${path} ${why}`, {
          hint: encrypted ? `load it into your SSH agent (\`ssh-add ${path}\`) and run again` : 'give a private key in OpenSSH or PEM format',
        });
      }
      options.notify?.(`not using ${path}: it ${why}${encrypted && agent ? ' (the SSH agent is tried instead)' : ''}`);
      return;
    }
    methods.push({ type: 'publickey', username: target.user, key: data });
    tried.push(`the key ${path}`);
  };

  if (options.identity) {
    await addKey(options.identity, true);
    // An identity protected by a passphrase is usable through the agent that holds it.
    if (methods.length === 0) addAgent();
  } else {
    addAgent();
    for (const name of ['id_ed25519', 'id_rsa']) await addKey(join(home, '.ssh', name), false);
  }
  if (methods.length === 0) {
    throw new DstackError('DS0206', `cannot log in to ${label}: no SSH key to offer`, {
      hint: `pass --identity KEY to \`dstack config ssh\`, start an SSH agent with your key, or create ${join(home, '.ssh', 'id_ed25519')} (ssh-keygen -t ed25519)`,
    });
  }
  return { methods, tried };
}

/** The key file's bytes; undefined for a default key that is not there; DS0206 for an explicit one that cannot be read. */
async function readKey(path: string, explicit: boolean, label: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (e) {
    if (!explicit) return undefined;
    const code = (e as NodeJS.ErrnoException).code;
    throw new DstackError('DS0206', `cannot log in to ${label}: identity file ${path} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`}`, {
      hint: 'fix the path with `dstack config ssh --name NAME --force --identity KEY …`',
    });
  }
}
