/**
 * One open database shared by the focused stores: the handle, its file (for messages), the clock,
 * and the guards that turn SQLite failures into coded errors.
 */
import { dirname } from 'node:path';
import type Database from 'better-sqlite3';
import { isDstackError } from '../errors.js';
import { keepReserve, releaseReserve } from './reserve.js';
import { damagedRecord, toStoreError } from './sqlite-errors.js';

export interface ConnectionOptions {
  readonly db: Database.Database;
  readonly path: string;
  readonly now: () => number;
  readonly readOnly: boolean;
}

export class Connection {
  readonly db: Database.Database;
  readonly path: string;
  readonly now: () => number;
  readonly readOnly: boolean;

  constructor(o: ConnectionOptions) {
    this.db = o.db;
    this.path = o.path;
    this.now = o.now;
    this.readOnly = o.readOnly;
  }

  prepare(sql: string): Database.Statement {
    return this.guard(() => this.db.prepare(sql));
  }

  /** Runs `fn`, turning SQLite failures a user can hit into coded errors. */
  guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw toStoreError(e, this.path);
    }
  }

  /**
   * A write that must happen even on a full disk — how a job ended, deleting runs to free space:
   * when the disk is full, the home's reserve (reserve.ts) is given up and `fn` tried once more.
   * `fn` must be one transaction or one statement, so a failed try left nothing behind.
   */
  essential<T>(fn: () => T): T {
    try {
      return this.guard(fn);
    } catch (e) {
      if (!isDstackError(e) || e.code !== 'DS0320' || !releaseReserve(dirname(this.path))) throw e;
      return this.guard(fn);
    }
  }

  /** Sets the reserve aside again, once space was given back. */
  keepReserve(): void {
    if (!this.readOnly) keepReserve(dirname(this.path));
  }

  /** `fn` in one read transaction: a consistent view across several statements. */
  read<T>(fn: () => T): T {
    return this.guard(() => this.db.transaction(fn)());
  }

  /** `fn` in one IMMEDIATE transaction: the write lock is taken up front, so it cannot fail half-way on an upgrade. */
  write<T>(fn: () => T): T {
    return this.guard(() => this.db.transaction(fn).immediate());
  }

  mustChange(changes: number, what: string): void {
    if (changes !== 1) throw new Error(`${what}: no such record`);
  }

  /**
   * Parses a JSON column; a value that does not parse, or is not of the shape `check` expects, is a
   * damaged record (DS0323 naming the file and the record), never a crash further on.
   */
  json<T>(text: string, what: string, check: (v: unknown) => boolean): T {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw damagedRecord(this.path, what, e);
    }
    if (!check(value)) throw damagedRecord(this.path, what);
    return value as T;
  }

  /** A value that cannot be what its column holds. */
  damaged(what: string): Error {
    return damagedRecord(this.path, what);
  }
}
