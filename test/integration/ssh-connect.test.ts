/**
 * The SSH connection layer against real OpenSSH servers (containers of dstack-test/sshhost, see
 * test/helpers/ssh-hosts.ts): commands, SFTP, host key trust on first use and refusal of a changed
 * key, authentication failures, unreachable hosts, the Docker socket forwarded over SSH, and a host
 * that dies under an open connection. Every known_hosts file here is a temporary one.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { promisify } from 'node:util';
import { execFile } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connectHost, type ConnectOptions, type SshConnection } from '../../src/backends/ssh-host/connect.js';
import { DstackError, formatError } from '../../src/engine/errors.js';
import { clientKey, generateKeyPair, killHost, removeHost, restartWithNewHostKey, startHost, sweepHosts, type TestHost } from '../helpers/ssh-hosts.js';
import { withTimeout } from '../helpers/timeout.js';
import { until } from '../helpers/wait.js';

const run = promisify(execFile);
const scratch = await mkdtemp(join(tmpdir(), 'dstack-ssh-connect-'));
let n = 0;
/** A fresh, empty known_hosts path; no agent and no default keys unless a test says so. */
const options = (extra: Partial<ConnectOptions> = {}): ConnectOptions & { knownHostsPath: string } => ({
  knownHostsPath: join(scratch, `known_hosts_${++n}`),
  env: { HOME: join(scratch, 'empty-home') },
  ...extra,
});
const connectTo = async (h: TestHost, extra: Partial<ConnectOptions> = {}): Promise<SshConnection> =>
  connectHost(h, options({ identity: h.keyPath, ...extra }));

async function rejection(p: Promise<unknown>): Promise<DstackError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof DstackError) return e;
    throw e;
  }
  throw new Error('expected a DstackError, got success');
}

/** How many processes on the host run exactly `command` (from /proc: the test hosts have no procps). */
async function running(c: SshConnection, command: string): Promise<number> {
  const r = await c.exec(`for f in /proc/[0-9]*/cmdline; do tr "\\0" " " < $f; echo; done | grep -c "^${command} \\?$" || true`);
  return Number(r.stdout.toString().trim());
}

function ping(stream: Duplex): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ path: '/_ping', createConnection: () => stream as never }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test(
  'connect and exec: $HOME is the shared home, exit codes, stdin, stderr, a signal',
  withTimeout(30_000, async () => {
    const h = await startHost({ docker: false });
    let c: SshConnection | undefined;
    try {
      c = await connectTo(h);
      assert.is(c.label, `root@127.0.0.1:${h.port}`);
      assert.is(c.hostKeyFingerprint, h.hostKey.fingerprint);
      const home = await c.exec('echo $HOME');
      assert.equal({ code: home.code, out: home.stdout.toString() }, { code: 0, out: `${h.home}\n` });
      assert.is((await c.exec('exit 7')).code, 7);
      const cat = await c.exec('cat; echo oops >&2', { stdin: 'hello\nworld\n' });
      assert.is(cat.stdout.toString(), 'hello\nworld\n');
      assert.is(cat.stderr.toString(), 'oops\n');
      const killed = await c.exec('kill -TERM $$');
      assert.equal({ code: killed.code, signal: killed.signal }, { code: 143, signal: 'SIGTERM' });
      // Several commands at once over one connection.
      const many = await Promise.all([1, 2, 3, 4].map((i) => c!.exec(`echo ${i}`)));
      assert.equal(many.map((r) => r.stdout.toString()), ['1\n', '2\n', '3\n', '4\n']);
    } finally {
      await c?.close();
      await removeHost(h);
    }
  }),
);

