#!/usr/bin/env node
// Measures what dstack adds to a trivial job: `dstack run` of a one-line busybox job against
// `docker run --rm` of the same image and command, interleaved (A B A B …) so both see the same
// machine noise; and `dstack --version` against `node -e 0` (Node's own start-up floor).
// Prints medians and ratios; saves the figures to .bench/local-overhead.json.
// Usage: node scripts/bench/local-overhead.mjs [rounds=15]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('../..', import.meta.url).pathname;
const rounds = Number(process.argv[2] ?? 15);
const image = 'dstack-test/busybox:latest';
const dstack = join(root, 'bin/dstack');

const project = mkdtempSync(join(tmpdir(), 'dstack-bench-'));
const home = join(project, '.home');
mkdirSync(join(project, '.dstack'), { recursive: true });
writeFileSync(join(project, '.dstack/workflows.yaml'), `workflows:\n  - name: hello\n    image: ${image}\n    commands:\n      - echo hello\n`);
const env = { ...process.env, DSTACK_HOME: home };

function time(cmd, args, opts = {}) {
  const t = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return ms;
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

try {
  execFileSync('docker', ['image', 'inspect', image], { stdio: 'ignore' });
  // Warm both paths once (page cache, the store's first migration).
  time(dstack, ['run', 'hello'], { cwd: project, env });
  time('docker', ['run', '--rm', image, 'sh', '-c', 'echo hello']);

  const run = [];
  const docker = [];
  const version = [];
  const node = [];
  for (let i = 0; i < rounds; i++) {
    run.push(time(dstack, ['run', 'hello'], { cwd: project, env }));
    docker.push(time('docker', ['run', '--rm', image, 'sh', '-c', 'echo hello']));
    version.push(time(dstack, ['--version'], { env }));
    node.push(time(process.execPath, ['-e', '0']));
  }
  const ps = [];
  for (let i = 0; i < rounds; i++) ps.push(time(dstack, ['ps'], { cwd: project, env }));

  const result = {
    date: new Date().toISOString(),
    rounds,
    image,
    medianMs: {
      dstackRun: median(run),
      dockerRunRm: median(docker),
      dstackVersion: median(version),
      nodeStart: median(node),
      dstackPs: median(ps),
    },
  };
  result.ratios = {
    runVsDockerRun: result.medianMs.dstackRun / result.medianMs.dockerRunRm,
    versionVsNodeStart: result.medianMs.dstackVersion / result.medianMs.nodeStart,
  };
  mkdirSync(join(root, '.bench'), { recursive: true });
  writeFileSync(join(root, '.bench/local-overhead.json'), `${JSON.stringify({ ...result, samplesMs: { run, docker, version, node, ps } }, null, 2)}\n`);
  const f = (x) => `${x.toFixed(0)} ms`;
  console.log(`rounds: ${rounds} (interleaved)`);
  console.log(`dstack run (trivial job)   ${f(result.medianMs.dstackRun)}`);
  console.log(`docker run --rm (same)     ${f(result.medianMs.dockerRunRm)}`);
  console.log(`  ratio                    ${result.ratios.runVsDockerRun.toFixed(2)}x   (target <= 1.25x)`);
  console.log(`dstack --version           ${f(result.medianMs.dstackVersion)}`);
  console.log(`node -e 0                  ${f(result.medianMs.nodeStart)}`);
  console.log(`  ratio                    ${result.ratios.versionVsNodeStart.toFixed(2)}x   (target: under 150 ms absolute)`);
  console.log(`dstack ps (${rounds + 1} runs)          ${f(result.medianMs.dstackPs)}`);
} finally {
  spawnSync('docker', ['ps', '-aq', '--filter', `label=dstack.home=${home}`], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter(Boolean)
    .forEach((id) => spawnSync('docker', ['rm', '-f', id]));
  rmSync(project, { recursive: true, force: true });
}
