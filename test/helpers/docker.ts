/**
 * Docker for tests: the busybox image the tests run (built locally, never pulled) and a sweep that
 * lists containers by label, for leak checks at the end of a file.
 */
import { DockerApiError, DockerClient, endpointFromEnv } from '../../src/backends/docker/docker.js';

export const BUSYBOX = 'dstack-test/busybox:latest';

let shared: DockerClient | undefined;
export const testDocker = (): DockerClient => (shared ??= new DockerClient(endpointFromEnv()));

/** Throws, saying how to build it, when the busybox image is missing. */
export async function ensureBusybox(): Promise<void> {
  try {
    await testDocker().imageInspect(BUSYBOX);
  } catch (e) {
    if (e instanceof DockerApiError && e.status === 404) {
      throw new Error(`image ${BUSYBOX} is missing: run \`scripts/build-images.sh busybox\``);
    }
    throw e;
  }
}

/** Containers (running or not) carrying every label given (`key` or `key=value`). */
export async function containersLabelled(...labels: string[]): Promise<{ id: string; labels: Record<string, string> }[]> {
  const list = await testDocker().listContainers(labels);
  return list.map((c) => ({ id: c.Id, labels: c.Labels }));
}

/** Removes the containers carrying the labels; returns how many there were (a leak when > 0). */
export async function sweepContainers(...labels: string[]): Promise<number> {
  const found = await containersLabelled(...labels);
  await Promise.all(found.map((c) => testDocker().removeContainer(c.id)));
  return found.length;
}

export function closeTestDocker(): void {
  shared?.close();
  shared = undefined;
}
