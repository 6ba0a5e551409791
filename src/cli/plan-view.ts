/** `dstack run --dry-run [--explain]`: the plan and each job's cache decision, as a person reads it or as JSON. */
import type { MachineOffer } from '../engine/backend.js';
import type { JobDecision } from '../engine/explain.js';
import { describeRemoteOrigin } from '../engine/remote-cache.js';
import type { PreparedRun } from '../engine/submit.js';
import { displaySecrets } from '../engine/secrets.js';
import { formatBytes } from './format.js';

export function printPlan(
  out: NodeJS.WritableStream,
  prepared: PreparedRun,
  decisions: readonly JobDecision[],
  options: { json?: boolean; explain?: boolean; offers?: readonly (readonly MachineOffer[] | undefined)[] },
): void {
  if (options.json) {
    const jobs = prepared.jobs.map((j, i) => ({
      workflow: j.workflow,
      action: decisions[i]?.decision === 'cached' ? 'cached' : decisions[i]?.decision === 'waits' ? 'wait' : 'run',
      ...(decisions[i]?.from ? { from: decisions[i]!.from, fromRun: decisions[i]!.fromRun } : {}),
      ...(decisions[i]?.via ? { via: decisions[i]!.via } : {}),
      ...(options.explain ? { causes: decisions[i]?.causes ?? [] } : {}),
      deps: j.deps.map((d) => prepared.jobs[d]!.workflow),
      image: j.spec.image,
      command: j.spec.command?.map(displaySecrets),
      workingDir: j.spec.workingDir,
      artifacts: j.spec.artifacts.map((a) => a.path),
      env: Object.fromEntries(Object.entries(j.spec.env).map(([k, v]) => [k, displaySecrets(v)])),
      resources: j.spec.resources,
      ...(options.offers?.[i] ? { offers: options.offers[i] } : {}),
    }));
    // The loader's problems as data: the plan's warnings, and what is wrong elsewhere in the project.
    const { inPlan, elsewhere } = prepared.plan.notices;
    out.write(`${JSON.stringify({ jobs, args: prepared.args, overrides: prepared.overrides, notices: { inPlan, elsewhere } }, null, 2)}\n`);
    return;
  }
  const lines: string[] = [];
  prepared.jobs.forEach((j, i) => {
    const deps = j.deps.map((d) => prepared.jobs[d]!.workflow);
    const decision = decisions[i];
    const cached = decision?.decision === 'cached';
    const waits = decision?.decision === 'waits';
    const how = decision?.via ? describeRemoteOrigin(decision.via) : `cached (run ${decision?.fromRun})`;
    lines.push(`${i + 1}. ${j.workflow}  ${cached ? how : waits ? `waits (run ${decision.fromRun} is making it now)` : 'runs'}`);
    if (options.explain) decision?.causes.forEach((c, n) => lines.push(`${n === 0 ? '   why:      ' : '             '}${c.text}`));
    if (cached || waits) return;
    lines.push(`   image:    ${j.spec.image}`);
    const script = j.spec.command?.at(-1);
    if (script !== undefined) {
      const body = displaySecrets(script).split('\n');
      lines.push(`   commands: ${body[0] ?? ''}`);
      for (const l of body.slice(1)) lines.push(`             ${l}`);
    }
    if (deps.length) lines.push(`   after:    ${deps.join(', ')}`);
    if (j.spec.artifacts.length) lines.push(`   saves:    ${j.spec.artifacts.map((a) => a.path + (a.mount ? ' (mounted)' : '') + (a.absolute ? ' (outside /workflow)' : '')).join(', ')}`);
    const r = j.spec.resources;
    const res = [
      r.cpu !== undefined ? `cpu ${r.cpu}` : '',
      r.memory !== undefined ? `memory ${formatBytes(r.memory)}` : '',
      r.gpu ? `gpu ${r.gpu.count}${r.gpu.name ? ` ${r.gpu.name}` : ''}` : '',
      r.shmSize !== undefined ? `shm ${formatBytes(r.shmSize)}` : '',
      r.interruptible ? 'interruptible' : '',
    ].filter(Boolean);
    if (res.length) lines.push(`   needs:    ${res.join(', ')}`);
    if (j.spec.ports) lines.push(`   ports:    ${j.spec.ports}`);
    const offers = options.offers?.[i];
    if (offers) lines.push(...offerLines(offers));
  });
  if (prepared.args.length) lines.push(`run.args: ${prepared.args.join(' ')}`);
  out.write(`${lines.join('\n')}\n`);
}

/** How many offers a dry run shows per job; the rest are counted. */
const SHOWN_OFFERS = 10;

/** `$0.526/h`, `~$0.526/h` for an estimate. */
const price = (o: MachineOffer): string => `${o.estimate ? '~' : ''}$${o.pricePerHour < 0.01 ? o.pricePerHour.toPrecision(2) : String(Number(o.pricePerHour.toFixed(4)))}/h`;

/** The machines a job would be tried on, cheapest first, under the job. */
function offerLines(offers: readonly MachineOffer[]): string[] {
  const rows = offers.slice(0, SHOWN_OFFERS).map((o) => [o.type, o.gpus ?? '-', `${o.vcpus} vCPUs`, `${Number((o.memoryMiB / 1024).toFixed(1))} GiB`, o.market, price(o)]);
  const widths = rows.reduce((w, r) => r.map((c, k) => Math.max(w[k] ?? 0, c.length)), [] as number[]);
  const lines = rows.map((r, n) => `${n === 0 ? '   offers:   ' : '             '}${r.map((c, k) => (k === r.length - 1 ? c : c.padEnd(widths[k]!))).join('  ')}`);
  if (offers.length > SHOWN_OFFERS) lines.push(`             … and ${offers.length - SHOWN_OFFERS} more`);
  return lines;
}
