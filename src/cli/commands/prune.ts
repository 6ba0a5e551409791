import { rm } from 'node:fs/promises';
import { Command, Option } from 'clipanion';
import ms from 'ms';
import type { GcResult } from '../../artifacts/gc.js';
import { DstackError, ExitCode } from '../../engine/errors.js';
import type { RunRecord, SpaceReclaimed, Store } from '../../engine/store/types.js';
import { DstackCommand } from '../base.js';
import { confirm } from '../confirm.js';
import { runDir } from '../detach.js';
import { formatAgo, formatBytes, table } from '../format.js';
import { displayProject, projectScope } from '../project-scope.js';
import { Session } from '../session.js';

export class PruneCommand extends DstackCommand {
  static override paths = [['prune']];
  static override usage = Command.Usage({
    description: 'remove old runs and the artifact files nothing refers to',
    details: `
      Removes the current project's finished runs submitted more than \`--older-than\` ago (default 7d) that are not
      tagged and that no tag was taken from, with their jobs and logs (\`-A\`: every project's; so does \`prune\` outside any
      project); then deletes every stored file (artifacts, code snapshots) that no remaining run or tag refers to, gives
      the run store's freed space back to the disk, and says how much space that freed. Files written in the last hour
      are kept, so a run in progress never loses what it is saving. Asks first unless \`-y\`; \`--dry-run\` only counts.

      \`--remote\` does something else: it asks every cloud remote (\`--remote=NAME\`: that one) for this dstack home's
      instances, terminates those whose job is over or whose dstack process is gone, and lists them. It exits 3 when a
      cloud could not be asked or an instance could not be terminated.
    `,
    examples: [
      ['See what would go', 'dstack prune --dry-run'],
      ['Remove finished runs older than a day, without asking', 'dstack prune --older-than 1d -y'],
      ['Every finished, untagged run of every project', 'dstack prune --older-than 0s -A -y'],
      ['End the cloud instances no live run holds, and list them', 'dstack prune --remote'],
    ],
  });

  olderThan = Option.String('--older-than', '7d', { description: 'only runs submitted longer ago than this (30m, 12h, 7d)' });
  allProjects = Option.Boolean('-A,--all-projects', false, { description: 'the runs of every project, not only the current one' });
  yes = Option.Boolean('-y,--yes', false, { description: 'do not ask for confirmation' });
  dryRun = Option.Boolean('--dry-run', false, { description: 'count what would be removed; remove nothing' });
  json = Option.Boolean('--json', false, { description: 'machine-readable output' });
  remote = Option.String('--remote', { tolerateBoolean: true, description: 'end the cloud instances no live run holds (of every cloud remote, or --remote=NAME)' });

  async run(): Promise<number> {
    if (this.remote !== undefined) return this.pruneMachines(typeof this.remote === 'string' ? this.remote : undefined);
    const age = ms(this.olderThan as Parameters<typeof ms>[0]) as number | undefined;
    if (typeof age !== 'number' || !Number.isFinite(age) || age < 0) {
      throw new DstackError('DS0102', `--older-than expects a duration like 12h, 7d or 0s, got '${this.olderThan}'`);
    }
    const again = `dstack prune --older-than ${this.olderThan}${this.allProjects ? ' -A' : ''} -y`;
    const session = new Session();
    try {
      const store = await session.store();
      const { collectGarbage } = await import('../../artifacts/gc.js');
      const scope = projectScope(this.allProjects);
      const before = Date.now() - age;
      const runs = store.prune.listPrunableRuns(before, scope);
      const names = runs.map((r) => r.name);
      // Said when nothing here is old enough but other projects have runs that are.
      const elsewhere = runs.length === 0 && scope.project !== undefined ? store.prune.listPrunableRuns(before).length : 0;
      // What the runs about to go refer to: what is left of it after the collection is shared with others.
      const theirs = store.prune.referencedObjects({ only: names });

      if (this.dryRun || (!this.yes && process.stdin.isTTY)) {
        // What would go: the objects that only the runs about to be removed (or nothing) refer to.
        const remaining = store.prune.referencedObjects({ except: names });
        const gc = await collectGarbage({ home: session.home, roots: remaining, dryRun: true });
        if (this.dryRun) {
          this.report({ runs, gc, shared: countIn(theirs, remaining), remaining: remainingAfter(store, runs), dryRun: true, scope: scope.project, elsewhere });
          return 0;
        }
        await confirm(
          `Remove ${plural(runs.length, 'run')} older than ${this.olderThan} and ${plural(gc.objects, 'unreferenced file')} (${formatBytes(gc.bytes + gc.tmpBytes)})?`,
          false,
          again,
        );
      } else {
        // No terminal and no -y: refused before anything is read.
        await confirm(`Prune runs older than ${this.olderThan}?`, this.yes, again);
      }

      for (const run of runs) {
        store.runs.deleteRun(run.name);
        await rm(runDir(session.home, run.name), { recursive: true, force: true });
      }
      // Read after the runs are gone, in one transaction, so nothing recorded meanwhile is missed.
      const remaining = store.prune.referencedObjects();
      const gc = await collectGarbage({ home: session.home, roots: remaining });
      const space = store.prune.reclaimSpace();
      this.report({ runs, gc, shared: countIn(theirs, remaining), remaining: remainingAfter(store, []), space, dryRun: false, scope: scope.project, elsewhere });
      return 0;
    } finally {
      await session.close();
    }
  }

