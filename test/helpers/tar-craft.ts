/**
 * Tar streams made by hand for the archive reader's tests (test/unit/archive-hostile.test.ts): what
 * no engine writes but a job's own archive could hold — names that climb out, links through links,
 * sizes that lie. Headers come from tar's own Header (so their checksums are right); the lies are in
 * the fields, or in the bytes that follow.
 */
import { Header, Pax } from 'tar';

const BLOCK = 512;
const MTIME = new Date('2000-01-01T00:00:00Z');

export type Kind = 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'FIFO' | 'CharacterDevice' | 'BlockDevice';

export interface Crafted {
  readonly path: string;
  readonly type?: Kind;
  /** The bytes that follow the header; `size` says what the header claims (defaults to their length). */
  readonly body?: string | Buffer;
  readonly size?: number;
  readonly linkpath?: string;
  /** Extra PAX records written before the entry (`path`, `size`, odd keys). */
  readonly pax?: Readonly<Record<string, string>>;
}

const pad = (n: number): Buffer => Buffer.alloc((BLOCK - (n % BLOCK)) % BLOCK);

/** A PAX extended header ('x') with the records as given, byte for byte. */
export function paxHeader(records: Readonly<Record<string, string>>): Buffer {
  const body = Buffer.concat(
    Object.entries(records).map(([k, v]) => {
      const rest = ` ${k}=${v}\n`;
      let len = Buffer.byteLength(rest) + 1;
      while (String(len).length + Buffer.byteLength(rest) !== len) len = String(len).length + Buffer.byteLength(rest);
      return Buffer.from(`${len}${rest}`);
    }),
  );
  const h = Buffer.alloc(BLOCK);
  new Header({ path: 'PaxHeader', type: 'ExtendedHeader', size: body.length, mode: 0o644, mtime: MTIME }).encode(h, 0);
  return Buffer.concat([h, body, pad(body.length)]);
}

/** One entry: its header (with a PAX header first when the name needs one), its bytes, padding. */
export function entry(e: Crafted): Buffer {
  const type = e.type ?? (e.path.endsWith('/') ? 'Directory' : 'File');
  const body = e.body === undefined ? Buffer.alloc(0) : Buffer.from(e.body);
  const data = {
    path: e.path,
    type,
    size: e.size ?? (type === 'File' ? body.length : 0),
    mode: type === 'Directory' ? 0o755 : 0o644,
    mtime: MTIME,
    uid: 0,
    gid: 0,
    ...(e.linkpath === undefined ? {} : { linkpath: e.linkpath }),
  };
  const h = Buffer.alloc(BLOCK);
  const needsPax = new Header(data).encode(h, 0);
  const parts: Buffer[] = [];
  if (e.pax) parts.push(paxHeader(e.pax));
  else if (needsPax) parts.push(new Pax(data).encode());
  parts.push(h, body, pad(body.length));
  return Buffer.concat(parts);
}

/** The two zero blocks that end an archive. */
export const END = Buffer.alloc(BLOCK * 2);

/** A whole archive: the entries, then END. */
export const archive = (...entries: readonly Crafted[]): Buffer => Buffer.concat([...entries.map(entry), END]);
