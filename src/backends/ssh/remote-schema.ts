/** The check of a saved SSH pool (remote.ts), loaded only when config.json is read. */
import * as t from 'typanion';
import type { SshRemote } from './remote.js';

const isHost = t.isObject({
  user: t.cascade(t.isString(), t.hasMinLength(1)),
  host: t.cascade(t.isString(), t.hasMinLength(1)),
  port: t.cascade(t.isNumber(), t.isInteger(), t.isInInclusiveRange(1, 65535)),
});

/** Unknown keys are refused: a misspelt `identiy` must not be silently ignored. */
export const sshRemoteSchema: t.StrictValidator<unknown, SshRemote> = t.isObject({
  name: t.isString(),
  kind: t.isLiteral('ssh'),
  hosts: t.cascade(t.isArray(isHost), t.hasMinLength(1)),
  identity: t.isOptional(t.isString()),
  jobsPerHost: t.isOptional(t.cascade(t.isNumber(), t.isInteger(), t.isAtLeast(1))),
});
