/**
 * The team's runs beside this home's: which project a run belongs to (for its repository identity),
 * and a run, tag or listing looked up in the team bucket when this home does not have it.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DstackError, formatError } from '../engine/errors.js';
import type { RunRecord } from '../engine/store/types.js';
import { findProjectRoot } from '../engine/workflow/files.js';
import type { RunSummary } from '../remote-store/layout.js';
import { table } from './format.js';
import { RUN_HEADER, runCells, runSummaryJson, type RunRowSource } from './run-rows.js';
import { defaultTeamRemote, repoOf, teamRemote, withTeam } from './team.js';

/**
 * The project folder a run came from when it still holds `.dstack/`, else the project of the
 * current folder (a run pushed from another clone of the same repository); DS0012 outside any.
 */
export async function projectRootOf(run: RunRecord | undefined, cwd = process.cwd()): Promise<string> {
  if (run && existsSync(join(run.repo.root, '.dstack'))) return run.repo.root;
  const root = findProjectRoot(cwd);
  if (!root) {
    throw new DstackError('DS0012', 'no .dstack/ in this folder or any folder above it: the team bucket keeps runs by repository', {
      hint: 'run this from inside the project (a clone of the repository the runs belong to)',
    });
  }
  return root;
}


/**
 * The team's runs of the current project's repository, newest first (`ps --remote`). Throws the
 * bucket's coded errors: asked for explicitly, an unreachable bucket is the answer.
 */
export async function teamRuns(home: string, remoteName: string | undefined): Promise<{ readonly remote: string; readonly runs: readonly RunSummary[] }> {
  const remote = await teamRemote(home, remoteName);
  // The repository's identity (a `git` call) is looked up while the SDK loads.
  const repo = repoOf(await projectRootOf(undefined));
  repo.catch(() => undefined); // awaited below; not unhandled if opening the bucket fails first
  return withTeam(remote, async (team) => ({ remote: remote.name, runs: await team.listRuns(await repo) }));
}

type Row = RunRowSource & { where: string };


/**
 * `ps --remote` (the team's runs alone) and `ps -a` (this home's and the team's, with a WHERE
 * column: `local`, the bucket's name, or both for a run pushed from here). With `-a`, a bucket that
 * cannot be reached is a warning and the local runs are shown.
 */
export async function psWithTeam(
  home: string,
  options: { readonly remote?: string; readonly local?: readonly RunRecord[]; readonly json: boolean; readonly stderr: NodeJS.WritableStream },
): Promise<string> {
  let team: { remote: string; runs: readonly RunSummary[] } | undefined;
  if (options.local === undefined) team = await teamRuns(home, options.remote);
  else {
    try {
      // Outside a project there is no repository to list the team's runs of: this home's alone.
      team = (await defaultTeamRemote(home)) && findProjectRoot(process.cwd()) ? await teamRuns(home, undefined) : undefined;
    } catch (e) {
      if (!(e instanceof DstackError)) throw e;
      options.stderr.write(`warning: the team's runs are not shown:\n${formatError(e)}\n`);
    }
  }
  const rows = new Map<string, Row>();
  for (const r of options.local ?? []) rows.set(r.name, { ...r, where: 'local' });
  for (const r of team?.runs ?? []) {
    const mine = rows.get(r.name);
    if (mine && mine.owner === r.owner && mine.submittedAt === r.submittedAt) mine.where = `local+${team!.remote}`;
    else if (!mine) rows.set(r.name, { ...r, where: team!.remote });
  }
  const list = [...rows.values()].sort((a, b) => b.submittedAt - a.submittedAt);
  if (options.json) {
    const out = list.map((r) => ({ ...runSummaryJson(r), where: r.where }));
    return `${JSON.stringify(out, null, 2)}\n`;
  }
  if (list.length === 0) return options.local ? 'No runs yet. Start one with `dstack run WORKFLOW`.\n' : `No runs of this repository in the team bucket ${team?.remote ?? ''} yet. Send one with \`dstack push RUN\`.\n`;
  if (!options.local) return `${table(RUN_HEADER, list.map(runCells))}\n`;
  return `${table([...RUN_HEADER, 'WHERE'], list.map((r) => [...runCells(r), r.where]))}\n`;
}
