/** `dstack logs RUN` for a run of the team bucket that this home does not have: read from the bucket, part by part. */
import { findProjectRoot } from '../engine/workflow/files.js';
import { defaultTeamRemote, repoOf, withTeam } from './team.js';

/** Prints the run's log; false when there is no team bucket, no project, or no such run there. */
export async function teamLogs(
  home: string,
  name: string,
  sinceMs: number | undefined,
  out: { readonly stdout: NodeJS.WritableStream; readonly stderr: NodeJS.WritableStream },
): Promise<boolean> {
  const remote = await defaultTeamRemote(home).catch(() => undefined);
  const root = findProjectRoot(process.cwd());
  if (!remote || !root) return false;
  return withTeam(remote, async (team) => {
    const run = await team.getRun(await repoOf(root), name);
    if (!run) return false;
    const { readRunLog } = await import('../remote-store/team-logs.js');
    const width = Math.max(...run.jobs.map((j) => j.workflow.length));
    const prefix = run.jobs.length > 1;
    // Whole lines per job and stream, prefixed like a local run's log.
    const partial = new Map<string, string>();
    const flush = (key: string, workflow: string, stream: NodeJS.WritableStream): void => {
      const rest = partial.get(key);
      if (rest) stream.write(`${workflow.padEnd(width)} | ${rest}\n`);
      partial.delete(key);
    };
    let last: { key: string; workflow: string; stream: NodeJS.WritableStream } | undefined;
    for await (const r of readRunLog(team, run)) {
      if (sinceMs !== undefined && r.at < sinceMs) continue;
      const stream = r.stream === 'stderr' ? out.stderr : out.stdout;
      if (!prefix) {
        stream.write(r.data);
        continue;
      }
      const key = `${r.job}\0${r.stream}`;
      if (last && last.key.split('\0')[0] !== String(r.job)) flush(last.key, last.workflow, last.stream);
      const lines = ((partial.get(key) ?? '') + r.data.toString('utf8')).split('\n');
      partial.set(key, lines.pop() ?? '');
      for (const l of lines) stream.write(`${r.workflow.padEnd(width)} | ${l}\n`);
      last = { key, workflow: r.workflow, stream };
    }
    if (last) flush(last.key, last.workflow, last.stream);
    return true;
  });
}