test(
  'exec with a signal: aborting or closing the connection ends the remote command',
  withTimeout(30_000, async () => {
    const h = await startHost({ docker: false });
    let c: SshConnection | undefined;
    try {
      c = await connectTo(h);
      const ac = new AbortController();
      const started = Date.now();
      const aborted = c.exec('sleep 30', { signal: ac.signal }).then(
        () => assert.unreachable('exec should have been aborted'),
        (e: unknown) => e,
      );
      const watcher = await connectTo(h);
      try {
        await until('the remote sleep to run', 10_000, async () => (await running(watcher, 'sleep 30')) === 1);
        ac.abort(new Error('stop now'));
        assert.is(((await aborted) as Error).message, 'stop now');
        assert.ok(Date.now() - started < 15_000, 'aborted long before the remote sleep 30 ends');
        // The connection is still usable, and the remote process got the signal.
        assert.is((await c.exec('echo still')).stdout.toString(), 'still\n');
        await until('the remote sleep to end', 10_000, async () => (await running(watcher, 'sleep 30')) === 0);
      } finally {
        await watcher.close();
      }

      // A signal that never fires changes nothing: output and exit status come through.
      const calm = await c.exec('echo hi; echo err >&2; exit 4', { signal: new AbortController().signal });
      assert.equal({ code: calm.code, out: calm.stdout.toString(), err: calm.stderr.toString() }, { code: 4, out: 'hi\n', err: 'err\n' });

      // A command bound to its channel ends when its connection goes (a CLI that dies).
      const other = await connectTo(h);
      try {
        const doomed = c.exec('sleep 31', { signal: new AbortController().signal }).catch((e: unknown) => e);
        await until('the remote sleep to run', 10_000, async () => (await running(other, 'sleep 31')) === 1);
        await c.close();
        assert.is(((await doomed) as DstackError).code, 'DS0208');
        await until('the remote sleep to end with its connection', 10_000, async () => (await running(other, 'sleep 31')) === 0);
      } finally {
        await other.close();
      }
    } finally {
      await c?.close();
      await removeHost(h);
    }
  }),
);

test(
  'SFTP writes, reads and stats; the file is at the same path on this machine',
  withTimeout(30_000, async () => {
    const h = await startHost({ docker: false });
    let c: SshConnection | undefined;
    try {
      c = await connectTo(h);
      const sftp = await c.sftp();
      assert.is(await c.sftp(), sftp, 'the SFTP session is cached');
      const path = `${h.home}/hello.txt`;
      const data = Buffer.from('x'.repeat(100_000));
      await promisify(sftp.writeFile.bind(sftp))(path, data);
      const back = (await promisify(sftp.readFile.bind(sftp))(path)) as Buffer;
      assert.ok(back.equals(data));
      const st = await promisify(sftp.stat.bind(sftp))(path);
      assert.is(st.size, 100_000);
      assert.ok(readFileSync(path).equals(data), 'the home is shared with this machine at the same path');
    } finally {
      await c?.close();
      await removeHost(h);
    }
  }),
);

test(
  'first connection adds the host to known_hosts and says so; the second verifies it silently',
  withTimeout(30_000, async () => {
    const h = await startHost({ docker: false });
    try {
      const o = options({ identity: h.keyPath });
      await writeFile(o.knownHostsPath, '# mine\nother.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEyxlwxdVt/5sELkWd/89SmhD/jAioljVB13HtIK4H0N'); // no final newline
      const notes: string[] = [];
      const c1 = await connectHost(h, { ...o, notify: (m) => notes.push(m) });
      await c1.close();
      assert.equal(notes, [
        `new host [127.0.0.1]:${h.port}: trusting its ssh-ed25519 key ${h.hostKey.fingerprint} on first use (added to ${o.knownHostsPath})`,
      ]);
      const blob = h.hostKey.publicKey.split(' ')[1];
      const text = await readFile(o.knownHostsPath, 'utf8');
      assert.is(
        text,
        `# mine\nother.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEyxlwxdVt/5sELkWd/89SmhD/jAioljVB13HtIK4H0N\n[127.0.0.1]:${h.port} ssh-ed25519 ${blob}\n`,
      );

      const again: string[] = [];
      const c2 = await connectHost(h, { ...o, notify: (m) => again.push(m) });
      await c2.close();
      assert.equal(again, []);
      assert.is(await readFile(o.knownHostsPath, 'utf8'), text);

      // OpenSSH's own hashed form of the same file is understood too (`ssh-keygen -H`).
      await run('ssh-keygen', ['-H', '-f', o.knownHostsPath]);
      const hashed = await readFile(o.knownHostsPath, 'utf8');
      assert.ok(hashed.includes('|1|'), hashed);
      const c3 = await connectHost(h, { ...o, notify: (m) => again.push(m) });
      await c3.close();
      assert.equal(again, []);

      // Four connections at once to a new host record it once.
      const fresh = options({ identity: h.keyPath });
      const conns = await Promise.all([1, 2, 3, 4].map(() => connectHost(h, fresh)));
      await Promise.all(conns.map((c) => c.close()));
      assert.is((await readFile(fresh.knownHostsPath, 'utf8')).split('\n').filter(Boolean).length, 1);
    } finally {
      await removeHost(h);
    }
  }),
);

