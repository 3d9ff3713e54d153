// Starts `prefixd serve` on 127.0.0.1 with a free port for a test file, and stops it.
//
//   const srv = await startServer();          // --admin-key test-key
//   const out = await srv.client.completions.create({ model: srv.model, prompt: 'Once' });
//   await srv.stop();
//
// The binary is PREFIXD_BIN (default build/app/prefixd under the repository root); the model
// is PREFIXD_TEST_MODEL (default ../shared/models/stories260K.gguf beside the checkout).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const binary = process.env.PREFIXD_BIN
  ? path.resolve(process.env.PREFIXD_BIN)
  : path.join(repoRoot, 'build/app/prefixd');
export const modelPath = process.env.PREFIXD_TEST_MODEL
  ? path.resolve(process.env.PREFIXD_TEST_MODEL)
  : path.join(repoRoot, '../shared/models/stories260K.gguf');
export const ADMIN_KEY = 'test-key';

// Why the tests cannot run here, or null.
export function missingPrerequisite() {
  if (!existsSync(binary)) return `the prefixd binary is not built (${binary}); set PREFIXD_BIN`;
  if (!existsSync(modelPath)) return `the test model is missing (${modelPath}); set PREFIXD_TEST_MODEL`;
  return null;
}

// Resolves with the value of `promise`, or rejects after `ms` with `what` in the message.
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]);
}

// Starts a server. `adminKey: null` starts it without an admin key.
// `model` overrides PREFIXD_TEST_MODEL (a model a test made itself).
export async function startServer({ adminKey = ADMIN_KEY, args = [], startTimeoutMs = 30000, model = modelPath } = {}) {
  const argv = ['serve', '-m', model, '--host', '127.0.0.1', '--port', '0', '--threads', '1'];
  if (adminKey) argv.push('--admin-key', adminKey);
  argv.push(...args);
  // The server reads PREFIXD_* variables; the test decides everything through flags.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PREFIXD_')));
  const child = spawn(binary, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stderr.on('data', (d) => { output += d; });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

  const url = await withTimeout(new Promise((resolve, reject) => {
    let stdout = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      output += d;
      const m = /prefixd listening on (http:\/\/\S+)/.exec(stdout);
      if (m) resolve(m[1]);
    });
    exited.then(({ code, signal }) =>
      reject(new Error(`prefixd exited (code ${code}, signal ${signal}) before listening:\n${output}`)));
  }), startTimeoutMs, 'prefixd start-up').catch((e) => { child.kill('SIGKILL'); throw e; });

  const modelId = path.basename(model);
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60000 });

  return {
    url,
    model: modelId,
    client,
    pid: child.pid,
    output: () => output,
    // JSON from a GET, or a POST when `body` is given; returns { status, json, text }.
    async request(method, route, { body, headers = {}, raw = false } = {}) {
      const init = { method, headers: { ...headers } };
      if (body !== undefined) {
        init.body = raw ? body : JSON.stringify(body);
        if (!raw) init.headers['content-type'] = 'application/json';
      }
      const res = await withTimeout(fetch(url + route, init), 60000, `${method} ${route}`);
      const text = await res.text();
      let json = null;
      try { json = JSON.parse(text); } catch { /* not JSON (metrics, SSE) */ }
      return { status: res.status, json, text, headers: res.headers };
    },
    admin(route, body = {}, key = ADMIN_KEY) {
      const headers = key === null ? {} : { authorization: `Bearer ${key}` };
      return this.request('POST', route, { body, headers });
    },
    async stats() {
      const r = await this.request('GET', '/v1/prefix_cache_stats');
      if (r.status !== 200) throw new Error(`stats: HTTP ${r.status} ${r.text}`);
      return r.json;
    },
    // Resident set size of the server process, in bytes.
    rssBytes() {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const m = /VmRSS:\s+(\d+) kB/.exec(status);
      return m ? Number(m[1]) * 1024 : 0;
    },
    // Sends `signal` at once (SIGKILL: a crash) and resolves with the exit.
    async kill(signal = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
    // SIGTERM, then SIGKILL if it has not exited after `ms`. Resolves with the exit.
    async stop(ms = 10000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill('SIGTERM');
      try {
        return await withTimeout(exited, ms, 'prefixd shutdown');
      } catch (e) {
        child.kill('SIGKILL');
        await exited;
        throw e;
      }
    },
  };
}

// A prompt no other test sends, so cache hits come only from this test.
export function uniqueWord() {
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  let w = '';
  for (let i = 0; i < 8; i++) w += letters[Math.floor(Math.random() * letters.length)];
  return w;
}

// Reads one metric's value from Prometheus text.
export function metricValue(text, name) {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}