  /** `--remote`: every cloud remote's instances that no live run holds are terminated and listed. */
  private async pruneMachines(only: string | undefined): Promise<number> {
    const session = new Session();
    try {
      const { machineBackends, machineTable, sweepBackends } = await import('../machines.js');
      const backends = await machineBackends(session, only);
      if (only !== undefined && backends.length === 0) {
        throw new DstackError('DS0211', `no cloud remote named '${only}'`, { hint: 'see `dstack config list`' });
      }
      const sweeps = await sweepBackends((await session.store()).runs, backends);
      const removed = sweeps.flatMap((s) => (s.result?.swept ?? []).map((m) => ({ backend: s.backend, machine: m, note: m.why })));
      const failed = sweeps.flatMap((s) => (s.result?.failed ?? []).map((m) => ({ backend: s.backend, id: m.id, error: m.error })));
      const kept = sweeps.reduce((n, s) => n + (s.result?.kept.length ?? 0), 0);
      const unreachable = sweeps.filter((s) => s.error);
      if (this.json) {
        const out = { removed: removed.map((r) => ({ instance: r.machine.id, remote: r.backend, job: r.machine.job ?? null, why: r.note })), kept, failed, unreachable: unreachable.map((s) => ({ remote: s.backend, error: s.error })) };
        this.context.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      } else if (removed.length) {
        this.context.stdout.write(`${machineTable(removed)}\n`);
      }
      for (const f of failed) this.context.stderr.write(`Could not terminate ${f.id} (${f.backend}): ${f.error}\n`);
      for (const s of unreachable) this.context.stderr.write(`Could not list the instances of ${s.backend}: ${s.error}\n`);
      if (!this.json) this.context.stderr.write(`Terminated ${plural(removed.length, 'instance')}; ${plural(kept, 'instance')} held by live runs kept\n`);
      return failed.length || unreachable.length ? ExitCode.backendUnavailable : ExitCode.ok;
    } finally {
      await session.close();
    }
  }

  private report(r: {
    readonly runs: readonly RunRecord[];
    readonly gc: GcResult;
    /** Objects of the removed runs that other runs or tags still refer to. */
    readonly shared: number;
    /** The runs and tags left: what holds the objects kept. */
    readonly remaining: Remaining;
    readonly space?: SpaceReclaimed;
    readonly dryRun: boolean;
    readonly scope: string | undefined;
    /** Prunable runs of other projects, left alone (counted only when none of this project's was). */
    readonly elsewhere: number;
  }): void {
    const { runs, gc, space, dryRun, remaining } = r;
    const storeFreed = space ? Math.max(0, space.before - space.after) : 0;
    const freed = gc.bytes + gc.tmpBytes + storeFreed;
    if (this.json) {
      const out = {
        dryRun,
        project: r.scope ?? null,
        runs: runs.map((x) => x.name),
        objects: gc.objects,
        tempFiles: gc.tmpFiles,
        bytes: freed,
        keptLive: gc.live,
        keptYoung: gc.young,
        keptShared: r.shared,
        ...(space && { storeBytesBefore: space.before, storeBytesAfter: space.after }),
      };
      this.context.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      return;
    }
    if (dryRun && runs.length) {
      const rows = runs.map((x) => [x.name, x.workflow, formatAgo(x.submittedAt), x.status, ...(r.scope === undefined ? [displayProject(x.repo.root)] : [])]);
      this.context.stdout.write(`${table(['RUN', 'WORKFLOW', 'SUBMITTED', 'STATUS', ...(r.scope === undefined ? ['PROJECT'] : [])], rows)}\n`);
    }
    const parts = [plural(runs.length, 'run'), plural(gc.objects, 'object')];
    if (gc.tmpFiles) parts.push(plural(gc.tmpFiles, 'temp file'));
    const say = (line: string): boolean => this.context.stderr.write(`${line}\n`);
    say(`${dryRun ? 'Would free' : 'Freed'} ${formatBytes(freed)}: ${parts.join(', ')}`);
    if (storeFreed > 0) say(`The run store shrank from ${formatBytes(space!.before)} to ${formatBytes(space!.after)}`);
    // Why space was not freed: what is kept, and for what reason.
    const why: string[] = [];
    if (gc.live) {
      const holders = [plural(remaining.runs, 'run'), ...(remaining.tags ? [plural(remaining.tags, 'tag')] : [])].join(' and ');
      why.push(`${gc.live} used by the ${holders} that remain`);
    }
    if (gc.young) {
      const it = gc.young === 1 ? 'it' : 'them';
      why.push(`${gc.young} unreferenced but written in the last hour (a run may still be saving ${it}; prune again later to free ${it})`);
    }
    if (why.length) say(`${dryRun ? 'Would keep' : 'Kept'} ${plural(gc.live + gc.young, 'object')}: ${why.join('; ')}`);
    if (r.elsewhere) say(`${plural(r.elsewhere, 'run')} of other projects ${r.elsewhere === 1 ? 'is' : 'are'} old enough too; \`dstack prune -A\` removes them as well`);
  }
}

interface Remaining {
  readonly runs: number;
  readonly tags: number;
}

/** The runs and tags left once `removed` are gone: what still holds objects. */
function remainingAfter(store: Store, removed: readonly RunRecord[]): Remaining {
  const gone = new Set(removed.map((r) => r.name));
  // Every project's: objects are shared across projects.
  return { runs: store.runs.listRuns({ all: true }).filter((r) => !gone.has(r.name)).length, tags: store.tags.listTags().length };
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

function countIn<T>(items: ReadonlySet<T>, set: ReadonlySet<T>): number {
  let n = 0;
  for (const x of items) if (set.has(x)) n++;
  return n;
}