test(
  'a changed host key on the same host and port is refused with DS0207 (exit 3)',
  withTimeout(40_000, async () => {
    let h = await startHost({ docker: false });
    try {
      const o = options({ identity: h.keyPath });
      await (await connectHost(h, o)).close();
      const before = await readFile(o.knownHostsPath, 'utf8');
      h = await restartWithNewHostKey(h);
      const e = await rejection(connectHost(h, o));
      assert.is(e.code, 'DS0207');
      assert.is(e.exitCode, 3);
      assert.is(
        formatError(e),
        `error DS0207: the host key of root@127.0.0.1:${h.port} has changed: it now shows ssh-ed25519 ${h.hostKey.fingerprint}, not the key on line 1 of ${o.knownHostsPath}\n` +
          `  = someone may be intercepting the connection; if the change is expected (the machine was reinstalled), remove the old key with \`ssh-keygen -R '[127.0.0.1]:${h.port}' -f ${o.knownHostsPath}\` and run again`,
      );
      assert.is(await readFile(o.knownHostsPath, 'utf8'), before, 'known_hosts is left alone');

      // Following the hint fixes it.
      await run('ssh-keygen', ['-R', `[127.0.0.1]:${h.port}`, '-f', o.knownHostsPath]);
      await (await connectHost(h, o)).close();
    } finally {
      await removeHost(h);
    }
  }),
);

test(
  'authentication: a wrong key is DS0206; default keys and the agent are used without --identity',
  withTimeout(40_000, async () => {
    const h = await startHost({ docker: false });
    const agentDir = await mkdtemp(join(tmpdir(), 'dstack-agent-'));
    const sock = join(agentDir, 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
    try {
      const wrong = await generateKeyPair('wrong_ed25519');
      const e = await rejection(connectHost(h, options({ identity: wrong.path })));
      assert.is(
        formatError(e),
        `error DS0206: root@127.0.0.1:${h.port} refused authentication: offered the key ${wrong.path}\n` +
          '  = add your public key to ~root/.ssh/authorized_keys on the host, or name the right key with `dstack config ssh --identity KEY`',
      );
      assert.is(e.exitCode, 3);

      const missing = await rejection(connectHost(h, options({ identity: join(scratch, 'nope') })));
      assert.is(missing.message, `cannot log in to root@127.0.0.1:${h.port}: identity file ${join(scratch, 'nope')} does not exist`);

      const none = await rejection(connectHost(h, options()));
      assert.is(
        formatError(none),
        `error DS0206: cannot log in to root@127.0.0.1:${h.port}: no SSH key to offer\n` +
          `  = pass --identity KEY to \`dstack config ssh\`, start an SSH agent with your key, or create ${join(scratch, 'empty-home', '.ssh', 'id_ed25519')} (ssh-keygen -t ed25519)`,
      );

      // ~/.ssh/id_ed25519 of HOME.
      const home = join(scratch, 'home-with-key');
      await mkdir(join(home, '.ssh'), { recursive: true });
      await copyFile((await clientKey()).path, join(home, '.ssh', 'id_ed25519'));
      await (await connectHost(h, options({ env: { HOME: home } }))).close();

      // A key protected by a passphrase: refused with a hint without an agent, used through the agent.
      const locked = join(scratch, 'locked_ed25519');
      await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'secret phrase', '-f', locked]);
      const enc = await rejection(connectHost(h, options({ identity: locked })));
      assert.is(
        formatError(enc),
        `error DS0206: cannot log in to root@127.0.0.1:${h.port}: identity file ${locked} is protected by a passphrase\n` +
          `  = load it into your SSH agent (\`ssh-add ${locked}\`) and run again`,
      );
      await until('the agent socket', 5000, () => existsSync(sock), 20);
      await run('ssh-add', [(await clientKey()).path], { env: { ...process.env, SSH_AUTH_SOCK: sock } });
      await (await connectHost(h, options({ env: { HOME: join(scratch, 'empty-home'), SSH_AUTH_SOCK: sock } }))).close();
      await (await connectHost(h, options({ identity: locked, env: { HOME: join(scratch, 'empty-home'), SSH_AUTH_SOCK: sock } }))).close();
    } finally {
      agent.kill();
      await rm(agentDir, { recursive: true, force: true });
      await removeHost(h);
    }
  }),
);

