// A real redis-server for the end-to-end tests, on 127.0.0.1 and a free port, and a minimal
// RESP client to talk to it (one command per connection): used by redis.test.mjs and
// kv_events.test.mjs.
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';

export function redisMissing() {
  const r = spawnSync('redis-server', ['--version'], { stdio: 'ignore' });
  return r.status === 0 ? null : 'redis-server is not installed (Debian: apt-get install redis-server)';
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Encodes one command in RESP.
function resp(args) {
  let out = `*${args.length}\r\n`;
  for (const a of args) out += `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`;
  return out;
}

// Parses one RESP reply from `buf` at `pos`; returns [value, next] or null when incomplete.
function parseReply(buf, pos = 0) {
  const eol = buf.indexOf('\r\n', pos);
  if (eol < 0) return null;
  const line = buf.toString('latin1', pos + 1, eol);
  const type = String.fromCharCode(buf[pos]);
  if (type === '+' || type === '-') return [type === '-' ? new Error(line) : line, eol + 2];
  if (type === ':') return [Number(line), eol + 2];
  if (type === '$') {
    const n = Number(line);
    if (n < 0) return [null, eol + 2];
    if (buf.length < eol + 2 + n + 2) return null;
    return [buf.subarray(eol + 2, eol + 2 + n), eol + 2 + n + 2];
  }
  if (type === '*') {
    const n = Number(line);
    const items = [];
    let p = eol + 2;
    for (let i = 0; i < n; i++) {
      const r = parseReply(buf, p);
      if (!r) return null;
      items.push(r[0]);
      p = r[1];
    }
    return [items, p];
  }
  throw new Error(`unexpected RESP type ${type}`);
}

// One command on a fresh connection; resolves with the reply (Buffers for bulk strings).
export function redisCommand(port, args, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`redis ${args[0]}: timeout`)); }, timeoutMs);
    sock.on('error', (e) => { clearTimeout(timer); reject(e); });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const r = parseReply(buf);
      if (r) { clearTimeout(timer); sock.end(); resolve(r[0]); }
    });
    sock.write(resp(args));
  });
}

export class RedisProcess {
  constructor(port) { this.port = port; this.child = null; }
  async start() {
    this.child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '',
      '--appendonly', 'no', '--enable-debug-command', 'yes', '--loglevel', 'warning'], { stdio: 'ignore' });
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      try {
        if (await redisCommand(this.port, ['PING'], 500) === 'PONG') return;
      } catch { /* not listening yet */ }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`redis-server did not start on port ${this.port}`);
  }
  async stop() {
    if (!this.child || this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await exited;
  }
  // Every key matching `pattern`, by SCAN (never KEYS on a shared server).
  async scan(pattern) {
    const keys = [];
    let cursor = '0';
    do {
      const [next, found] = await redisCommand(this.port, ['SCAN', cursor, 'MATCH', pattern, 'COUNT', '1000']);
      cursor = next.toString();
      keys.push(...found.map((k) => k.toString()));
    } while (cursor !== '0');
    return keys;
  }
}
