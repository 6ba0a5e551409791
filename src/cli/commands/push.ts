import { Command, Option } from 'clipanion';
import { DstackError } from '../../engine/errors.js';
import type { JobRecord, LogRecord, LogStore, RunReader, RunRecord, TagReader } from '../../engine/store/types.js';
import { isFinal } from '../../engine/types.js';
import type { PushedRun } from '../../remote-store/push.js';
import type { TransferResult } from '../../remote-store/transfer.js';
import { unknownTag } from '../artifact-ref.js';
import { DstackCommand } from '../base.js';
import { formatBytes } from '../format.js';
import { homeId, owner } from '../home.js';
import { requireRun } from '../runs.js';
import { Session } from '../session.js';
import { ensureBucket } from '../team-bucket.js';
import { repoOf, teamRemote, withTeam } from '../team.js';
import { progressBar } from '../transfer-progress.js';
import { projectRootOf } from '../team-runs.js';

export class PushCommand extends DstackCommand {
  static override paths = [['push']];
  static override usage = Command.Usage({
    description: 'send a run or a tag to the team bucket',
    details: `
      Sends the finished run RUN — its artifacts, records and logs — (or the tag TAG, written \`:TAG\`, with the run it
      was taken from) to the team bucket, where teammates see it in \`dstack ps --remote\`, reuse its jobs as cached deps
      and \`dstack pull\` it. Only the objects the bucket lacks are sent, 16 at a time, large ones in parts; a push that
      was interrupted is finished by pushing again, and pushing again sends nothing. The bucket is the one \`--remote\`
      names, or the only one configured (\`dstack config folder\` or \`dstack config s3\`).
    `,
    examples: [
      ['Send a run', 'dstack push wet-mangust-1'],
      ['Send a tag to the bucket named team', 'dstack push :mnist-v1 --remote team'],
      ['What was sent, as JSON', 'dstack push wet-mangust-1 --json'],
    ],
  });

  remote = Option.String('--remote', { description: 'the bucket remote to send to' });
  json = Option.Boolean('--json', false, { description: 'print a JSON summary on stdout' });
  ref = Option.String({ name: 'RUN|:TAG' });

  async run(): Promise<number> {
    const session = new Session();
    const started = Date.now();
    try {
      const store = await session.store('read');
      const tagName = this.ref.startsWith(':') ? this.ref.slice(1) : undefined;
      const tag = tagName === undefined ? undefined : store.tags.getTag(tagName);
      if (tagName !== undefined && !tag) throw unknownTag(tagName);
      const run = tag ? (tag.run ? store.runs.getRun(tag.run) : undefined) : finishedRun(store, this.ref);
      const root = await projectRootOf(run);
      const remote = await teamRemote(session.home, this.remote);
      const bar = progressBar(this.context.stderr, 'pushing');
      try {
        return await withTeam(remote, async (team) => {
          await ensureBucket(team, this.context.stderr);
          const [{ pushRun, pushTag }, local, home, repo] = await Promise.all([import('../../remote-store/push.js'), session.artifacts(), homeId(session.home), repoOf(root)]);
          const ctx = { team, local: local.objects, home, repo, onProgress: bar.update };
          const pushed = run && pushedRun(store, run);
          const summary = tag
            ? await pushTag(ctx, tag, owner(), pushed).then((r) => ({ what: `tag ${r.tag}${r.run ? ` (with run ${r.run})` : ''}`, objects: r.objects, extra: { tag: r.tag, run: r.run ?? null, created: r.created } }))
            : await pushRun(ctx, pushed!).then((r) => ({ what: `run ${r.run}${r.run !== run!.name ? ` (the name ${run!.name} is another home's there)` : ''}`, objects: r.objects, extra: { run: r.run, record: r.record } }));
          bar.done();
          this.report(summary.what, remote.name, team.where, summary.objects, summary.extra, Date.now() - started);
          return 0;
        });
      } finally {
        bar.done();
      }
    } finally {
      await session.close();
    }
  }

  private report(what: string, remote: string, where: string, t: TransferResult, extra: Record<string, unknown>, ms: number): void {
    if (this.json) {
      const out = { ...extra, remote, bucket: where, objects: { total: t.total.objects, sent: t.sent.objects }, bytes: { total: t.total.bytes, sent: t.sent.bytes }, seconds: ms / 1000 };
      this.context.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      return;
    }
    const already = t.total.objects - t.sent.objects;
    this.context.stderr.write(
      `Pushed ${what} to ${remote} (${where}): ${t.sent.objects} object${t.sent.objects === 1 ? '' : 's'} sent (${formatBytes(t.sent.bytes)}), ${already} already there, in ${(ms / 1000).toFixed(1)} s\n`,
    );
  }
}

/** The run RUN names, finished (DS0101 / DS0104 otherwise). */
function finishedRun(store: { readonly runs: RunReader; readonly tags: TagReader }, name: string): RunRecord {
  const run = requireRun(store, name, 'list runs with `dstack ps -a`, or name a tag as `:TAG`');
  if (!isFinal(run.status)) {
    throw new DstackError('DS0104', `run ${run.name} is still ${run.status}`, { hint: `wait for it to finish (\`dstack logs ${run.name} -f\`), then push it` });
  }
  return run;
}

function pushedRun(store: { readonly runs: RunReader; readonly logs: LogStore }, run: RunRecord): PushedRun {
  let byJob: Map<string, LogRecord[]> | undefined;
  const logs = (job: JobRecord): LogRecord[] => {
    if (!byJob) {
      byJob = new Map();
      for (const l of store.logs.readLogs(run.name)) byJob.set(l.job, [...(byJob.get(l.job) ?? []), l]);
    }
    return (byJob.get(job.id) ?? []).sort((a, b) => a.seq - b.seq);
  };
  return { source: run, jobs: store.runs.jobs(run.name), logs };
}
