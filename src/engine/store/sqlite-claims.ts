/**
 * Claims on fingerprints on SQLite: one row per fingerprint being produced. Claiming reads the row
 * and writes ours in one IMMEDIATE transaction, so of several processes claiming at once exactly
 * one takes it; the others see it held.
 */
import type { Fingerprint, JobId } from '../types.js';
import { asJobId, asRunName } from '../types.js';
import type { Connection } from './connection.js';
import type { Claim } from './records.js';
import type { FingerprintClaims } from './types.js';

interface ClaimRow {
  fingerprint: string;
  job: string;
  run: string;
  pid: number;
  hostname: string;
  claimed_at: number;
}

export class SqliteClaims implements FingerprintClaims {
  private readonly s;

  constructor(private readonly c: Connection) {
    const p = (sql: string) => c.prepare(sql);
    this.s = {
      get: p('SELECT * FROM claims WHERE fingerprint = ?'),
      put: p(
        `INSERT INTO claims (fingerprint, job, run, pid, hostname, claimed_at) VALUES (@fingerprint, @job, @run, @pid, @hostname, @claimedAt)
         ON CONFLICT (fingerprint) DO UPDATE SET job = excluded.job, run = excluded.run, pid = excluded.pid,
           hostname = excluded.hostname, claimed_at = excluded.claimed_at`,
      ),
      release: p('DELETE FROM claims WHERE fingerprint = ? AND job = ?'),
    };
  }

  claim(fingerprint: Fingerprint, claimant: Omit<Claim, 'fingerprint' | 'claimedAt'>, stale: (holder: Claim) => boolean): { readonly taken: boolean; readonly holder: Claim } {
    return this.c.write(() => {
      const row = this.s.get.get(fingerprint) as ClaimRow | undefined;
      const held = row && toClaim(row);
      if (held && held.job !== claimant.job && !stale(held)) return { taken: false, holder: held };
      const mine: Claim = { fingerprint, ...claimant, claimedAt: this.c.now() };
      this.s.put.run({ ...mine });
      return { taken: true, holder: mine };
    });
  }

  release(fingerprint: Fingerprint, job: JobId): void {
    this.c.essential(() => this.s.release.run(fingerprint, job));
  }

  holder(fingerprint: Fingerprint): Claim | undefined {
    const row = this.c.guard(() => this.s.get.get(fingerprint)) as ClaimRow | undefined;
    return row && toClaim(row);
  }
}

function toClaim(r: ClaimRow): Claim {
  return {
    fingerprint: r.fingerprint as Fingerprint,
    job: asJobId(r.job),
    run: asRunName(r.run),
    pid: r.pid,
    hostname: r.hostname,
    claimedAt: r.claimed_at,
  };
}
