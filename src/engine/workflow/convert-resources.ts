/**
 * `resources:` of one workflow: sizes with their units, counts and their bounds (limits.ts), and
 * dstack 0.7's `local: true` / `remote: true`, which say where the workflow runs (placement.ts).
 */
import { isMap, isScalar, type Node, type YAMLMap } from 'yaml';
import type { ErrorCode, SourceLocation } from '../errors.js';
import type { GpuSpec, Placement, Resources } from '../types.js';
import { LIMITS, outOfBounds, showBytes } from './limits.js';
import { SIZE_HINT, parseSize } from './units.js';

export type Fail = (n: Node | undefined, code: ErrorCode, message: string, hint?: string) => void;

export interface ResourcesContext {
  /** A field of a mapping, aliases resolved; `key:` with nothing after it counts as absent. */
  readonly get: (map: YAMLMap, key: string) => Node | undefined;
  readonly at: (n: Node) => SourceLocation;
  readonly text: (n: Node | undefined) => string;
  readonly where: string;
  readonly fail: Fail;
  readonly locations: Map<string, SourceLocation>;
}

export function readResources(c: ResourcesContext, n: Node | undefined): { resources: Resources; placement?: Placement } {
  if (!isMap(n)) return { resources: {} };
  const f = (key: string): Node | undefined => {
    const v = c.get(n, key);
    if (v) c.locations.set(`resources.${key}`, c.at(v));
    return v;
  };
  const bounded = (v: Node, label: string, value: number, min: number, max: number, show?: (n: number) => string): number | undefined => {
    const problem = outOfBounds(value, min, max, show);
    if (problem === undefined) return value;
    c.fail(v, 'DS0019', `\`${label}\`${c.where} is out of bounds: ${problem}`, boundsHint(label));
    return undefined;
  };
  const size = (v: Node | undefined, label: string, limits: { min: number; max: number }): number | undefined => {
    if (!v) return undefined;
    const bytes = parseSize(c.text(v));
    if (bytes === undefined) {
      c.fail(v, 'DS0011', `invalid size \`${c.text(v)}\` for \`${label}\`${c.where}`, SIZE_HINT);
      return undefined;
    }
    return bounded(v, label, bytes, limits.min, limits.max, showBytes);
  };
  const count = (v: Node, label: string, max: number): number | undefined => bounded(v, label, Number(v.toJSON()), 0, max);

  const cpuNode = f('cpu');
  const cpu = cpuNode && bounded(cpuNode, 'resources.cpu', Number(cpuNode.toJSON()), LIMITS.cpu.min, LIMITS.cpu.max);
  const memory = size(f('memory'), 'resources.memory', LIMITS.memory);
  const shmSize = size(f('shm_size'), 'resources.shm_size', LIMITS.shmSize);
  const interruptible = f('interruptible');
  const gpuNode = f('gpu');
  let gpu: GpuSpec | undefined;
  if (isScalar(gpuNode)) {
    const n = count(gpuNode, 'resources.gpu', LIMITS.gpuCount);
    if (n !== undefined) gpu = { count: n };
  } else if (isMap(gpuNode)) {
    const countNode = c.get(gpuNode, 'count');
    const name = c.get(gpuNode, 'name');
    const mem = size(c.get(gpuNode, 'memory'), 'resources.gpu.memory', LIMITS.gpuMemory);
    // `gpu: {name: V100}` in dstack 0.7 means one such GPU.
    const n = countNode ? count(countNode, 'resources.gpu.count', LIMITS.gpuCount) : 1;
    if (n !== undefined) gpu = { count: n, ...(name ? { name: c.text(name) } : {}), ...(mem !== undefined ? { memory: mem } : {}) };
  }
  const placement = readPlacement(c, f('local'), f('remote'));
  return {
    resources: {
      ...(cpu !== undefined ? { cpu } : {}),
      ...(memory !== undefined ? { memory } : {}),
      ...(gpu ? { gpu } : {}),
      ...(shmSize !== undefined ? { shmSize } : {}),
      ...(interruptible ? { interruptible: interruptible.toJSON() === true } : {}),
    },
    ...(placement ? { placement } : {}),
  };
}

function readPlacement(c: ResourcesContext, local: Node | undefined, remote: Node | undefined): Placement | undefined {
  const isLocal = local?.toJSON() === true;
  const isRemote = remote?.toJSON() === true;
  if (isLocal && isRemote) {
    c.fail(remote, 'DS0026', `\`resources.local\` and \`resources.remote\` are both true${c.where}`, 'keep one of them (or neither: then the command line decides, local by default)');
    return undefined;
  }
  return isLocal ? 'local' : isRemote ? 'remote' : undefined;
}

function boundsHint(label: string): string {
  switch (label) {
    case 'resources.cpu':
      return `a number of CPUs from ${LIMITS.cpu.min} to ${LIMITS.cpu.max}`;
    case 'resources.memory':
      return `a size from ${showBytes(LIMITS.memory.min)} (Docker's least) to ${showBytes(LIMITS.memory.max)}, e.g. 16GB`;
    case 'resources.shm_size':
      return `a size from ${showBytes(LIMITS.shmSize.min)} to ${showBytes(LIMITS.shmSize.max)}, e.g. 2GB`;
    case 'resources.gpu.memory':
      return `a size from ${showBytes(LIMITS.gpuMemory.min)} to ${showBytes(LIMITS.gpuMemory.max)}, e.g. 16GB`;
    default:
      return `a number of GPUs from 0 to ${LIMITS.gpuCount}`;
  }
}
