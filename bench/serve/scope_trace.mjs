// Disk scope policies on an agent-style chat trace (issue 5): what `--disk-prefix-cache`
// writes to disk, and how much of the trace the disk then serves.
//
// The trace: `sessions` agent sessions, interleaved in a seeded random order, each request
//
//   [system: stable prompt] [system: stable tool text] [user: task of this session]
//   ([assistant: reply] [user: tool result])*  [user: "Current time: ..." + follow-up]
//
// the last message (a timestamp) changes on every request and is not resent; each turn adds
// the reply and a tool result. The pool is kept small (--cache-bytes) and host RAM off, so
// what the pool cannot hold comes from disk or is computed again; the benchmark waits for the
// disk writes of one request before sending the next (an agent's think time), so a policy's
// hits do not depend on how fast the writer thread happens to be.
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { runRequests } from './client.mjs';
import { startServer } from './server.mjs';
import { tokenSource } from './workloads.mjs';

const WORDS = ('the a file function returns value error test build run read write open close list ' +
  'search result line code path module class method call string number array object update check ' +
  'change fix add remove branch commit merge status output input config option server client ' +
  'request response cache block token model layer prompt session tool agent user system time').split(' ');

function text(src, words) {
  return Array.from({ length: words }, () => WORDS[src.int(0, WORDS.length - 1)]).join(' ');
}

export const TRACE_SIZES = {
  full: { sessions: 12, turns: 6, systemWords: 80, toolWords: 30, taskWords: 12, replyWords: 10,
    resultMin: 10, resultMax: 30 },
  quick: { sessions: 4, turns: 3, systemWords: 60, toolWords: 30, taskWords: 10, replyWords: 8,
    resultMin: 8, resultMax: 20 },
};

export function buildTrace(z, seed = 7) {
  const src = tokenSource(1 << 20, seed);
  const head = [{ role: 'system', content: `You are a coding agent. ${text(src, z.systemWords)}` },
    { role: 'system', content: `Tools: ${text(src, z.toolWords)}` }];
  const sessions = Array.from({ length: z.sessions }, () =>
    ({ messages: [...head, { role: 'user', content: `Task: ${text(src, z.taskWords)}` }], turn: 0 }));
  const requests = [];
  let clock = Date.UTC(2026, 10, 23, 7, 0, 0);
  while (sessions.some((s) => s.turn < z.turns)) {
    const open = sessions.map((s, i) => i).filter((i) => sessions[i].turn < z.turns);
    const i = open[src.int(0, open.length - 1)];
    const s = sessions[i];
    if (s.turn > 0) {
      s.messages = [...s.messages, { role: 'assistant', content: text(src, z.replyWords) },
        { role: 'user', content: `Tool result: ${text(src, src.int(z.resultMin, z.resultMax))}` }];
    }
    clock += 1000 + src.int(0, 60000);
    const stamp = { role: 'user', content: `Current time: ${new Date(clock).toISOString()}. Continue.` };
    requests.push({ messages: [...s.messages, stamp], session: i, turn: s.turn });
    s.turn += 1;
  }
  return requests;
}

// Runs the trace once per policy. `cacheBytes`: the pool's cache budget.
export async function runScopeTrace(base, { policies, sizes, cacheBytes, diskRoot, maxTokens = 4 }) {
  const trace = buildTrace(sizes);
  const rows = [];
  for (const policy of policies) {
    const dir = mkdtempSync(path.join(diskRoot ?? tmpdir(), 'prefixd-bench-scope-'));
    const load = [loadavg()[0]];
    try {
      const server = await startServer(base, ['--prefix-cache', 'on', '--cache-bytes', String(cacheBytes),
        '--host-cache-bytes', '0', '--disk-cache-dir', dir, '--disk-prefix-cache', policy]);
      const { results, wall_s } = await runRequests(server.url, trace,
        { maxTokens, between: () => server.drainDiskWrites() });
      const stats = await server.getJson('/v1/prefix_cache_stats');
      await server.stop();
      load.push(loadavg()[0]);
      rows.push(scopeRow(policy, results, stats, wall_s, load));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return { trace: { requests: trace.length, ...sizes }, pool_cache_bytes: cacheBytes, rows };
}

function scopeRow(policy, results, stats, wall_s, load) {
  const sum = (f) => results.reduce((a, r) => a + (f(r) ?? 0), 0);
  const prompt = sum((r) => r.usage.prompt_tokens);
  const disk = sum((r) => r.usage.prefix_cache?.by_tier?.disk);
  const d = stats.by_tier.disk;
  return {
    policy, requests: results.length, prompt_tokens: prompt,
    cached_tokens: sum((r) => r.usage.prompt_tokens_details?.cached_tokens),
    pool_tokens: sum((r) => r.usage.prefix_cache?.by_tier?.pool),
    disk_tokens: disk,
    // Requests that took at least one block from disk, and the share of prompt tokens it served.
    disk_request_hit_rate: results.filter((r) => (r.usage.prefix_cache?.by_tier?.disk ?? 0) > 0).length / results.length,
    disk_token_hit_rate: disk / prompt,
    disk_hits: d.hits, disk_misses: d.misses,
    disk_blocks_written: d.writes, disk_bytes: d.bytes,
    ttft_mean_ms: sum((r) => r.ttft_ms) / results.length, wall_s, load_avg: load,
  };
}
