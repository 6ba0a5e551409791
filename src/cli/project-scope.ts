/**
 * Which project's runs a command sees: `ps`, `prune` and `rm -a` act on the project of the current
 * folder (the runs recorded from it), and on every project with `-A` or outside any project.
 */
import { homedir } from 'node:os';
import { resolve, sep } from 'node:path';
import type { ProjectScope } from '../engine/store/types.js';
import { findProjectRoot } from '../engine/workflow/files.js';

export function projectScope(allProjects: boolean, cwd: string = process.cwd()): ProjectScope {
  if (allProjects) return {};
  const root = findProjectRoot(cwd);
  return root === undefined ? {} : { project: resolve(root) };
}

/** A project's folder for the PROJECT column: under the home folder as `~/…`. */
export function displayProject(root: string): string {
  const home = homedir();
  return root === home ? '~' : root.startsWith(home + sep) ? `~${root.slice(home.length)}` : root;
}
