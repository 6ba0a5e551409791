import { setTimeout as sleep } from 'node:timers/promises';
import { Command, Option } from 'clipanion';
import type { JobRecord, RunRecord, Store } from '../../engine/store/types.js';
import { isFinal } from '../../engine/types.js';
import { DstackCommand } from '../base.js';
import { readerGone } from '../output.js';
import { formatDuration, table } from '../format.js';
import { displayProject, projectScope } from '../project-scope.js';
import { Session } from '../session.js';
import { RUN_HEADER, runCells, runSummaryJson } from '../run-rows.js';
import { requireRun } from '../runs.js';

export class PsCommand extends DstackCommand {
  static override paths = [['ps']];
  static override usage = Command.Usage({
    description: 'list runs',
    details: `
      Lists the unfinished runs and the most recent ones of the current project (the folder holding \`.dstack/\`
      that you are in); \`-a\` lists all of them. \`-A\` lists the runs of every project, with a PROJECT column (so does
      \`ps\` outside any project). With RUN, lists that run's jobs.
      Runs whose dstack process died are first reconciled with what their containers really did. With cloud remotes
      configured, the instances that cost money now (of every project) are listed below the runs, after ending those
      no live run holds.
    `,
    examples: [
      ['Recent and unfinished runs of this project', 'dstack ps'],
      ['Every run of this project', 'dstack ps -a'],
      ['Every run of every project', 'dstack ps -a -A'],
      ['The jobs of one run, as JSON', 'dstack ps wet-mangust-1 --json'],
    ],
  });

  all = Option.Boolean('-a,--all', false, { description: "list every run, not only the recent ones, and the team's (when a team bucket is configured)" });
  allProjects = Option.Boolean('-A,--all-projects', false, { description: 'list the runs of every project' });
  remote = Option.String('--remote', { tolerateBoolean: true, description: "list the team's runs of this repository in the team bucket (`--remote=NAME` for another bucket)" });
  json = Option.Boolean('--json', false, { description: 'machine-readable output' });
  watch = Option.Boolean('-w,--watch', false, { description: 'refresh every second until Ctrl-C' });
  runName = Option.String({ required: false, name: 'RUN' });

  async run(): Promise<number> {
    const session = new Session();
    try {
      for (;;) {
        const text = await this.render(session);
        if (!this.watch) {
          this.context.stdout.write(text);
          return 0;
        }
        // Clearing the screen means something only on a terminal; into a file or a pipe, each
        // refresh is the table again after a blank line.
        const tty = (this.context.stdout as { isTTY?: boolean }).isTTY;
        this.context.stdout.write(tty ? `\x1b[H\x1b[2J${text}` : `${text}\n`);
        if (readerGone(this.context.stdout)) return 0;
        await sleep(1000);
      }
    } finally {
      await session.close();
    }
  }

  private async render(session: Session): Promise<string> {
    if (this.remote !== undefined) {
      // `ps --remote NAME` reads as the bucket NAME, not a run.
      const remote = typeof this.remote === 'string' ? this.remote : this.runName;
      const { psWithTeam } = await import('../team-runs.js');
      return psWithTeam(session.home, { ...(remote !== undefined ? { remote } : {}), json: this.json, stderr: this.context.stderr });
    }
    const store = await session.store('read');
    const scope = this.runName ? {} : projectScope(this.allProjects);
    let runs = this.runName ? [requireRun(store, this.runName)] : store.runs.listRuns({ all: this.all, ...scope });
    const after = await reconciled(session, store, runs);
    await this.sweepLocal(session, store, after !== runs);
    runs = after;
    if (this.runName) {
      const run = runs[0]!;
      const jobs = store.runs.jobs(run.name);
      if (this.json) return `${JSON.stringify({ ...runJson(run, jobs), jobs: jobs.map(jobJson) }, null, 2)}\n`;
      const header = ['JOB', 'WORKFLOW', 'STATUS', 'EXIT', 'DURATION', 'REASON'];
      const row = (j: JobRecord): string[] => [j.id, j.workflow, j.status, j.exitCode === undefined ? '' : String(j.exitCode), duration(j.startedAt, j.finishedAt), reasonOf(j)];
      // Where a running job's app is reached: a detached run never printed it anywhere else.
      if (!jobs.some((j) => j.ports?.length)) return `${table(header, jobs.map(row))}\n`;
      return `${table([...header, 'URL'], jobs.map((j) => [...row(j), liveUrls(j).join(' ')]))}\n`;
    }
    if (this.all && (await hasTeamBucket(session.home))) {
      const { psWithTeam } = await import('../team-runs.js');
      return psWithTeam(session.home, { local: runs, json: this.json, stderr: this.context.stderr });
    }
    if (this.json) return `${JSON.stringify(runs.map((r) => runJson(r, isFinal(r.status) ? [] : store.runs.jobs(r.name))), null, 2)}\n`;
    const machines = this.watch ? '' : await this.machines(session, store);
    if (runs.length === 0) {
      const none = scope.project === undefined
        ? 'No runs yet. Start one with `dstack run WORKFLOW`.\n'
        : 'No runs in this project yet. Start one with `dstack run WORKFLOW`; `dstack ps -A` lists every project\'s.\n';
      return `${none}${machines}`;
    }
    if (scope.project !== undefined) return `${table(RUN_HEADER, runs.map(runCells))}\n${machines}`;
    return `${table([...RUN_HEADER, 'PROJECT'], runs.map((r) => [...runCells(r), displayProject(r.repo.root)]))}\n${machines}`;
  }

