/**
 * `dstack run` takes its own flags and passes everything else to the workflow (declared variables
 * such as `--epochs 10`, and `${{ run.args }}`), so its command line is split here rather than by
 * clipanion: a dstack flag anywhere before `--` is dstack's; the rest is the workflow's.
 */
import type { JobOverrides } from '../engine/types.js';
import { LIMITS } from '../engine/workflow/limits.js';
import { usageError } from './base.js';

export interface RunFlags {
  readonly workflow?: string;
  readonly detach: boolean;
  readonly dryRun: boolean;
  readonly rerun: boolean;
  /** The named workflow may be reused too (it always runs otherwise). */
  readonly reuse: boolean;
  /** With --dry-run: why each job is cached or runs. */
  readonly explain: boolean;
  readonly json: boolean;
  readonly help: boolean;
  readonly remote?: string;
  /** `--retry N`: how many times an interrupted job of the run runs again on a new machine. */
  readonly retry?: number;
  readonly overrides: JobOverrides;
  /** For the workflow: variable overrides and run.args, in order. */
  readonly rest: readonly string[];
}

type Kind = 'bool' | 'value' | 'list' | 'optional';
interface Spec {
  readonly names: readonly string[];
  readonly key: string;
  readonly kind: Kind;
}

const SPECS: readonly Spec[] = [
  { names: ['-d', '--detach'], key: 'detach', kind: 'bool' },
  { names: ['--dry-run'], key: 'dryRun', kind: 'bool' },
  { names: ['--rerun'], key: 'rerun', kind: 'bool' },
  { names: ['--reuse'], key: 'reuse', kind: 'bool' },
  { names: ['--explain'], key: 'explain', kind: 'bool' },
  { names: ['--json'], key: 'json', kind: 'bool' },
  { names: ['-h', '--help'], key: 'help', kind: 'bool' },
  { names: ['--remote'], key: 'remote', kind: 'optional' },
  { names: ['--retry'], key: 'retry', kind: 'value' },
  { names: ['--cpu'], key: 'cpu', kind: 'value' },
  { names: ['--memory'], key: 'memory', kind: 'value' },
  { names: ['--gpu'], key: 'gpu', kind: 'value' },
  { names: ['--gpu-name'], key: 'gpuName', kind: 'value' },
  { names: ['--gpu-memory'], key: 'gpuMemory', kind: 'value' },
  { names: ['--shm-size'], key: 'shmSize', kind: 'value' },
  { names: ['-i', '--interruptible'], key: 'interruptible', kind: 'bool' },
  { names: ['-e', '--env'], key: 'env', kind: 'list' },
  { names: ['-a', '--artifact'], key: 'artifacts', kind: 'list' },
  { names: ['--dep'], key: 'deps', kind: 'list' },
  { names: ['-w', '--working-dir'], key: 'workingDir', kind: 'value' },
];

const byName = new Map(SPECS.flatMap((s) => s.names.map((n) => [n, s] as const)));

/** Every flag `dstack run` takes, so that a near miss among the workflow's arguments gets a "did you mean". */
export const RUN_FLAG_NAMES: readonly string[] = SPECS.flatMap((s) => s.names);

export function parseRunFlags(tokens: readonly string[]): RunFlags {
  const seen: Record<string, string | boolean | string[]> = {};
  const rest: string[] = [];
  let workflow: string | undefined;
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token === '--') {
      // Kept: the workflow's own parser (parseRunArgs) reads `--` as the end of variable overrides.
      rest.push(...tokens.slice(i));
      break;
    }
    const eq = token.startsWith('--') ? token.indexOf('=') : -1;
    const name = eq > 0 ? token.slice(0, eq) : token;
    const spec = byName.get(name);
    if (!spec) {
      if (workflow === undefined && !token.startsWith('-')) workflow = token;
      else rest.push(token);
      continue;
    }
    const inline = eq > 0 ? token.slice(eq + 1) : undefined;
    if (spec.kind === 'bool') {
      if (inline !== undefined) throw usageError(`${name} takes no value`);
      seen[spec.key] = true;
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = tokens[i + 1];
      if (spec.kind === 'optional' && (next === undefined || next.startsWith('-') || workflow === undefined)) {
        seen[spec.key] = true;
        continue;
      }
      if (next === undefined || (next.startsWith('-') && next !== '-')) throw usageError(`${name} needs a value`, `for example: dstack run train ${name} ${example(spec.key)}`);
      value = next;
      i++;
    }
    if (spec.kind === 'list') ((seen[spec.key] ??= []) as string[]).push(value);
    else seen[spec.key] = value;
  }

  const num = (key: string): number | undefined => {
    const v = seen[key];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (typeof v !== 'string' || !Number.isFinite(n) || n < 0) throw usageError(`--${key === 'cpu' ? 'cpu' : 'gpu'} expects a number, got '${String(v)}'`);
    return n;
  };
  const str = (key: string): string | undefined => (typeof seen[key] === 'string' ? (seen[key] as string) : undefined);
  const list = (key: string): string[] | undefined => seen[key] as string[] | undefined;
  const overrides: JobOverrides = Object.fromEntries(
    Object.entries({
      cpu: num('cpu'),
      memory: str('memory'),
      gpu: num('gpu'),
      gpuName: str('gpuName'),
      gpuMemory: str('gpuMemory'),
      shmSize: str('shmSize'),
      interruptible: seen.interruptible === true ? true : undefined,
      env: list('env'),
      artifacts: list('artifacts'),
      deps: list('deps'),
      workingDir: str('workingDir'),
    }).filter(([, v]) => v !== undefined),
  );
  const remote = seen.remote;
  const retry = retryOf(str('retry'));
  return {
    workflow,
    detach: seen.detach === true,
    dryRun: seen.dryRun === true,
    rerun: seen.rerun === true,
    reuse: seen.reuse === true,
    explain: seen.explain === true,
    json: seen.json === true,
    help: seen.help === true,
    ...(remote === undefined ? {} : { remote: remote === true ? '' : String(remote) }),
    ...(retry === undefined ? {} : { retry }),
    overrides,
    rest,
  };
}

function retryOf(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > LIMITS.retry) throw usageError(`--retry expects a whole number from 0 to ${LIMITS.retry}, got '${v}'`, 'for example: dstack run train --remote -i --retry 2');
  return n;
}

function example(key: string): string {
  switch (key) {
    case 'memory':
    case 'shmSize':
    case 'gpuMemory':
      return '8GB';
    case 'env':
      return 'KEY=value';
    case 'artifacts':
      return './model';
    case 'deps':
      return 'prepare-data';
    default:
      return '1';
  }
}
