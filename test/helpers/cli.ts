/**
 * End-to-end harness: a temporary project (its `.dstack/workflows.yaml`, variables and files), a
 * hermetic DSTACK_HOME, and the BUILT binary `bin/dstack` run in it — to completion, or in the
 * background so a test can signal it. The bundle is rebuilt once per process when dist/ is missing or
 * older than src/, so the suite never tests stale code.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import * as assert from 'uvu/assert';

const ROOT = new URL('../..', import.meta.url).pathname;
export const BIN = join(ROOT, 'bin', 'dstack');
const BUNDLE = join(ROOT, 'dist', 'dstack.mjs');

export interface CliResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
  /** Set when the process ended by a signal (exitCode is then 128 + the signal's number). */
  readonly signal?: string;
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

let built = false;
/** Builds dist/ with `node scripts/build.mjs` when it is missing or older than src/ (once per process). */
export function ensureBuilt(): void {
  if (built) return;
  const stale = !existsSync(BUNDLE) || statSync(BUNDLE).mtimeMs < newestMtime(join(ROOT, 'src'));
  if (stale) {
    const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'build.mjs')], { cwd: ROOT, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`build failed:\n${r.stdout}${r.stderr}`);
  }
  built = true;
}

export interface RunOptions {
  /** Working directory (default: the project's folder). */
  readonly cwd?: string;
  /** Added to (and overriding) the hermetic environment. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Kill the CLI after this long (default 60 s). */
  readonly timeoutMs?: number;
}

/** A child started in the background: signal it, read its output so far, await its end. */
export interface Background {
  readonly pid: number;
  readonly stdout: () => string;
  readonly stderr: () => string;
  signal(sig: NodeJS.Signals): void;
  /** Resolves once `predicate(stdout, stderr)` holds; rejects if the process ends first or after `ms`. */
  waitFor(predicate: (stdout: string, stderr: string) => boolean, ms?: number): Promise<void>;
  readonly result: Promise<CliResult>;
}

export interface Project {
  readonly dir: string;
  readonly home: string;
  readonly env: Readonly<Record<string, string>>;
  /** Runs `dstack ARGS` to its end. */
  run(args: readonly string[], options?: RunOptions): Promise<CliResult>;
  /** Starts `dstack ARGS` in the background. */
  start(args: readonly string[], options?: RunOptions): Background;
  /** `dstack ARGS --json`-style helper: runs, asserts exit 0, parses stdout. */
  json<T = unknown>(args: readonly string[], options?: RunOptions): Promise<T>;
  /** Removes the containers this project's home made, then the folders. */
  cleanup(): Promise<void>;
}

export interface ProjectOptions {
  /** `.dstack/workflows.yaml`; omitted: no workflows file at all. */
  readonly workflows?: string;
  readonly variables?: string;
  /** More files, relative to the project folder. */
  readonly files?: Readonly<Record<string, string>>;
  /** Written to `$DSTACK_HOME/secrets.json`, mode 0600. */
  readonly secrets?: Readonly<Record<string, string>>;
  /** More environment for every command run in this project. */
  readonly env?: Readonly<Record<string, string>>;
}

/** Every home made in this process, for the leak sweep at the end of a file. */
export const homes: string[] = [];

/**
 * Workflows `a` (prints a-says-hi, saves out/x.txt with content-from-a) and `b` (depends on `a`,
 * prints b-reads-<that content>) on `image`: entries of a workflows.yaml's `workflows:` list.
 */
export const aThenB = (image: string): string => `  - name: a
    image: ${image}
    commands:
      - echo a-says-hi
      - mkdir -p out
      - echo content-from-a > out/x.txt
    artifacts:
      - out/x.txt
  - name: b
    image: ${image}
    deps: [a]
    commands:
      - echo b-reads-$$(cat out/x.txt)
`;

/** A job in `dstack ps RUN --json`. */
export interface PsJob {
  job: string;
  workflow: string;
  status: string;
  exitCode: number | null;
  reason: string | null;
  errorCode: string | null;
  cachedFrom: string | null;
  artifacts: string[];
  history: { status: string; at: string }[];
}
/** A run in `dstack ps --json`. */
export interface PsRun {
  run: string;
  workflow: string;
  status: string;
  backend: string;
  project: string;
  args: string[];
}
/** `dstack ps RUN --json`: the run and its jobs. */
export type PsRunWithJobs = PsRun & { jobs: PsJob[] };

const resultOf = (r: { exitCode?: number; signal?: string; stdout?: unknown; stderr?: unknown }): CliResult => ({
  exitCode: r.exitCode ?? (r.signal ? 128 : -1),
  stdout: String(r.stdout ?? ''),
  stderr: String(r.stderr ?? ''),
  ...(r.signal ? { signal: r.signal } : {}),
});

function spawnCli(project: { dir: string; env: Record<string, string> }, args: readonly string[], options: RunOptions = {}): ResultPromise {
  ensureBuilt();
  return execa(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? project.dir,
    env: { ...project.env, ...options.env },
    extendEnv: false,
    stdin: 'ignore',
    reject: false,
    timeout: options.timeoutMs ?? 60_000,
    killSignal: 'SIGKILL',
    stripFinalNewline: false,
  });
}

