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
  const text = new TextRenderer(options);
  return (event) => text.render(event);
}

/** Events as people read them: statuses on stderr, job output on stdout, prefixed when several jobs print. */
class TextRenderer {
  /** A job's output line not ended yet, per job and stream. */
  private readonly partial = new Map<string, string>();
  private readonly started = new Map<JobId, number>();
  /** Each job's workflow name padded to the run's longest: the prefix of its lines. */
  private readonly width = new Map<JobId, string>();
  private readonly tags = new Map<JobId, string>();
  private readonly reused = new Set<JobId>();
  /** Per job, decided at its first output line; once one job is prefixed, all are. */
  private readonly prefixed = new Map<JobId, boolean>();
  private progressLine = false;

  constructor(private readonly o: RenderOptions) {}

  render(event: RunEvent): void {
    switch (event.type) {
      case 'run-created': {
        const pad = Math.max(...event.jobs.map((j) => j.workflow.length));
        for (const j of event.jobs) this.width.set(j.id, j.workflow.padEnd(pad));
        this.say(`Run ${event.run}: ${event.jobs.map((j) => j.workflow).join(' → ')}`);
        break;
      }
      case 'job-waiting':
        this.say(`  ${event.workflow}: waiting for run ${event.producerRun}, which is making the same artifacts now (${event.producer})`);
        break;
      case 'job-reused':
        this.reused.add(event.job);
        this.say(`  ${event.workflow}: ${event.origin ? describeRemoteOrigin(event.origin) : `cached (same inputs as ${event.from})`}`);
        break;
      case 'job-status':
        this.status(event);
        break;
      case 'job-log':
        this.log(event);
        break;
      case 'job-notice':
        this.notice(event);
        break;
      case 'job-retry':
        this.flush(event.job);
        this.say(`  ${event.workflow}: interrupted — ${event.reason}; running again on a new machine (${event.attempt} of ${event.of})`);
        break;
      case 'artifacts-saved':
        this.say(`  ${event.workflow}: saved ${event.files} artifact file${event.files === 1 ? '' : 's'} (${formatBytes(event.bytes)})`);
        break;
      case 'stopping':
        this.say(event.mode === 'graceful' ? `Stopping gracefully (artifacts are saved); ${this.o.abortBy ?? 'press Ctrl-C again'} to abort` : 'Aborting');
        break;
      case 'run-finished':
        this.flush();
        this.say(`Run ${event.run} ${event.status}`);
        break;
    }
  }

  private status(event: Extract<RunEvent, { type: 'job-status' }>): void {
    if (isFinal(event.status)) this.flush(event.job);
    if (event.status === 'running') this.started.set(event.job, Date.now());
    if (event.status === 'done' && this.reused.has(event.job)) return;
    if (event.status === 'done') this.say(`  ${event.workflow}: done${elapsed(this.started.get(event.job))}`);
    else if (event.status === 'failed') this.say(`  ${event.workflow}: failed${event.reason ? ` — ${event.reason}` : ''}`);
    else if (event.status === 'stopped' || event.status === 'aborted' || event.status === 'interrupted') this.say(`  ${event.workflow}: ${event.status}${event.reason ? ` — ${event.reason}` : ''}`);
    else if (event.status === 'running') this.say(`  ${event.workflow}: running`);
  }

  private log(event: Extract<RunEvent, { type: 'job-log' }>): void {
    this.clearProgress();
    const stream = event.stream === 'stderr' ? this.o.stderr : this.o.stdout;
    if (!this.o.prefix || !this.prefixes(event.job)) {
      stream.write(event.data);
      return;
    }
    const key = `${event.job}\0${event.stream}`;
    const lines = ((this.partial.get(key) ?? '') + event.data.toString('utf8')).split('\n');
    this.partial.set(key, lines.pop() ?? '');
    const tag = this.width.get(event.job) ?? event.workflow;
    this.tags.set(event.job, tag);
    for (const line of lines) stream.write(`${tag} | ${line}\n`);
  }

  private notice(event: Extract<RunEvent, { type: 'job-notice' }>): void {
    const n = event.notice;
    if (n.kind === 'pull-progress') {
      if (!this.o.stderr.isTTY) return;
      const pct = n.total > 0 ? ` ${Math.floor((100 * n.current) / n.total)}% (${formatBytes(n.current)} / ${formatBytes(n.total)})` : '';
      this.o.stderr.write(`\r\x1b[K  pulling ${n.image}${pct}`);
      this.progressLine = true;
    } else if (n.kind === 'pull-done') this.say(`  pulled ${n.image}`);
    else if (n.kind === 'port') this.say(`  ${event.workflow}: port ${n.containerPort} → ${n.url}`);
    else this.say(`  ${event.workflow}: ${n.message}`);
  }

  /** Whether a job's lines are prefixed: once one job's are, or when another job that is not reused prints too. */
  private prefixes(job: JobId): boolean {
    let p = this.prefixed.get(job);
    if (p === undefined) {
      p = [...this.prefixed.values()].some(Boolean) || [...this.width.keys()].some((id) => id !== job && !this.reused.has(id));
      this.prefixed.set(job, p);
    }
    return p;
  }

  /** Ends the unfinished last lines of a job (or of every job), prefixed like the others. */
  private flush(job?: JobId): void {
    for (const [key, rest] of this.partial) {
      const [id, stream] = key.split('\0') as [JobId, string];
      if (job !== undefined && id !== job) continue;
      if (rest) (stream === 'stderr' ? this.o.stderr : this.o.stdout).write(`${this.tags.get(id) ?? id} | ${rest}\n`);
      this.partial.delete(key);
    }
  }

  private say(text: string): void {
    this.clearProgress();
    this.o.stderr.write(`${text}\n`);
  }

  private clearProgress(): void {
    if (this.progressLine) {
      this.o.stderr.write('\r\x1b[K');
      this.progressLine = false;
    }
  }
}

const elapsed = (since: number | undefined): string => (since ? ` in ${((Date.now() - since) / 1000).toFixed(1)} s` : '');
