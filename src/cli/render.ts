/**
 * The one place where run events become terminal output. Job output goes to stdout (stderr for the
 * job's stderr), as it comes; with several jobs in a run, each line is prefixed with its workflow.
 * Statuses and notices go to stderr. `--json` prints each event as one JSON line instead.
 */
import type { RunEvent } from '../engine/events.js';
import { describeRemoteOrigin } from '../engine/remote-cache.js';
import { isFinal, type JobId } from '../engine/types.js';
import { formatBytes } from './format.js';

export interface RenderOptions {
  readonly stdout: NodeJS.WritableStream & { isTTY?: boolean };
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean };
  readonly json?: boolean;
  /**
   * Several jobs in the run: prefix job output with the workflow name — from a job's first line on,
   * unless by then every other job was reused (then only this one prints, as plainly as a lone job).
   */
  readonly prefix?: boolean;
  /**
   * How whoever reads this output aborts a graceful stop. Default: Ctrl-C again (the foreground CLI);
   * the detached supervisor has no terminal, so it names the command instead.
   */
  readonly abortBy?: string;
}

export function createRenderer(options: RenderOptions): (event: RunEvent) => void {
  if (options.json) {
    return (event) => {
      const out = event.type === 'job-log' ? { ...event, data: event.data.toString('utf8') } : event;
      options.stdout.write(`${JSON.stringify(out)}\n`);
    };
  }
  const { stdout, stderr } = options;
  const partial = new Map<string, string>();
  const started = new Map<JobId, number>();
  const width = new Map<JobId, string>();
  let progressLine = false;
  const clearProgress = (): void => {
    if (progressLine) {
      stderr.write('\r\x1b[K');
      progressLine = false;
    }
  };
  const say = (text: string): void => {
    clearProgress();
    stderr.write(`${text}\n`);
  };
  const tags = new Map<JobId, string>();
  const reused = new Set<JobId>();
  /** Per job, decided at its first output line; once one job is prefixed, all are. */
  const prefixed = new Map<JobId, boolean>();
  const prefixes = (job: JobId): boolean => {
    let p = prefixed.get(job);
    if (p === undefined) {
      p = [...prefixed.values()].some(Boolean) || [...width.keys()].some((id) => id !== job && !reused.has(id));
      prefixed.set(job, p);
    }
    return p;
  };
  /** Ends the unfinished last lines of a job (or of every job), prefixed like the others. */
  const flush = (job?: JobId): void => {
    for (const [key, rest] of partial) {
      const [id, stream] = key.split('\0') as [JobId, string];
      if (job !== undefined && id !== job) continue;
      if (rest) (stream === 'stderr' ? stderr : stdout).write(`${tags.get(id) ?? id} | ${rest}\n`);
      partial.delete(key);
    }
  };

  return (event) => {
    switch (event.type) {
      case 'run-created': {
        const pad = Math.max(...event.jobs.map((j) => j.workflow.length));
        for (const j of event.jobs) width.set(j.id, j.workflow.padEnd(pad));
        say(`Run ${event.run}: ${event.jobs.map((j) => j.workflow).join(' → ')}`);
        break;
      }
      case 'job-waiting':
        say(`  ${event.workflow}: waiting for run ${event.producerRun}, which is making the same artifacts now (${event.producer})`);
        break;
      case 'job-reused':
        reused.add(event.job);
        say(`  ${event.workflow}: ${event.origin ? describeRemoteOrigin(event.origin) : `cached (same inputs as ${event.from})`}`);
        break;
      case 'job-status':
        if (isFinal(event.status)) flush(event.job);
        if (event.status === 'running') started.set(event.job, Date.now());
        if (event.status === 'done' && reused.has(event.job)) break;
        if (event.status === 'done') say(`  ${event.workflow}: done${elapsed(started.get(event.job))}`);
        else if (event.status === 'failed') say(`  ${event.workflow}: failed${event.reason ? ` — ${event.reason}` : ''}`);
        else if (event.status === 'stopped' || event.status === 'aborted' || event.status === 'interrupted') say(`  ${event.workflow}: ${event.status}${event.reason ? ` — ${event.reason}` : ''}`);
        else if (event.status === 'running') say(`  ${event.workflow}: running`);
        break;
      case 'job-log': {
        clearProgress();
        const stream = event.stream === 'stderr' ? stderr : stdout;
        if (!options.prefix || !prefixes(event.job)) {
          stream.write(event.data);
          break;
        }
        const key = `${event.job}\0${event.stream}`;
        const text = (partial.get(key) ?? '') + event.data.toString('utf8');
        const lines = text.split('\n');
        partial.set(key, lines.pop() ?? '');
        const tag = width.get(event.job) ?? event.workflow;
        tags.set(event.job, tag);
        for (const line of lines) stream.write(`${tag} | ${line}\n`);
        break;
      }
      case 'job-notice': {
        const n = event.notice;
        if (n.kind === 'pull-progress') {
          if (!stderr.isTTY) break;
          const pct = n.total > 0 ? ` ${Math.floor((100 * n.current) / n.total)}% (${formatBytes(n.current)} / ${formatBytes(n.total)})` : '';
          stderr.write(`\r\x1b[K  pulling ${n.image}${pct}`);
          progressLine = true;
        } else if (n.kind === 'pull-done') say(`  pulled ${n.image}`);
        else if (n.kind === 'port') say(`  ${event.workflow}: port ${n.containerPort} → ${n.url}`);
        else say(`  ${event.workflow}: ${n.message}`);
        break;
      }
      case 'job-retry':
        flush(event.job);
        say(`  ${event.workflow}: interrupted — ${event.reason}; running again on a new machine (${event.attempt} of ${event.of})`);
        break;
      case 'artifacts-saved':
        say(`  ${event.workflow}: saved ${event.files} artifact file${event.files === 1 ? '' : 's'} (${formatBytes(event.bytes)})`);
        break;
      case 'stopping':
        say(event.mode === 'graceful' ? `Stopping gracefully (artifacts are saved); ${options.abortBy ?? 'press Ctrl-C again'} to abort` : 'Aborting');
        break;
      case 'run-finished':
        flush();
        say(`Run ${event.run} ${event.status}`);
        break;
    }
  };
}

const elapsed = (since: number | undefined): string => (since ? ` in ${((Date.now() - since) / 1000).toFixed(1)} s` : '');
