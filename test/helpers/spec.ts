/**
 * A JobSpec for tests: a bash job with nothing set — no env, ports, artifacts, cache, resources,
 * variables, args or deps — that a test fills in with what it is about. The defaults hold only what
 * every spec needs; each test passes its own workflow, image, command and the rest as `overrides`.
 */
import type { JobSpec } from '../../src/engine/types.js';

export function jobSpec(overrides: Partial<JobSpec> = {}): JobSpec {
  return {
    workflow: 'train',
    provider: 'bash',
    image: 'img',
    env: {},
    workingDir: '',
    ports: 0,
    artifacts: [],
    cache: [],
    resources: {},
    variables: {},
    args: [],
    deps: [],
    ...overrides,
  };
}

/** The command that runs `script` in `/bin/sh -c`; undefined (the image's own) without one. */
export const shellCommand = (script: string | undefined): string[] | undefined => (script === undefined ? undefined : ['/bin/sh', '-c', script]);