test(
  'unreachable: a closed port and a silent server are DS0205 (exit 3) naming user@host:port',
  withTimeout(20_000, async () => {
    const key = await clientKey();
    const silent: Server = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const silentPort = (silent.address() as { port: number }).port;
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const closedPort = (closed.address() as { port: number }).port;
    await new Promise((r) => closed.close(r));
    try {
      const refused = await rejection(connectHost({ user: 'root', host: '127.0.0.1', port: closedPort }, options({ identity: key.path })));
      assert.is(
        formatError(refused),
        `error DS0205: cannot reach root@127.0.0.1:${closedPort}: connection refused (is sshd running on that port?)\n` +
          '  = check that the machine is up and that `ssh -p PORT USER@HOST` works from here',
      );
      assert.is(refused.exitCode, 3);
      const slow = await rejection(connectHost({ user: 'root', host: '127.0.0.1', port: silentPort }, options({ identity: key.path, timeoutMs: 500 })));
      assert.is(slow.message, `cannot reach root@127.0.0.1:${silentPort}: no SSH answer within 0.5 s`);
      const dns = await rejection(connectHost({ user: 'me', host: 'no-such-host.invalid', port: 22 }, options({ identity: key.path })));
      assert.match(dns.message, /^cannot reach me@no-such-host\.invalid:22: host name not found \(/);
    } finally {
      silent.close();
    }
  }),
);

test(
  'the Docker socket forwarded over SSH answers /_ping on a host with Docker; a host without refuses (DS0209)',
  withTimeout(40_000, async () => {
    const [withDocker, without] = await Promise.all([startHost({ docker: true }), startHost({ docker: false })]);
    const conns: SshConnection[] = [];
    try {
      const a = await connectTo(withDocker);
      conns.push(a);
      assert.equal(await ping(await a.forwardUnixSocket('/var/run/docker.sock')), { status: 200, body: 'OK' });
      const b = await connectTo(without);
      conns.push(b);
      const e = await rejection(b.forwardUnixSocket('/var/run/docker.sock'));
      assert.is(e.code, 'DS0209');
      assert.is(e.message, `root@127.0.0.1:${without.port} refused to open the socket /var/run/docker.sock: Channel open failure: open failed`);
      assert.is((await b.exec('echo alive')).stdout.toString(), 'alive\n', 'a refused channel leaves the connection usable');

      // A TCP port on the host's loopback: nothing listens on 9 there.
      const tcp = await rejection(b.forwardTcp(9));
      assert.is(tcp.code, 'DS0209');
      // sshd's own port does (hosts share this machine's network: sshd listens on the host's port).
      const banner = await new Promise<string>((resolve) => {
        void b.forwardTcp(without.port).then((s) => s.once('data', (d: Buffer) => { resolve(d.toString('latin1').slice(0, 8)); s.destroy(); }));
      });
      assert.is(banner, 'SSH-2.0-');
    } finally {
      await Promise.all(conns.map((c) => c.close()));
      await Promise.all([removeHost(withDocker), removeHost(without)]);
    }
  }),
);

test(
  'a host that dies under an open connection: the running command and onClose get DS0208',
  withTimeout(40_000, async () => {
    const h = await startHost({ docker: false });
    try {
      const c = await connectTo(h, { keepaliveIntervalMs: 500 });
      const closed = new Promise<DstackError | undefined>((resolve) => c.onClose(resolve));
      const pending = rejection(c.exec('sleep 60'));
      const watcher = await connectTo(h);
      await until('the remote sleep to run', 10_000, async () => (await running(watcher, 'sleep 60')) === 1);
      await killHost(h);
      await watcher.close();
      const e = await pending;
      assert.is(e.code, 'DS0208');
      assert.ok(e.message.startsWith(`lost the SSH connection to root@127.0.0.1:${h.port}: `), e.message);
      const reason = await closed;
      assert.is(reason?.code, 'DS0208');
      assert.ok(c.closed);
      const after = await rejection(c.exec('true'));
      assert.is(after.code, 'DS0208');
      await c.close();
    } finally {
      await removeHost(h);
    }
  }),
);

test(
  'sweep: no host container of this file remains',
  withTimeout(20_000, async () => {
    await rm(scratch, { recursive: true, force: true });
    assert.is(await sweepHosts(), 0);
  }),
);

test.run();
