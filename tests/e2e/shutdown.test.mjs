// Client disconnects cancel requests (streaming and not); SIGTERM ends running requests with
// a final answer and exits 0.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { binary, metricValue, missingPrerequisite, modelPath, startServer } from './server.mjs';

const skip = missingPrerequisite();

async function waitIdle(srv) {
  for (let t = 0; t < 200; t++) {
    const s = await srv.stats();
    if (s.requests_running === 0 && s.requests_waiting === 0) return s;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('requests still running');
}

describe('disconnects and shutdown', { skip: skip ?? false }, () => {
  it('refuses to start on a port another server holds', { timeout: 60000 }, async () => {
    const srv = await startServer();
    try {
      const port = new URL(srv.url).port;
      const second = spawnSync(binary, ['serve', '-m', modelPath, '--host', '127.0.0.1', '--port', port],
        { encoding: 'utf8', timeout: 30000 });
      assert.notEqual(second.status, 0, 'a second server started on a port in use');
      assert.match(second.stderr + second.stdout, /cannot listen on 127\.0\.0\.1:\d+/);
      const r = await srv.client.completions.create({ model: srv.model, prompt: 'Once', max_tokens: 2 });
      assert.equal(r.choices.length, 1);
    } finally {
      await srv.stop();
    }
  });

  it('cancels a non-streaming request whose client went away', { timeout: 60000 }, async () => {
    const srv = await startServer();
    try {
      const ac = new AbortController();
      const long = srv.client.completions.create(
        { model: srv.model, prompt: 'Once upon a time', max_tokens: 1900, ignore_eos: true, temperature: 0.9 },
        { signal: ac.signal });
      // Wait until it runs, then hang up.
      for (let t = 0; t < 200 && (await srv.stats()).requests_running === 0; t++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      ac.abort();
      await assert.rejects(long);
      const started = Date.now();
      await waitIdle(srv);
      assert.ok(Date.now() - started < 3000, 'cancelled promptly');
      const metrics = (await srv.request('GET', '/metrics')).text;
      assert.equal(metricValue(metrics, 'prefixd_client_disconnects_total'), 1);
      const generated = metricValue(metrics, 'prefixd_generated_tokens_total');
      assert.ok(generated < 1900, `${generated} tokens generated`);
    } finally {
      await srv.stop();
    }
  });

  it('SIGTERM finishes running requests with a final answer and exits 0', { timeout: 60000 }, async () => {
    const srv = await startServer();
    const whole = srv.client.completions.create({
      model: srv.model, prompt: 'The cat', max_tokens: 1900, ignore_eos: true });
    const stream = await srv.client.completions.create({
      model: srv.model, prompt: 'Once upon a time', max_tokens: 1900, ignore_eos: true, stream: true });
    for (let t = 0; t < 200 && (await srv.stats()).requests_running < 2; t++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    let finish = null;
    let chunks = 0;
    let exit = null;
    for await (const chunk of stream) {
      chunks++;
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunks === 5) exit = srv.stop();
    }
    assert.equal(finish, 'abort');
    const w = await whole;
    assert.equal(w.choices[0].finish_reason, 'abort');
    assert.ok(w.usage.completion_tokens < 1900);
    const { code, signal } = await exit;
    assert.equal(signal, null);
    assert.equal(code, 0);
  });
});
