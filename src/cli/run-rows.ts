/**
 * A run as `ps` shows it, one row or one JSON object, whether it is this home's (a RunRecord) or a
 * team run read from the bucket: the columns and fields both listings share.
 */
import type { JobStatus } from '../engine/types.js';
import { formatAgo, formatDuration } from './format.js';

export interface RunRowSource {
  readonly name: string;
  readonly workflow: string;
  readonly owner: string;
  readonly backend: string;
  readonly status: JobStatus;
  readonly submittedAt: number;
  readonly finishedAt?: number;
  readonly tag?: string;
}

export const RUN_HEADER = ['RUN', 'WORKFLOW', 'SUBMITTED', 'OWNER', 'STATUS', 'TAG', 'BACKEND', 'DURATION'];

export const runCells = (r: RunRowSource): string[] => [r.name, r.workflow, formatAgo(r.submittedAt), r.owner, r.status, r.tag ?? '', r.backend, formatDuration((r.finishedAt ?? Date.now()) - r.submittedAt)];

export function runSummaryJson(r: RunRowSource): Record<string, unknown> {
  return {
    run: r.name,
    workflow: r.workflow,
    submittedAt: new Date(r.submittedAt).toISOString(),
    finishedAt: r.finishedAt === undefined ? null : new Date(r.finishedAt).toISOString(),
    owner: r.owner,
    status: r.status,
    tag: r.tag ?? null,
    backend: r.backend,
  };
}
