/**
 * A fault-injecting HTTP proxy in front of moto, for what moto never answers: no capacity, a spot
 * price too low, an unsupported configuration, a vCPU or spot quota, throttling, an internal error —
 * and a spot interruption's state reason, which it writes into moto's DescribeInstances answers.
 * Every request goes to moto unless a rule matches it; a matching rule answers instead with the
 * error EC2 really sends (status and XML body as on the wire), so the real SDK parses a real reply.
 * Tests that use it say "fault proxy" in their names.
 *
 * EC2's query protocol sends `Action=RunInstances&InstanceType=…&Placement.AvailabilityZone=…` as a
 * form body; a rule matches on the action and, optionally, on the decoded parameters. The proxy also
 * logs every EC2 call it saw (action and parameters), so a test can assert what was tried.
 */
import { randomUUID } from 'node:crypto';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type FaultName =
  | 'InsufficientInstanceCapacity'
  | 'SpotMaxPriceTooLow'
  | 'Unsupported'
  | 'VcpuLimitExceeded'
  | 'MaxSpotInstanceCountExceeded'
  | 'RequestLimitExceeded'
  | 'InternalError';

type Params = Readonly<Record<string, string>>;

/** Status codes and messages as EC2 sends them (EC2 API reference, "Error codes"). */
function faultReply(name: FaultName, p: Params): { status: number; message: string } {
  const type = p.InstanceType ?? 'the instance type';
  const zone = p['Placement.AvailabilityZone'];
  switch (name) {
    case 'InsufficientInstanceCapacity':
      return {
        status: 500,
        message: p['InstanceMarketOptions.MarketType'] === 'spot'
          ? 'There is no Spot capacity available that matches your request.'
          : `We currently do not have sufficient ${type} capacity in the Availability Zone you requested (${zone ?? 'us-east-1a'}). Our system will be working on provisioning additional capacity. You can currently get ${type} capacity by not specifying an Availability Zone in your request or choosing another zone.`,
      };
    case 'SpotMaxPriceTooLow':
      return { status: 400, message: `Your Spot request price of ${p['InstanceMarketOptions.SpotOptions.MaxPrice'] ?? '0.0001'} is lower than the minimum required Spot request fulfillment price of 0.3000.` };
    case 'Unsupported':
      return { status: 400, message: `Your requested instance type (${type}) is not supported in your requested Availability Zone (${zone ?? 'us-east-1e'}). Please retry your request by not specifying an Availability Zone or choosing us-east-1a, us-east-1b.` };
    case 'VcpuLimitExceeded':
      return { status: 400, message: 'You have requested more vCPU capacity than your current vCPU limit of 0 allows for the instance bucket that the specified instance type belongs to. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit.' };
    case 'MaxSpotInstanceCountExceeded':
      return { status: 400, message: 'Max spot instance count exceeded' };
    case 'RequestLimitExceeded':
      return { status: 503, message: 'Request limit exceeded.' };
    case 'InternalError':
      return { status: 500, message: 'An internal error has occurred' };
  }
}

const escapeXml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export interface FaultRule {
  /** The EC2 action, e.g. `RunInstances`. */
  readonly action: string;
  /** Only requests whose parameters match (every key equal; a function for anything else). */
  readonly params?: Params | ((p: Params) => boolean);
  readonly fault: FaultName;
  /** How many matching requests to answer with the fault; then it passes them on. Default: all. */
  readonly times?: number;
}

export interface Ec2Call {
  readonly action: string;
  readonly params: Params;
  /** The fault answered instead of moto, if one was. */
  readonly fault?: FaultName;
}

export interface FaultProxy {
  /** `http://127.0.0.1:PORT`: give it to dstack as `AWS_ENDPOINT_URL`. */
  readonly endpoint: string;
  /** Every EC2 call seen, in order. */
  readonly calls: Ec2Call[];
  /** Adds a rule (rules are tried in the order added). */
  add(rule: FaultRule): void;
  /**
   * Plays EC2 taking a spot instance back, which moto cannot: from now on DescribeInstances shows the
   * instance's state reason as EC2 does after a spot interruption (`Server.SpotInstanceTermination`)
   * instead of moto's user-initiated one. Terminate the instance in moto as well.
   */
  spotInterrupted(instanceId: string): void;
  /** Removes the rules and interruptions, and forgets the calls. */
  clear(): void;
  close(): Promise<void>;
}

