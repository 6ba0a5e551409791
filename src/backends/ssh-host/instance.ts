/**
 * The seam a cloud joins. A cloud (AWS, GCP) provisions an instance and then does exactly what the
 * SSH pool does on a host; that second part is built once (instance-backend.ts), and a cloud
 * implements only this: launching, finding, asking about and terminating its instances.
 *
 * The generic backend calls a provider in this order for a job:
 *
 *   supports (every job, before anything) → check (once) → imageDigest (per job, for its
 *   fingerprint) → launch → address → [SSH] → ready (if it has one) → [SSH again, Docker, the
 *   job, over SSH] → terminate
 *
 * and `state` whenever the SSH connection to an instance is lost (was it preempted?) or a recorded
 * handle is looked up by a later process; `list` to find what this dstack home left behind.
 *
 * Only one file per cloud imports its SDK, lazily: constructing a provider, and `supports`, must
 * cost nothing.
 */
import type { BackendHandle, Capability, ImageDigestOptions, JobContext, MachineOffer } from '../../engine/backend.js';
import type { JobSpec } from '../../engine/types.js';
import type { SshHostSpec } from './host-spec.js';
import type { SshConnection } from './session.js';

/**
 * What the cloud says of an instance: `pending` (asked for, not running yet), `running`,
 * `preempted` (a spot instance the cloud took back), `terminated` (ended, by anyone: by dstack, by
 * its dead-man switch, by hand), `gone` (the cloud does not know it, or no longer shows it).
 */
export type InstanceState = 'pending' | 'running' | 'preempted' | 'terminated' | 'gone';

/** What an instance needs at launch, made by the generic backend. */
export interface InstanceLaunch {
  /** dstack's client key for this dstack home (an OpenSSH public key line): authorize it for the login user. */
  readonly authorizedKey: string;
  /**
   * The host key dstack made for this instance: sshd must show exactly this key. Installed by
   * `bootScript`; a cloud with its own way to set host keys may use that instead.
   */
  readonly hostKey: { readonly privateKey: string; readonly publicKey: string };
  /**
   * A POSIX sh script (`#!/bin/sh` first) to run as root at first boot, as the instance's user-data
   * or part of it: installs the host key (restarting an sshd that already runs) and starts the
   * dead-man switch (deadman.ts). Carries no credentials of the user's.
   */
  readonly bootScript: string;
}

/** An instance this dstack home owns (tagged as dstack's and this home's), for sweeping. */
export interface OwnedInstance {
  /** What `state`, `terminate` and the generic backend's `reap` take. */
  readonly handle: BackendHandle;
  readonly state: InstanceState;
  /** The job it was launched for, from its tags. */
  readonly job?: string;
  /** The cloud's name for it (`i-0abc…`); default: the handle as JSON. */
  readonly id?: string;
  /** A few words for listings (`t3a.large, us-east-1a, up 12 min`). */
  readonly detail?: string;
}

/** The identity a job's fingerprint uses for its image, and how an instance pulls exactly that image. */
export interface ImageIdentity {
  /** A registry's manifest digest (`sha256:…`), or an engine's image id where the image is local. */
  readonly digest: string;
  /** `name@sha256:…` references that pull it. */
  readonly pullAs: readonly string[];
}

/**
 * A cloud, as the generic instance backend drives it. Handles are the provider's own JSON, plus
 * the keys the generic backend adds — `host`, `hostKey`, `container`, `jobDir`, `remote` — which a
 * provider must not use.
 */
export interface InstanceProvider {
  /** The backend id: `aws:NAME` for the remote NAME. */
  readonly id: string;
  /**
   * Pure and cheap: can this cloud run the job at all (an instance type with that many GPUs of
   * that model, spot when `interruptible`…)? A refusal says what to change.
   */
  supports(spec: JobSpec): Capability;
  /** Credentials and connectivity (one cheap authenticated call), before anything costs money. DS02xx, exit 3. */
  check(signal: AbortSignal): Promise<void>;
  /** The job's image identity, before any instance exists (from the registry, not an engine). */
  imageDigest(spec: JobSpec, options: ImageDigestOptions): Promise<ImageIdentity>;
  /**
   * Launches an instance for this job: sized for `ctx.spec.resources`, spot when interruptible,
   * tagged as dstack's (this home, the run, the job), terminating itself on shutdown, with
   * `boot.bootScript` run at first boot and `boot.authorizedKey` authorized. MUST call
   * `ctx.recordHandle(handle)` as soon as the cloud returns an id, before waiting for anything, so
   * a crash right after never loses an instance that costs money; then returns the same handle.
   * May return before the instance runs. Honours `ctx.signal`.
   */
  launch(ctx: JobContext, boot: InstanceLaunch): Promise<BackendHandle>;
  /**
   * Where SSH can be tried: waits until the instance runs and has an address, honouring `signal`.
   * Rejects with DS0216 when the instance ends first.
   */
  address(handle: BackendHandle, signal: AbortSignal): Promise<SshHostSpec>;
  /** What the cloud says now. Never throws for an instance it does not know: `gone`. */
  state(handle: BackendHandle): Promise<InstanceState>;
  /** Ends the instance and whatever it holds. Idempotent: an instance already gone is fine. */
  terminate(handle: BackendHandle): Promise<void>;
  /** This dstack home's instances that are not terminated, for sweeping. */
  list(): Promise<readonly OwnedInstance[]>;
  /**
   * Optional: waits, over the first SSH connection to the instance, until the instance's own boot
   * (a cloud's user-data: Docker installed, GPU drivers checked) has finished; rejects with a coded
   * error saying what failed. sshd answers long before such a boot is done. The generic backend then
   * logs in again, so a login made before the boot added the user to a group (`docker`) gets it.
   */
  ready?(connection: SshConnection, signal: AbortSignal): Promise<void>;
  /** Optional: the instance types it would try for the job, in order (Backend.offers). */
  offers?(spec: JobSpec, signal: AbortSignal): Promise<readonly MachineOffer[]>;
  /** Releases SDK clients. */
  close?(): Promise<void>;
}
