// Starts and stops `prefixd serve` on 127.0.0.1 for the benchmarks, in one of the three cache
// configurations they compare:
//
//   off    --prefix-cache off
//   pool   the KV pool only (--host-cache-bytes 0, no disk directory)
//   tiers  pool + host RAM + disk (--disk-cache-dir DIR, kept across a restart)
//
// and `peer`: the native llama.cpp `llama-server` (scripts/build-peer.sh) with its defaults
// (prompt cache on, its own slot count), only the model, threads, context and port given: what
// a user would run instead (startPeerServer).
//
// Every server this module starts is killed when the process exits, so a failed benchmark
// never leaves one computing on the shared machine.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export const CONFIGS = ['off', 'pool', 'tiers'];
export const PEER_CONFIG = 'peer';
export const ADMIN_KEY = 'bench-admin';

const running = new Set();
process.on('exit', () => { for (const p of running) p.kill('SIGKILL'); });
// Node's default SIGINT/SIGTERM handling exits without the 'exit' event.
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

// Flags for `config`; `opts`: { diskDir, diskPolicy, hostBytes, cacheBytes }.
export function configArgs(config, opts = {}) {
  if (config === 'off') return ['--prefix-cache', 'off', '--host-cache-bytes', '0'];
  const args = ['--prefix-cache', 'on'];
  if (opts.cacheBytes) args.push('--cache-bytes', String(opts.cacheBytes));
  if (config === 'pool') return [...args, '--host-cache-bytes', '0'];
  if (config !== 'tiers') throw new Error(`unknown cache configuration '${config}' (off, pool, tiers)`);
  if (!opts.diskDir) throw new Error('the tiers configuration needs a disk directory');
  args.push('--host-cache-bytes', String(opts.hostBytes ?? 1 << 30), '--disk-cache-dir', opts.diskDir);
  if (opts.diskPolicy) args.push('--disk-prefix-cache', opts.diskPolicy);
  return args;
}

// Starts a server; resolves once it listens. `base`: { bin, model, threads, ctx, extra }.
export async function startServer(base, args) {
  const argv = ['serve', '-m', base.model, '--host', '127.0.0.1', '--port', '0',
    '--threads', String(base.threads), '--ctx', String(base.ctx), '--max-running', '32',
    '--admin-key', ADMIN_KEY, ...(base.extra ?? []), ...args];
  // The benchmark decides everything through flags, not PREFIXD_* variables.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PREFIXD_')));
  const proc = spawn(base.bin, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  let log = '';
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log += d; });
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => {
    running.delete(proc);
    resolve({ code, signal });
  }));
  const deadline = Date.now() + 120000;
  let m = null;
  while (!(m = /listening on (http:\/\/\S+)/.exec(log))) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`prefixd ${argv.join(' ')} exited before listening:\n${log}`);
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`prefixd did not listen within 120 s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return new Server(proc, m[1], exited, () => log);
}

// A free port on 127.0.0.1 (for servers that cannot be asked for port 0 and tell it).
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on('error', reject);
  });
}

// llama-server's default slot count: its --ctx-size is shared by all slots (a unified KV
// cache), where prefixd's --ctx is each sequence's own limit.
const PEER_DEFAULT_SLOTS = 4;

// Starts the native llama-server at `base.peerBin` on the same model and threads, with its
// other defaults and a context that holds `base.ctx` tokens in each of its default slots (with
// `--ctx-size base.ctx` four concurrent 1,500-token prompts fail with "Context size has been
// exceeded"); resolves once /health answers 200 (the model is loaded). `base.peerArgs`: more
// llama-server flags (e.g. ['-fa', 'off']), after these.
export async function startPeerServer(base) {
  const port = await freePort();
  const argv = ['-m', base.model, '--host', '127.0.0.1', '--port', String(port),
    '--threads', String(base.threads), '--ctx-size', String(base.ctx * PEER_DEFAULT_SLOTS),
    ...(base.peerArgs ?? [])];
  const proc = spawn(base.peerBin, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  let log = '';
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log = (log + d).slice(-20000); });
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => {
    running.delete(proc);
    resolve({ code, signal });
  }));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120000;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`llama-server ${argv.join(' ')} exited before answering:\n${log}`);
    }
    try {
      if ((await fetch(`${url}/health`)).status === 200) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`llama-server did not answer /health within 120 s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return new Server(proc, url, exited, () => log, { peer: true });
}

class Server {
  constructor(proc, url, exited, log, { peer = false } = {}) {
    this.proc = proc;
    this.url = url;
    this.exited = exited;
    this.log = log;
    this.peer = peer;
  }

  async getJson(route) {
    const res = await fetch(this.url + route);
    if (res.status !== 200) throw new Error(`GET ${route}: HTTP ${res.status} ${await res.text()}`);
    return res.json();
  }

  async admin(route, body) {
    const res = await fetch(this.url + route, {
      method: 'POST', body: JSON.stringify(body),
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_KEY}` },
    });
    if (res.status !== 200) throw new Error(`POST ${route}: HTTP ${res.status} ${await res.text()}`);
    return res.json();
  }

  // Waits until the disk tier has written everything queued (write-through runs in the
  // background), so that a restart finds it on disk. No-op without a disk tier.
  async drainDiskWrites(timeoutMs = 120000) {
    if (this.peer) return null;  // llama-server has no disk tier
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const disk = (await this.getJson('/v1/prefix_cache_stats')).by_tier?.disk;
      if (!disk || disk.writes_pending === 0) return disk ?? null;
      if (Date.now() > deadline) throw new Error(`disk writes still pending after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  // SIGTERM, then SIGKILL after 20 s. Throws if the server did not exit cleanly.
  async stop() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 20000);
    const { code, signal } = await this.exited;
    clearTimeout(timer);
    // llama-server may end on SIGTERM by the signal rather than exit 0: either is a clean stop.
    if (this.peer && (code === 0 || signal === 'SIGTERM')) return;
    if (code !== 0) throw new Error(`prefixd exited with code ${code} signal ${signal}:\n${this.log().slice(-2000)}`);
  }
}

// Drops the page cache of every file under `dir` (GNU dd's iflag=nocache is
// posix_fadvise(DONTNEED)), so that the next read of a block file comes from the device.
// Touches only these files, not the machine's whole cache. Returns the bytes of the files.
export function dropPageCache(dir) {
  let bytes = 0;
  const files = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) { files.push(p); bytes += statSync(p).size; }
    }
  };
  walk(dir);
  for (let i = 0; i < files.length; i += 200) {
    const batch = files.slice(i, i + 200).map((f) => `dd if='${f}' iflag=nocache count=0 status=none`);
    const r = spawnSync('sh', ['-c', batch.join('; ')], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`dd iflag=nocache failed under ${dir}`);
  }
  return bytes;
}