/** Runs to the end. dist/ is swapped in whole by the build (scripts/build.mjs), so it is never missing mid-suite. */
async function runCli(project: { dir: string; env: Record<string, string> }, args: readonly string[], options?: RunOptions): Promise<CliResult> {
  return resultOf(await spawnCli(project, args, options));
}

export async function createProject(options: ProjectOptions = {}): Promise<Project> {
  ensureBuilt();
  const dir = realpathSync(await mkdtemp(join(tmpdir(), 'dstack-e2e-proj-')));
  const home = realpathSync(await mkdtemp(join(tmpdir(), 'dstack-e2e-home-')));
  homes.push(home);
  if (options.workflows !== undefined) {
    await mkdir(join(dir, '.dstack'), { recursive: true });
    await writeFile(join(dir, '.dstack', 'workflows.yaml'), options.workflows);
  }
  if (options.variables !== undefined) {
    await mkdir(join(dir, '.dstack'), { recursive: true });
    await writeFile(join(dir, '.dstack', 'variables.yaml'), options.variables);
  }
  for (const [rel, text] of Object.entries(options.files ?? {})) {
    await mkdir(dirname(join(dir, rel)), { recursive: true });
    await writeFile(join(dir, rel), text);
  }
  if (options.secrets) {
    const path = join(home, 'secrets.json');
    await writeFile(path, JSON.stringify(options.secrets), { mode: 0o600 });
    await chmod(path, 0o600);
  }
  // Hermetic: only what the CLI needs from the outside; DOCKER_HOST passes through so the suite
  // follows the engine the developer uses.
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    DSTACK_HOME: home,
    DSTACK_OWNER: 'e2e',
    NO_COLOR: '1',
    FORCE_COLOR: '0',
    ...(process.env.DOCKER_HOST ? { DOCKER_HOST: process.env.DOCKER_HOST } : {}),
    ...options.env,
  };
  const project = { dir, env };
  return {
    dir,
    home,
    env,
    run: (args, o) => runCli(project, args, o),
    start: (args, o) => {
      const child = spawnCli(project, args, { timeoutMs: 120_000, ...o });
      let out = '';
      let err = '';
      let ended = false;
      child.stdout?.on('data', (d: Buffer) => (out += d.toString('utf8')));
      child.stderr?.on('data', (d: Buffer) => (err += d.toString('utf8')));
      const result = child.then(resultOf);
      void result.then(() => (ended = true));
      return {
        pid: child.pid!,
        stdout: () => out,
        stderr: () => err,
        signal: (sig) => void child.kill(sig),
        result,
        waitFor: async (predicate, ms = 20_000) => {
          const deadline = Date.now() + ms;
          while (!predicate(out, err)) {
            if (ended) throw new Error(`dstack ${args.join(' ')} ended before the awaited output\nstdout: ${out}\nstderr: ${err}`);
            if (Date.now() > deadline) throw new Error(`timed out waiting for output of dstack ${args.join(' ')}\nstdout: ${out}\nstderr: ${err}`);
            await sleep(50);
          }
        },
      };
    },
    json: async <T>(args: readonly string[], o?: RunOptions): Promise<T> => {
      const r = await runCli(project, args, o);
      if (r.exitCode !== 0) throw new Error(`dstack ${args.join(' ')} exited ${r.exitCode}\n${r.stderr}`);
      assertNoCrash(r);
      return JSON.parse(r.stdout) as T;
    },
    cleanup: async () => {
      await removeContainers(home);
      await rm(dir, { recursive: true, force: true });
      await rm(home, { recursive: true, force: true });
    },
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The run name from the renderer's first line on stderr: `Run wet-mangust-1: a → b`. */
export function runNameOf(stderr: string): string {
  const m = /^Run (\S+): /m.exec(stderr);
  if (!m) throw new Error(`no run name in stderr:\n${stderr}`);
  return m[1]!;
}

/** No stack trace, no internal error — in any output of the CLI. */
export function assertNoCrash(r: CliResult): void {
  for (const text of [r.stderr, r.stdout]) {
    if (text.includes('    at ')) throw new Error(`stack trace in output:\n${text}`);
    if (/internal error/i.test(text)) throw new Error(`internal error in output:\n${text}`);
  }
}

async function docker(args: readonly string[]): Promise<string> {
  const r = await execa('docker', args, { reject: false });
  if (r.exitCode !== 0) throw new Error(`docker ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Ids of the containers (running or not) that the home made. */
/** A command that must have succeeded: no crash, exit 0 (`what` names it in the failure); returns it. */
export function assertOk(r: CliResult, what: string): CliResult {
  assertNoCrash(r);
  assert.is(r.exitCode, 0, `${what}: ${r.stderr}`);
  return r;
}

export async function containersOf(home: string, ...filters: string[]): Promise<string[]> {
  const out = await docker(['ps', '-a', '-q', '--no-trunc', '--filter', `label=dstack.home=${home}`, ...filters.flatMap((f) => ['--filter', f])]);
  return out.split('\n').filter(Boolean);
}

/** The leak sweep at the end of a file: no home made in this process has a container left. */
export async function assertNoContainersLeft(word: 'by' | 'for' = 'by'): Promise<void> {
  for (const home of homes) assert.equal(await containersOf(home), [], `containers left ${word} ${home}`);
}

export async function removeContainers(home: string): Promise<void> {
  const ids = await containersOf(home);
  if (ids.length) await docker(['rm', '-f', ...ids]).catch(() => undefined);
}

export { docker };