function matches(rule: FaultRule & { used: number }, action: string, params: Params): boolean {
  if (rule.action !== action) return false;
  if (rule.times !== undefined && rule.used >= rule.times) return false;
  if (!rule.params) return true;
  if (typeof rule.params === 'function') return rule.params(params);
  return Object.entries(rule.params).every(([k, v]) => params[k] === v);
}

/** The top-level `<item>…</item>` elements of an instancesSet (items nest: tags, groups). */
function instanceItems(inner: string): string[] {
  const items: string[] = [];
  let depth = 0;
  let start = 0;
  for (const m of inner.matchAll(/<item>|<\/item>/g)) {
    if (m[0] === '<item>') {
      if (depth++ === 0) start = m.index;
    } else if (--depth === 0) {
      items.push(inner.slice(start, m.index + m[0].length));
    }
  }
  return items;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Starts the proxy on a free port of 127.0.0.1, forwarding to `target` (moto's endpoint). */
export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target);
  const rules: (FaultRule & { used: number })[] = [];
  const calls: Ec2Call[] = [];

  const interrupted = new Set<string>();

  /** moto's DescribeInstances answer with the interrupted instances' state reasons as EC2 writes them. */
  const rewrite = (xml: string): string => xml.replace(/<instancesSet>([\s\S]*?)<\/instancesSet>/g, (_all, inner: string) => `<instancesSet>${instanceItems(inner).map(spotReason).join('')}</instancesSet>`);
  const spotReason = (item: string): string => {
    const id = /<instanceId>([^<]+)<\/instanceId>/.exec(item)?.[1];
    if (!id || !interrupted.has(id)) return item;
    return item.replace(/<stateReason>[\s\S]*?<\/stateReason>/, '<stateReason><code>Server.SpotInstanceTermination</code><message>Server.SpotInstanceTermination: Spot instance termination</message></stateReason>');
  };

  const forward = (req: IncomingMessage, res: ServerResponse, body: Buffer, action?: string): void => {
    const out = request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        if (action !== 'DescribeInstances' || interrupted.size === 0) {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
          return;
        }
        void readBody(up).then((b) => {
          const text = Buffer.from(rewrite(b.toString('utf8')));
          res.writeHead(up.statusCode ?? 502, { ...up.headers, 'content-length': String(text.length) });
          res.end(text);
        });
      },
    );
    out.on('error', (e) => {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`fault proxy: moto did not answer: ${e.message}`);
    });
    out.end(body);
  };

  const server: Server = createServer((req, res) => {
    void readBody(req).then((body) => {
      const isForm = (req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded');
      const params: Params = isForm ? Object.fromEntries(new URLSearchParams(body.toString('utf8'))) : {};
      const action = params.Action;
      if (!action) return forward(req, res, body);
      const rule = rules.find((r) => matches(r, action, params));
      if (!rule) {
        calls.push({ action, params });
        return forward(req, res, body, action);
      }
      rule.used++;
      calls.push({ action, params, fault: rule.fault });
      const { status, message } = faultReply(rule.fault, params);
      const requestId = randomUUID();
      res.writeHead(status, { 'content-type': 'text/xml;charset=UTF-8', 'x-amzn-requestid': requestId });
      res.end(
        `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${rule.fault}</Code><Message>${escapeXml(message)}</Message></Error></Errors><RequestID>${requestId}</RequestID></Response>`,
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    calls,
    add: (rule) => void rules.push({ ...rule, used: 0 }),
    spotInterrupted: (id) => void interrupted.add(id),
    clear: () => {
      rules.length = 0;
      calls.length = 0;
      interrupted.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
