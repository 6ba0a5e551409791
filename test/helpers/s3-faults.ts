/**
 * A fault-injecting HTTP proxy in front of moto's S3, for what moto never does: answer 500
 * InternalError or 503 SlowDown, reset a connection in the middle of an upload, or keep failing a
 * part until the uploader gives up. Every request goes to moto unless a rule matches it; a matching
 * rule answers with S3's real error reply (status and XML body as on the wire) or cuts the
 * connection after part of the body arrived, so the real SDK meets a real failure. Tests that use
 * it say "fault proxy" in their names. The proxy logs each S3 operation it saw.
 */
import { randomUUID } from 'node:crypto';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** S3's REST operations, told apart by method and query the way S3 does. */
export type S3Operation =
  | 'PutObject'
  | 'GetObject'
  | 'HeadObject'
  | 'DeleteObject'
  | 'ListObjectsV2'
  | 'CreateMultipartUpload'
  | 'UploadPart'
  | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload'
  | 'ListMultipartUploads'
  | 'Other';

export function operationOf(method: string, url: URL): S3Operation {
  const q = url.searchParams;
  const key = url.pathname.split('/').filter(Boolean).length > 1;
  if (method === 'PUT' && q.has('partNumber') && q.has('uploadId')) return 'UploadPart';
  if (method === 'PUT' && key) return 'PutObject';
  if (method === 'POST' && q.has('uploads')) return 'CreateMultipartUpload';
  if (method === 'POST' && q.has('uploadId')) return 'CompleteMultipartUpload';
  if (method === 'DELETE' && q.has('uploadId')) return 'AbortMultipartUpload';
  if (method === 'DELETE' && key) return 'DeleteObject';
  if (method === 'GET' && q.has('uploads')) return 'ListMultipartUploads';
  if (method === 'GET' && key) return 'GetObject';
  if (method === 'HEAD' && key) return 'HeadObject';
  if (method === 'GET') return 'ListObjectsV2';
  return 'Other';
}

export type S3Fault =
  /** 500 InternalError, as S3 answers it. */
  | 'InternalError'
  /** 503 SlowDown: S3's throttle. */
  | 'SlowDown'
  /** 403 AccessDenied: a policy that does not allow the call. */
  | 'AccessDenied'
  /** The connection is destroyed after `afterBytes` of the request body arrived. */
  | 'ResetMidBody';

export interface S3FaultRule {
  readonly operation: S3Operation;
  readonly fault: S3Fault;
  /** Only requests whose key (path after the bucket) matches. */
  readonly key?: RegExp;
  /** How many matching requests get the fault; then they pass. Default: all. */
  readonly times?: number;
  /** For ResetMidBody (default 64 KiB). */
  readonly afterBytes?: number;
}

export interface S3Call {
  readonly operation: S3Operation;
  readonly key: string;
  readonly fault?: S3Fault;
}

export interface S3FaultProxy {
  readonly endpoint: string;
  readonly calls: S3Call[];
  add(rule: S3FaultRule): void;
  clear(): void;
  close(): Promise<void>;
}

type Reply = Exclude<S3Fault, 'ResetMidBody'>;

const MESSAGES: Record<Reply, { status: number; message: string }> = {
  InternalError: { status: 500, message: 'We encountered an internal error. Please try again.' },
  SlowDown: { status: 503, message: 'Please reduce your request rate.' },
  AccessDenied: { status: 403, message: 'Access Denied' },
};

function errorReply(res: ServerResponse, fault: Reply, resource: string): void {
  const { status, message } = MESSAGES[fault];
  const id = randomUUID().replace(/-/g, '').slice(0, 16).toUpperCase();
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${fault}</Code><Message>${message}</Message><Resource>${resource}</Resource><RequestId>${id}</RequestId><HostId>${id}</HostId></Error>`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body), 'x-amz-request-id': id });
  res.end(body);
}

export async function startS3FaultProxy(target: string): Promise<S3FaultProxy> {
  const upstream = new URL(target);
  const rules: { rule: S3FaultRule; left: number }[] = [];
  const calls: S3Call[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const operation = operationOf(req.method ?? 'GET', url);
    const key = decodeURIComponent(url.pathname.split('/').slice(2).join('/'));
    const match = rules.find((r) => r.left > 0 && r.rule.operation === operation && (!r.rule.key || r.rule.key.test(key)));
    if (match) {
      match.left--;
      calls.push({ operation, key, fault: match.rule.fault });
      if (match.rule.fault === 'ResetMidBody') {
        let seen = 0;
        req.on('data', (d: Buffer) => {
          seen += d.length;
          if (seen >= (match.rule.afterBytes ?? 64 * 1024)) req.socket.destroy();
        });
        req.on('end', () => req.socket.destroy());
        return;
      }
      // Drain the body first, as S3 does, so the client sees the reply and not a broken pipe.
      req.resume();
      req.on('end', () => errorReply(res, match.rule.fault as Reply, url.pathname));
      return;
    }
    calls.push({ operation, key });
    const out = request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    calls,
    add: (rule) => void rules.push({ rule, left: rule.times ?? Number.POSITIVE_INFINITY }),
    clear: () => {
      rules.length = 0;
      calls.length = 0;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
