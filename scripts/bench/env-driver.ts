// The cost of an environment kept as an artifact outside /workflow (issue 12): a Python venv with pip
// (`python3 -m venv /opt/venv` in dstack-test/venv, ~25 MB in ~1,700 files) saved from an ended
// container into a fresh store (everything new), saved again (everything already stored: what a
// re-run of an unchanged environment costs), and restored into a new container before its start —
// against `docker cp` of the same folder out of the container (the engine's own archive read, to a
// folder), the floor of any save through the archive API. Prints one JSON line.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeManifest } from '../../src/artifacts/manifest.js';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import { restoreOutside, saveOutside } from '../../src/backends/docker/archive.js';
import { DEFAULT_ARTIFACT_LIMIT } from '../../src/backends/docker/artifact-limit.js';
import { DockerClient } from '../../src/backends/docker/docker.js';

const IMAGE = 'dstack-test/venv:latest';
const rounds = Number(process.argv[2] ?? 3);
const docker = (...args: string[]): string => {
  const r = spawnSync('docker', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`docker ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
};
const since = (t: bigint): number => Number(process.hrtime.bigint() - t) / 1e6;

const client = new DockerClient();
const made = docker('run', '-d', '--pull=never', '--label', 'dstack.bench=env', IMAGE, 'sh', '-c', 'python3 -m venv /opt/venv');
const target = docker('create', '--pull=never', '--label', 'dstack.bench=env', IMAGE, 'true');
const samples: { firstMs: number; againMs: number; restoreMs: number; dockerCpMs: number }[] = [];
let size = 0;
let files = 0;
try {
  docker('wait', made);
  for (let i = 0; i < rounds; i++) {
    const home = await mkdtemp(join(tmpdir(), 'dstack-bench-env-'));
    try {
      const store = new LocalArtifactStore({ home });
      const specs = [{ path: '/opt/venv', mount: false, absolute: true as const }];
      const o = { client, container: made, specs, home: '/root', store, limit: DEFAULT_ARTIFACT_LIMIT };
      let t = process.hrtime.bigint();
      const saved = await saveOutside(o);
      const firstMs = since(t);
      t = process.hrtime.bigint();
      await saveOutside(o);
      const againMs = since(t);
      const m = makeManifest(saved.entries);
      size = m.size;
      files = m.entries.filter((e) => e.type === 'file').length;
      t = process.hrtime.bigint();
      await restoreOutside({ client, container: target, entries: m.entries, home: '/root', store });
      const restoreMs = since(t);
      t = process.hrtime.bigint();
      docker('cp', `${made}:/opt/venv`, join(home, 'cp'));
      const dockerCpMs = since(t);
      samples.push({ firstMs, againMs, restoreMs, dockerCpMs });
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  }
} finally {
  docker('rm', '-f', made, target);
  client.close();
}
console.log(JSON.stringify({ size, files, samples }));
