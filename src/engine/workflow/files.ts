/**
 * Where a project's workflow files are, without reading them (and without loading the YAML parser:
 * the parsed-project cache needs only this on a hit).
 */
import { existsSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

const isDir = (p: string): boolean => existsSync(p) && statSync(p).isDirectory();
const PROJECT_MARKERS = ['workflows.yaml', 'workflows.yml', 'workflows', 'variables.yaml'];

/** Per-project variable defaults, relative to the project root. */
export const VARIABLES_FILE = '.dstack/variables.yaml';

/**
 * The nearest ancestor whose `.dstack/` holds project files. The dstack home (`~/.dstack` by
 * default) is also a `.dstack/` folder, so a bare `.dstack/` only counts when it is not the home;
 * otherwise every folder under `~` would look like a project.
 */
export function findProjectRoot(cwd: string): string | undefined {
  const home = resolve(process.env['DSTACK_HOME'] ?? join(homedir(), '.dstack'));
  let bare: string | undefined;
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    const d = join(dir, '.dstack');
    if (isDir(d)) {
      if (PROJECT_MARKERS.some((m) => existsSync(join(d, m)))) return dir;
      if (bare === undefined && d !== home) bare = dir;
    }
    if (dirname(dir) === dir) return bare;
  }
}

/** The workflow files, relative to the root, in the order they are loaded. */
export async function workflowFiles(root: string): Promise<string[]> {
  const files = ['.dstack/workflows.yaml', '.dstack/workflows.yml'].filter((f) => existsSync(join(root, f)));
  const dir = join(root, '.dstack', 'workflows');
  if (isDir(dir)) {
    const names = (await readdir(dir)).filter((n) => /\.ya?ml$/.test(n)).sort();
    files.push(...names.map((n) => `.dstack/workflows/${n}`));
  }
  return files;
}
