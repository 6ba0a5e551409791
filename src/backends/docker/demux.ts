import type { LogSink } from '../../engine/backend.js';

/**
 * Splits Docker's multiplexed attach stream (Tty off): frames of an 8-byte header — stream type
 * (1 stdout, 2 stderr), three zero bytes, payload length (big-endian u32) — then the payload.
 * Frames may straddle chunks. https://docs.docker.com/engine/api/v1.41/#operation/ContainerAttach
 */
export function demuxer(sink: LogSink): (chunk: Buffer) => void {
  let buf: Buffer = Buffer.alloc(0);
  return (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    while (buf.length >= 8) {
      const type = buf[0];
      const size = buf.readUInt32BE(4);
      if (buf.length < 8 + size) break;
      const payload = buf.subarray(8, 8 + size);
      buf = buf.subarray(8 + size);
      if (size > 0) sink(type === 2 ? 'stderr' : 'stdout', payload);
    }
  };
}