  /**
   * This home's local leftovers (containers, job folders) no live run holds: only when there are job
   * folders, or a run was just found dead (its container may be one no record names), so a `ps`
   * with nothing to sweep never waits for the engine. Not in a read-only home: nothing there can be removed.
   */
  private async sweepLocal(session: Session, store: Store, reconciled: boolean): Promise<void> {
    const { hasJobFolders, sweepLeftoversOf } = await import('../machines.js');
    if (this.watch || store.readOnly || !(reconciled || hasJobFolders(session.home))) return;
    const local = await session.reachable('local');
    if (local) await sweepLeftoversOf(store.runs, local, this.context.stderr);
  }

  /**
   * The cloud instances that still cost money, after ending those no live run holds (said on
   * stderr). Sweeping only reads the store, so a read-only home sweeps too.
   */
  private async machines(session: Session, store: Store): Promise<string> {
    const { machineBackends, machineTable, sweepBackends, sweptLines } = await import('../machines.js');
    const backends = await machineBackends(session);
    if (backends.length === 0) return '';
    const sweeps = await sweepBackends(store.runs, backends);
    for (const line of sweptLines(sweeps)) this.context.stderr.write(`${line}\n`);
    for (const s of sweeps) if (s.error) this.context.stderr.write(`Could not list the instances of ${s.backend}: ${s.error}\n`);
    const rows = sweeps.flatMap((s) => (s.result?.kept ?? []).map((machine) => ({ backend: s.backend, machine })));
    return rows.length ? `\nInstances that cost money now:\n${machineTable(rows)}\n` : '';
  }
}

/** Whether `ps -a` has a team to show besides this home (config.json alone: no bucket is opened). */
async function hasTeamBucket(home: string): Promise<boolean> {
  const { defaultTeamRemote } = await import('../team.js');
  return (await defaultTeamRemote(home).catch(() => undefined)) !== undefined;
}

/**
 * Runs whose supervising process died, reconciled with what their backend holds. Not on a
 * read-only home: nothing can be recorded there, so the runs are shown as recorded.
 */
async function reconciled(session: Session, store: Store, runs: readonly RunRecord[]): Promise<readonly RunRecord[]> {
  if (store.readOnly || runs.every((r) => isFinal(r.status))) return runs;
  const { reconcileRuns } = await import('../../engine/reconcile.js');
  const backends = new Map<string, Awaited<ReturnType<Session['backend']>>>();
  for (const id of new Set(runs.filter((r) => !isFinal(r.status)).map((r) => r.backend))) backends.set(id, await session.reachable(id));
  const changed = await reconcileRuns(store.runs, runs, (id) => backends.get(id));
  return changed.length ? runs.map((r) => (changed.includes(r.name) ? (store.runs.getRun(r.name) ?? r) : r)) : runs;
}

const duration = (from: number | undefined, to: number | undefined): string => (from === undefined ? '' : formatDuration((to ?? Date.now()) - from));

const reasonOf = (j: JobRecord): string => (j.cachedFrom ? `cached from ${j.cachedFrom}` : (j.reason ?? ''));

/** The URLs of a job's published ports while it runs (after that, nothing answers there). */
const liveUrls = (j: JobRecord): string[] => (j.status === 'running' ? (j.ports ?? []).map((p) => p.url) : []);

/** `jobs`: the run's, to list where its running jobs are reached; none for a finished run. */
function runJson(r: RunRecord, jobs: readonly JobRecord[]): Record<string, unknown> {
  return {
    ...runSummaryJson(r),
    project: r.repo.root,
    args: r.args,
    repo: r.repo,
    urls: jobs.flatMap(liveUrls),
  };
}

function jobJson(j: JobRecord): Record<string, unknown> {
  return {
    job: j.id,
    workflow: j.workflow,
    status: j.status,
    exitCode: j.exitCode ?? null,
    reason: j.reason ?? null,
    errorCode: j.errorCode ?? null,
    cachedFrom: j.cachedFrom ?? null,
    submittedAt: new Date(j.submittedAt).toISOString(),
    startedAt: j.startedAt === undefined ? null : new Date(j.startedAt).toISOString(),
    finishedAt: j.finishedAt === undefined ? null : new Date(j.finishedAt).toISOString(),
    artifacts: j.manifest?.entries.filter((e) => e.type === 'file').map((e) => e.path) ?? [],
    ports: j.ports ?? [],
    history: j.history.map((h) => ({ status: h.status, at: new Date(h.at).toISOString() })),
  };
}
