import { Command, Option } from 'clipanion';
import { DstackError } from '../../engine/errors.js';
import type { TransferResult } from '../../remote-store/transfer.js';
import { DstackCommand } from '../base.js';
import { formatBytes } from '../format.js';
import { homeId } from '../home.js';
import { Session } from '../session.js';
import { repoOf, teamRemote, withTeam } from '../team.js';
import { projectRootOf } from '../team-runs.js';
import { progressBar } from '../transfer-progress.js';

export class PullCommand extends DstackCommand {
  static override paths = [['pull']];
  static override usage = Command.Usage({
    description: 'bring a run or a tag of the team bucket into this home',
    details: `
      Brings the finished run RUN of the team bucket (or the tag TAG, written \`:TAG\`) into the local store: its records,
      logs and artifacts — only the objects this home lacks, each checked against its hash as it arrives (a damaged one is
      quarantined in the bucket, error DS0265, and nothing of it is kept). After that \`ps\`, \`logs\`, \`ls\` and \`cp\` work on
      it offline. \`ls\`, \`cp\` and \`logs\` also work on a team run without pulling it, fetching only what they need.
    `,
    examples: [
      ["Bring a teammate's run", 'dstack pull wet-lion-3'],
      ['Bring a tag', 'dstack pull :mnist-v1'],
    ],
  });

  remote = Option.String('--remote', { description: 'the bucket remote to read from' });
  json = Option.Boolean('--json', false, { description: 'print a JSON summary on stdout' });
  ref = Option.String({ name: 'RUN|:TAG' });

  async run(): Promise<number> {
    const session = new Session();
    const started = Date.now();
    try {
      const store = await session.store();
      const remote = await teamRemote(session.home, this.remote);
      const bar = progressBar(this.context.stderr, 'pulling');
      try {
        return await withTeam(remote, async (team) => {
          const root = await projectRootOf(undefined);
          const [{ pullRun, pullTag }, local, repo, home] = await Promise.all([import('../../remote-store/pull.js'), session.artifacts(), repoOf(root), homeId(session.home)]);
          const ctx = { team, local: local.objects, repo, root, onProgress: bar.update };
          if (this.ref.startsWith(':')) {
            const name = this.ref.slice(1);
            const pulled = await pullTag(ctx, name);
            const mine = store.tags.getTag(name);
            if (mine && JSON.stringify(mine.manifest) !== JSON.stringify(pulled.tag.manifest)) {
              throw new DstackError('DS0271', `this home has a tag '${name}' with other artifacts than the team's`, { hint: `delete yours first (\`dstack tags delete ${name}\`), or push it under another name` });
            }
            if (!mine) store.tags.putTag(pulled.tag);
            bar.done();
            this.report(`tag ${name} (by ${pulled.team.owner})`, pulled.objects, { tag: name, created: !mine }, Date.now() - started);
            return 0;
          }
          const here = store.runs.getRun(this.ref);
          if (here) {
            const theirs = await team.getRun(repo, this.ref);
            // This home's own run, or the team's pulled before: the same run (one owner, one start).
            if (theirs && (theirs.home === home || (theirs.owner === here.owner && theirs.submittedAt === here.submittedAt))) {
              this.context.stderr.write(`Run ${this.ref} is already here: nothing to pull\n`);
              return 0;
            }
            throw new DstackError('DS0271', `this home has a run named ${this.ref} already, not the team's`, { hint: `remove it first if it is a stale copy (\`dstack rm ${this.ref}\`)` });
          }
          const pulled = await pullRun(ctx, this.ref);
          store.importer.importRun(pulled.run, pulled.jobs, pulled.logs);
          bar.done();
          this.report(`run ${pulled.run.name} (by ${pulled.run.owner})`, pulled.objects, { run: pulled.run.name }, Date.now() - started);
          return 0;
        });
      } finally {
        bar.done();
      }
    } finally {
      await session.close();
    }
  }

  private report(what: string, t: TransferResult, extra: Record<string, unknown>, ms: number): void {
    if (this.json) {
      const out = { ...extra, objects: { total: t.total.objects, fetched: t.sent.objects }, bytes: { total: t.total.bytes, fetched: t.sent.bytes }, seconds: ms / 1000 };
      this.context.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      return;
    }
    this.context.stderr.write(
      `Pulled ${what}: ${t.sent.objects} object${t.sent.objects === 1 ? '' : 's'} fetched (${formatBytes(t.sent.bytes)}), ${t.total.objects - t.sent.objects} already here, in ${(ms / 1000).toFixed(1)} s\n`,
    );
  }
}
