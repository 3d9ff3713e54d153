// The request sequences of the workload benchmark (issue 7), as token-id prompts so that any
// model works whatever its tokenizer: ids are drawn from [3, vocab) by a seeded generator, so
// every cache configuration gets the same requests.
//
// A workload is { name, description, concurrency, phases: [[request, ...], ...], offLimit }:
// the phases run one after the other, with a server restart between two phases; `offLimit`
// caps the requests sent with the cache off (each is a full cold prefill), or is absent.
//
//   regenerate        one prompt sent `regenerate` times (swipes, retries)
//   shared-cN         `users` prompts: one `system`-token system prompt + a different
//                     `question`-token question each, N clients at once
//   agent             `sessions` sessions interleaved round-robin, each turn the previous
//                     prompt + an assistant reply + a tool result of `toolMin`..`toolMax` tokens
//   volatile          a stable `system`-token prefix, a timestamp line that changes on every
//                     request, then the question
//   restart           the agent workload's first half, a restart on the same disk, the rest

export const SIZES = {
  // The ~100M model (a context of 4,096): a cold 1,500-token prefill takes 2-4 s on two quiet
  // cores. Agent sessions run 8 turns, from ~900 to ~3,300 tokens: agents run long sessions,
  // and 4 turns (what a context of 2,048 holds) cap the cache's gain near 5x by construction.
  full: { system: 1500, question: 20, users: 32, offUsers: 4, levels: [1, 8, 32], regenerate: 4,
    sessions: 4, turns: 8, agentShared: 800, agentTask: 100, toolMin: 100, toolMax: 300,
    replyMin: 16, replyMax: 48, volatile: 6, stamp: 12 },
  // stories260K-sized models in about a minute; the CI smoke test shrinks it further.
  quick: { system: 300, question: 10, users: 8, offUsers: 4, levels: [1, 8], regenerate: 3,
    sessions: 3, turns: 4, agentShared: 200, agentTask: 20, toolMin: 20, toolMax: 60,
    replyMin: 4, replyMax: 12, volatile: 4, stamp: 6 },
};

// A seeded generator of token ids in [3, vocab): 0-2 are BOS/EOS/UNK in llama vocabularies.
export function tokenSource(vocab, seed) {
  let s = seed >>> 0;
  const next = () => {
    // xorshift32: small, seedable, and the same in every Node version.
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s;
  };
  return {
    ids: (n) => Array.from({ length: n }, () => 3 + (next() % (vocab - 3))),
    int: (lo, hi) => lo + (next() % (hi - lo + 1)),
  };
}

function regenerate(z, src) {
  const prompt = src.ids(z.system + z.question);
  return { name: 'regenerate', description: `one ${prompt.length}-token prompt sent ${z.regenerate} times`,
    concurrency: 1, phases: [Array.from({ length: z.regenerate }, () => ({ prompt }))] };
}

function shared(z, src, level) {
  const system = src.ids(z.system);
  const requests = Array.from({ length: z.users }, () => ({ prompt: [...system, ...src.ids(z.question)] }));
  return { name: `shared-c${level}`, concurrency: level, offLimit: z.offUsers,
    description: `${z.users} users, one ${z.system}-token system prompt + ${z.question}-token questions, concurrency ${level}`,
    phases: [requests] };
}

// Requests in interleaved order: turn 0 of every session, then turn 1, ...
export function agentRequests(z, src) {
  const shared = src.ids(z.agentShared);
  const prompts = Array.from({ length: z.sessions }, () => [...shared, ...src.ids(z.agentTask)]);
  const requests = [];
  for (let t = 0; t < z.turns; ++t) {
    for (let s = 0; s < z.sessions; ++s) {
      if (t > 0) {
        // The assistant's reply to the previous turn and a tool result are appended.
        prompts[s] = [...prompts[s], ...src.ids(src.int(z.replyMin, z.replyMax)),
          ...src.ids(src.int(z.toolMin, z.toolMax))];
      }
      requests.push({ prompt: prompts[s], session: s, turn: t });
    }
  }
  return requests;
}

function agent(z, src) {
  return { name: 'agent', concurrency: 1, phases: [agentRequests(z, src)],
    description: `${z.sessions} sessions x ${z.turns} turns interleaved, ${z.agentShared}-token shared head + ` +
      `${z.agentTask}-token task, +${z.replyMin}-${z.replyMax} reply +${z.toolMin}-${z.toolMax} tool tokens a turn` };
}

function volatileTail(z, src) {
  const stable = src.ids(z.system);
  const requests = Array.from({ length: z.volatile }, () =>
    ({ prompt: [...stable, ...src.ids(z.stamp), ...src.ids(z.question)] }));
  return { name: 'volatile', concurrency: 1, phases: [requests],
    description: `${z.system}-token stable prefix + ${z.stamp}-token timestamp changing every request + ${z.question}-token question` };
}

function restart(z, src) {
  const all = agentRequests(z, src);
  const half = Math.floor(all.length / 2);
  return { name: 'restart', concurrency: 1, phases: [all.slice(0, half), all.slice(half)],
    description: `the agent workload (new tokens): ${half} requests, a restart on the same disk cache, ${all.length - half} more` };
}

// Every workload for `z`, the shared-system-prompt one once per concurrency level.
// `only`: names to keep (prefix match, so 'shared' keeps every level), or empty for all.
export function buildWorkloads(z, vocab, only = []) {
  const src = tokenSource(vocab, 20261123);
  const all = [regenerate(z, src), ...z.levels.map((c) => shared(z, src, c)), agent(z, src),
    volatileTail(z, src), restart(z, src)];
  return only.length ? all.filter((w) => only.some((o) => w.name.startsWith(o))) : all;
}

// The most a prefix cache could reuse over `requests` sent in order: for each prompt, its
// longest common prefix with any earlier prompt, at most its length minus one (the last token
// is always computed, for its logits).
export function idealCachedTokens(requests) {
  let total = 0;
  for (let i = 0; i < requests.length; ++i) {
    const p = requests[i].prompt;
    let best = 0;
    for (let j = 0; j < i; ++j) {
      const q = requests[j].prompt;
      let k = 0;
      while (k < p.length && k < q.length && p[k] === q[k]) ++k;
      best = Math.max(best, k);
    }
    total += Math.min(best, p.length - 1);
  }
  return total;
}
