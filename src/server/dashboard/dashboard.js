// prefixd's cache dashboard. Polls the server that served the page (same origin only; the
// Content-Security-Policy forbids anything else) and draws what it reports:
//   GET  /props                      model, tiers configured, whether the admin API is on
//   GET  /v1/prefix_cache_stats      counters, per-tier occupancy, 1/5/15-minute hit rates
//   GET  /v1/recent_requests         the last requests with usage.prefix_cache, TTFT histogram
//   POST /admin/api/cache/probe      the probe panel, with the admin key typed into the page
// The admin and API keys live in variables of this script only: never stored, never in a URL.
// Server text (token pieces, ids) is inserted with textContent, never as HTML.
'use strict';

(() => {
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const TIERS = ['pool', 'host', 'disk', 'partial'];
  // The tiers of a by_tier object: the known ones in lookup order, then any other the server
  // reports (a tier added later shows up with the generic columns and colour).
  const tiersOf = (byTier) => [...TIERS, ...Object.keys(byTier || {}).filter((t) => !TIERS.includes(t)).sort()];
  const fillOf = (tier) => `f-${TIERS.includes(tier) ? tier : 'other'}`;
  const TIER_NAMES = { pool: 'pool (L1)', host: 'host RAM (L2)', disk: 'disk (L3)', partial: 'partial tails' };
  const refreshMs = Math.max(200, Number(new URLSearchParams(location.search).get('refresh')) || 1000);

  const state = { props: null, apiKey: '', adminKey: '', recentSeq: -1 };
  const $ = (id) => document.getElementById(id);

  // ---- Small helpers

  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  }

  function svg(tag, attrs = {}) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  }

  function setText(id, text, value) {
    const e = $(id);
    e.textContent = text;
    if (value !== undefined) e.dataset.value = String(value);
  }

  const pct = (x) => `${(x * 100).toFixed(1)}%`;

  function bytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
  }

  function ms(x) {
    if (x === null || x === undefined) return '–';
    return x < 10 ? `${x.toFixed(2)} ms` : x < 1000 ? `${x.toFixed(0)} ms` : `${(x / 1000).toFixed(2)} s`;
  }

  // GET or POST JSON on this server. Resolves to {status, json}; rejects only when the server
  // cannot be reached.
  async function call(path, { method = 'GET', body, key } = {}) {
    const headers = {};
    if (key) headers.authorization = `Bearer ${key}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                    cache: 'no-store', credentials: 'omit' });
    let json = null;
    try { json = await res.json(); } catch { /* not JSON */ }
    return { status: res.status, json };
  }

  const errorText = (r) => (r.json && r.json.error && r.json.error.message) || `HTTP ${r.status}`;

  function banner(text) {
    $('banner').hidden = !text;
    $('banner').textContent = text || '';
  }

  // ---- Header and hit rate

  function renderHeader(stats) {
    const p = state.props;
    $('model').textContent = p ? `${p.model.id} · block ${p.kv.block_size} tokens` : '';
    const badge = $('cache-state');
    badge.textContent = stats.enabled ? 'cache on' : `cache off: ${stats.reason}`;
    badge.className = `badge ${stats.enabled ? 'on' : 'off'}`;
    $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  function renderHitRate(stats) {
    const lookups = stats.hits + stats.misses;
    const configuredOff = state.props && !state.props.prefix_cache.configured;
    setText('hit-rate-total', configuredOff ? 'N/A' : lookups > 0 ? pct(stats.hit_rate) : '–', stats.hit_rate);
    setText('hits', String(stats.hits), stats.hits);
    setText('misses', String(stats.misses), stats.misses);
    $('hit-rate-note').textContent = !stats.enabled ? `(${stats.reason})` : lookups === 0 ? '(no requests yet)' : '';
    const rows = ['1m', '5m', '15m'].map((w) => {
      const r = stats.rates[w];
      const n = r.hits + r.misses;
      return el('tr', { 'data-window': w },
        el('td', { text: w }), el('td', { text: n > 0 ? pct(r.hit_rate) : '–' }),
        el('td', { text: String(r.hits) }), el('td', { text: String(r.misses) }),
        el('td', { text: `${r.covered_s} of ${r.window_s} s` }));
    });
    $('rates').replaceChildren(...rows);
  }

  // Stacked bars: hits (green) under misses (grey) per bucket of the server's history, the
  // newest on the right; buckets from before the server started are left empty.
  function renderHitChart(history) {
    const n = history.hits.length;
    const totals = history.hits.map((h, i) => (h === null ? 0 : h + history.misses[i]));
    const max = Math.max(1, ...totals);
    const w = 300 / n;
    const bars = [];
    history.hits.forEach((h, i) => {
      if (h === null) return;
      const hh = (h / max) * 76, mh = (history.misses[i] / max) * 76;
      bars.push(svg('rect', { x: i * w, y: 80 - hh, width: w * 0.85, height: hh, class: 'f-cached' }));
      bars.push(svg('rect', { x: i * w, y: 80 - hh - mh, width: w * 0.85, height: mh, class: 'f-miss' }));
    });
    $('hit-chart').replaceChildren(...bars);
    const minutes = Math.round((n * history.bucket_s) / 60);
    $('hit-chart-title').textContent = `Hits and misses per ${history.bucket_s} s, last ${minutes} minutes`;
    const total = totals.reduce((a, b) => a + b, 0);
    $('hit-chart-note').textContent = total === 0 ? `no lookups in the last ${minutes} minutes`
      : `tallest bar: ${max} lookups; green hits, grey misses`;
    $('hit-axis').replaceChildren(el('span', { text: `${minutes} min ago` }), el('span', { text: 'now' }));
  }

  function renderTokens(stats) {
    const cached = stats.hit_tokens;
    const computed = Math.max(0, stats.total_query_tokens - stats.hit_tokens);
    setText('tokens-cached', String(cached), cached);
    setText('tokens-computed', String(computed), computed);
    const total = cached + computed;
    const configuredOff = state.props && !state.props.prefix_cache.configured;
    $('tokens-share').textContent = configuredOff ? '(N/A: the prefix cache is off, prompts are not looked up)'
      : total > 0 ? `(${pct(cached / total)} from cache)` : '(no prompts yet)';
    const w = total > 0 ? (cached / total) * 300 : 0;
    $('tokens-bar').replaceChildren(
      svg('rect', { x: 0, y: 0, width: 300, height: 16, class: 'f-cold' }),
      svg('rect', { x: 0, y: 0, width: w, height: 16, class: 'f-cached' }));
    $('avg-hit').textContent = stats.avg_hit_tokens.toFixed(1);
    $('running').textContent = String(stats.requests_running);
    $('waiting').textContent = String(stats.requests_waiting);
  }

  // ---- Tiers

  // Why a tier shows N/A, or null when it is on.
  function tierOffReason(tier, stats) {
    const p = state.props;
    if (p && !p.prefix_cache.configured) return 'the prefix cache is off (--prefix-cache off)';
    if (tier === 'pool') return null;
    if (stats.by_tier[tier]) {
      if (tier === 'partial' && stats.by_tier.partial.max_entries === 0) {
        return 'off: start prefixd serve with --mru-partial-max-entries N';
      }
      return null;
    }
    if (tier === 'host') return 'off: start prefixd serve with --host-cache-bytes BYTES';
    if (tier === 'disk') return 'off: start prefixd serve with --disk-cache-dir DIR';
    return 'off: start prefixd serve with --mru-partial-max-entries N';
  }

  function occupancy(used, budget, label) {
    const frac = budget > 0 ? Math.min(1, used / budget) : 0;
    const bar = svg('svg', { viewBox: '0 0 100 8', preserveAspectRatio: 'none' });
    bar.append(svg('rect', { width: 100, height: 8, class: 'f-cold' }),
               svg('rect', { width: frac * 100, height: 8, class: 'f-pool' }));
    return el('div', { class: 'occupancy' }, bar, el('span', { text: `${label} (${budget > 0 ? pct(frac) : '–'})` }));
  }

  function tierRow(tier, stats) {
    const reason = tierOffReason(tier, stats);
    const name = el('td', { text: TIER_NAMES[tier] || tier });
    if (reason) {
      return el('tr', { 'data-tier': tier }, name, el('td', { text: 'N/A' }),
                el('td', { class: 'na', colspan: 3, text: reason }));
    }
    const cells = tierCells(tier, stats);
    return el('tr', { 'data-tier': tier }, name, ...cells.map((c) => (c instanceof Node ? el('td', {}, c) : el('td', { text: c }))));
  }

  // [holds, occupancy, evictions, activity] for a tier that is on.
  function tierCells(tier, stats) {
    if (tier === 'pool') {
      const p = stats.by_tier.pool;
      // A hybrid's blocks carry recurrent-state snapshots, where a cached prefix can resume.
      const snaps = stats.state_snapshots
        ? `, ${stats.state_snapshots.count} state snapshots (${bytes(stats.state_snapshots.bytes)}, every ${stats.state_snapshots.checkpoint_blocks} blocks)`
        : '';
      return [`${stats.cached_tokens} tokens, ${stats.cached_blocks} blocks (${bytes(stats.cached_bytes)})` + snaps + retainedNote(p.retained_bytes),
              occupancy(stats.cached_blocks, stats.max_cached_blocks, `${stats.cached_blocks} of ${stats.max_cached_blocks} blocks`),
              String(stats.evictions),
              `${stats.nodes} tree nodes, ${stats.locked_requests} requests holding blocks` +
                `, retention: ${p.retention_expired_tokens} tokens expired, ${p.retention_capped_tokens} capped`];
    }
    if (tier === 'partial') {
      const t = stats.by_tier.partial;
      return [`${t.entries} tails`, occupancy(t.entries, t.max_entries, `${t.entries} of ${t.max_entries}`),
              String(t.evictions), `${t.hits} hits, ${t.tokens_saved} tokens saved, ${t.stashes} stashed`];
    }
    const t = stats.by_tier[tier];
    let activity = `${t.hits} hits, ${t.misses} misses, ${t.writes} writes`;
    if (t.quarantined) activity += `, ${t.quarantined} quarantined`;
    if (tier === 'disk') activity += `, ${t.writes_pending} writes pending, ${t.writes_dropped} dropped`;
    if (t.retained_blocks || t.retention_expired || t.retention_spilled) {
      activity += `, retention: ${t.retention_expired} expired, ${t.retention_capped} capped, ${t.retention_spilled} moved down`;
    }
    return [`${t.blocks} blocks (${bytes(t.bytes)})` + retainedNote(t.retained_bytes), occupancy(t.bytes, t.budget_bytes, `${bytes(t.bytes)} of ${bytes(t.budget_bytes)}`),
            String(t.evictions), activity];
  }

  // ", N retained" after what a tier holds (retention: cache_control, prompt_cache_retention).
  function retainedNote(retainedBytes) {
    return retainedBytes ? `, ${bytes(retainedBytes)} retained` : '';
  }

  function renderTiers(stats) {
    $('tiers').tBodies[0].replaceChildren(...tiersOf(stats.by_tier).map((t) => tierRow(t, stats)));
  }

  // ---- Time to first token and recent requests

  function quantile(sorted, q) {
    return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  }

  function renderTtft(recent) {
    const h = recent.time_to_first_token_seconds;
    const ttfts = recent.requests.map((r) => r.ttft_ms).filter((x) => x !== null).sort((a, b) => a - b);
    $('ttft-summary').textContent = ttfts.length === 0
      ? 'no requests yet'
      : `last ${ttfts.length}: p50 ${ms(quantile(ttfts, 0.5))}, p90 ${ms(quantile(ttfts, 0.9))}, ` +
        `max ${ms(ttfts[ttfts.length - 1])} · all ${h.count} since start, mean ${ms(h.count ? (h.sum / h.count) * 1000 : null)}`;
    const n = h.counts.length;
    const max = Math.max(1, ...h.counts);
    const w = 300 / n;
    const bars = h.counts.map((c, i) => {
      const hh = (c / max) * 84;
      const bar = svg('rect', { x: i * w + 1, y: 90 - hh, width: w - 2, height: hh, class: 'f-pool' });
      const label = i < h.bounds.length ? `≤ ${ms(h.bounds[i] * 1000)}` : `> ${ms(h.bounds[n - 2] * 1000)}`;
      bar.append(svg('title'));
      bar.firstChild.textContent = `${label}: ${c}`;
      return bar;
    });
    $('ttft-chart').replaceChildren(...bars);
    $('ttft-axis').replaceChildren(el('span', { text: `≤ ${ms(h.bounds[0] * 1000)}` }),
                                   el('span', { text: 'requests per bucket' }),
                                   el('span', { text: `> ${ms(h.bounds[n - 2] * 1000)}` }));
  }

  // A small bar of the prompt: cached tokens per tier, then the computed rest.
  function miniBar(promptTokens, byTier) {
    const bar = svg('svg', { class: 'mini', viewBox: '0 0 100 8', preserveAspectRatio: 'none' });
    bar.append(svg('rect', { width: 100, height: 8, class: 'f-cold' }));
    let x = 0;
    for (const t of tiersOf(byTier)) {
      const n = byTier[t] || 0;
      if (n <= 0 || promptTokens <= 0) continue;
      const w = (n / promptTokens) * 100;
      bar.append(svg('rect', { x, width: w, height: 8, class: fillOf(t) }));
      x += w;
    }
    return bar;
  }

  function divergedText(pc) {
    if (pc.diverged_at_token === null) return 'full hit';
    let s = `token ${pc.diverged_at_token}`;
    if (pc.diverged_in_message !== undefined && pc.diverged_in_message !== null) s += `, message ${pc.diverged_in_message}`;
    return s;
  }

  function recentRow(r) {
    const u = r.usage;
    const pc = u.prefix_cache;
    const tiers = tiersOf(pc.by_tier).filter((t) => pc.by_tier[t] > 0).map((t) => `${t} ${pc.by_tier[t]}`).join(' · ') || 'none';
    const cachedCell = el('td', {}, el('span', { text: `${pc.cached_tokens} ` }), miniBar(u.prompt_tokens, pc.by_tier));
    return el('tr', { 'data-seq': r.seq },
      el('td', { text: new Date(r.received_unix_ms).toLocaleTimeString() }),
      el('td', { text: r.kind + (r.stream ? ' (stream)' : '') }),
      el('td', { text: String(u.prompt_tokens) }), cachedCell, el('td', { text: tiers }),
      el('td', { text: divergedText(pc) }), el('td', { text: ms(r.ttft_ms) }),
      el('td', { text: ms(r.duration_ms) }), el('td', { text: r.outcome }));
  }

  function renderRecent(recent) {
    if (recent.num_recorded === state.recentSeq) return;
    state.recentSeq = recent.num_recorded;
    $('recent').tBodies[0].replaceChildren(...recent.requests.map(recentRow));
    $('recent-empty').hidden = recent.requests.length > 0;
    $('recent-count').textContent = recent.num_recorded > 0
      ? `(${recent.requests.length} newest of ${recent.num_recorded}, up to ${recent.capacity})` : '';
  }

  // ---- Refresh loop

  async function refresh() {
    try {
      // Ask for the key before the first request rather than after a 401 (which the browser
      // would also log as an error).
      if (state.props && state.props.server.api_key_required && !state.apiKey) {
        $('api-key-form').hidden = false;
        return;
      }
      const [s, r] = await Promise.all([call('/v1/prefix_cache_stats', { key: state.apiKey }),
                                        call('/v1/recent_requests', { key: state.apiKey })]);
      if (s.status === 401 || r.status === 401) {
        $('api-key-form').hidden = false;
        banner(state.apiKey ? `the API key was refused: ${errorText(s)}` : '');
        // Wait for another key rather than send the refused one every second.
        if (state.props && state.props.server.api_key_required) state.apiKey = '';
        return;
      }
      if (s.status !== 200) return banner(`statistics unavailable: ${errorText(s)}`);
      $('api-key-form').hidden = true;
      banner('');
      renderHeader(s.json);
      renderHitRate(s.json);
      renderTokens(s.json);
      renderTiers(s.json);
      if (r.status === 200) {
        renderTtft(r.json);
        renderHitChart(r.json.hit_history);
        renderRecent(r.json);
      }
      document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
    } catch (e) {
      banner(`cannot reach the server (${e.message}); retrying`);
    } finally {
      setTimeout(refresh, refreshMs);
    }
  }

  // ---- Probe

  // The probe body from the text box: a messages array, a request object with `messages`, or
  // a prompt. Throws with a message for the page when it is not valid.
  function probeBody() {
    const mode = document.querySelector('input[name="probe-mode"]:checked').value;
    const text = $('probe-input').value;
    const body = { tokens: true };
    if (mode === 'prompt') {
      if (!text) throw new Error('type a prompt to probe');
      body.prompt = text;
    } else {
      let parsed;
      try { parsed = JSON.parse(text); } catch (e) { throw new Error(`the messages are not valid JSON: ${e.message}`); }
      const messages = Array.isArray(parsed) ? parsed : parsed && parsed.messages;
      if (!Array.isArray(messages)) throw new Error('paste a JSON array of messages, or an object with "messages"');
      body.messages = messages;
    }
    const salt = $('probe-salt').value;
    if (salt) body.cache_salt = salt;
    return body;
  }

  async function probe(ev) {
    ev.preventDefault();
    state.adminKey = $('admin-key').value;
    $('probe-error').hidden = true;
    let body;
    try { body = probeBody(); } catch (e) { return probeError(e.message); }
    if (!state.adminKey) return probeError('enter the admin key (the server\'s --admin-key) to probe');
    $('probe-button').disabled = true;
    try {
      const r = await call('/admin/api/cache/probe', { method: 'POST', body, key: state.adminKey });
      if (r.status !== 200) return probeError(errorText(r));
      if (!r.json.model_loaded) return probeError(r.json.reason);
      renderProbe(r.json, body.messages);
    } catch (e) {
      probeError(`cannot reach the server: ${e.message}`);
    } finally {
      $('probe-button').disabled = false;
    }
  }

  function probeError(text) {
    $('probe-error').textContent = text;
    $('probe-error').hidden = false;
  }

  function renderProbe(p, messages) {
    const parts = tiersOf(p.by_tier).filter((t) => t in p.by_tier).map((t) => `${t} ${p.by_tier[t]}`).join(' · ');
    let summary = `${p.resident_tokens} of ${p.total_tokens} tokens resident (${pct(p.total_tokens ? p.resident_tokens / p.total_tokens : 0)}): ` +
                  `${parts}; ${p.cold_tokens} cold`;
    if (p.num_messages !== undefined) {
      summary += p.diverges_in_message === null ? '; every message is resident'
        : `; diverges in message ${p.diverges_in_message}` + (messages && messages[p.diverges_in_message] ? ` (${messages[p.diverges_in_message].role})` : ' (the assistant header)');
    }
    if (p.retention) {
      const kept = tiersOf(p.retention).filter((t) => p.retention[t] && p.retention[t].prompt_retained_tokens > 0)
        .map((t) => `${t} ${p.retention[t].prompt_retained_tokens}`).join(' · ');
      if (kept) summary += ` · retained: ${kept}`;
    }
    if (p.state_snapshot) summary += ` · resumes at token ${p.state_snapshot.pool_resume_at} (the pool's deepest state snapshot)`;
    if (!p.cache_enabled) summary += ` · the cache is not serving (see the header)`;
    const s = $('probe-summary');
    s.textContent = summary;
    s.dataset.resident = String(p.resident_tokens);
    s.dataset.total = String(p.total_tokens);
    renderProbeBar(p, messages);
    renderProbeTokens(p, messages);
    $('probe-result').hidden = false;
  }

  // The tier of each token: ranges cover the resident prefix, the rest is cold.
  function tierOfTokens(p) {
    const tiers = new Array(p.total_tokens).fill('cold');
    for (const r of p.ranges) for (let i = r.start; i < r.end; i++) tiers[i] = r.tier;
    return tiers;
  }

  function boundaries(p, messages) {
    const out = (p.message_starts || []).map((t, i) => ({ token: t, label: `#${i} ${messages && messages[i] ? messages[i].role : ''}` }));
    if (p.generation_start !== undefined) out.push({ token: p.generation_start, label: 'reply header' });
    return out;
  }

  function renderProbeBar(p, messages) {
    const bar = $('probe-bar');
    const n = Math.max(1, p.total_tokens);
    const w = 300 / n;
    const rects = [svg('rect', { x: 0, y: 12, width: 300, height: 22, class: 'f-cold' })];
    for (const r of p.ranges) {
      const rect = svg('rect', { x: r.start * w, y: 12, width: (r.end - r.start) * w, height: 22, class: fillOf(r.tier), 'data-tier': r.tier });
      rect.append(svg('title'));
      rect.firstChild.textContent = `${r.tier}: tokens ${r.start} to ${r.end - 1}`;
      rects.push(rect);
    }
    for (const b of boundaries(p, messages)) {
      const line = svg('rect', { x: Math.min(299.4, b.token * w), y: 0, width: 0.6, height: 34, class: 'f-boundary boundary' });
      line.append(svg('title'));
      line.firstChild.textContent = `${b.label} starts at token ${b.token}`;
      rects.push(line);
    }
    bar.replaceChildren(...rects);
  }

  function renderProbeTokens(p, messages) {
    const box = $('probe-tokens');
    if (!p.tokens) return box.replaceChildren();
    const tiers = tierOfTokens(p);
    const starts = new Map(boundaries(p, messages).map((b) => [b.token, b.label]));
    const nodes = [];
    p.tokens.forEach((piece, i) => {
      if (starts.has(i)) nodes.push(el('span', { class: 'msg-start', text: starts.get(i) }));
      // A control token (BOS) has no text: show a mark so that it still takes room.
      const cls = tiers[i] === 'cold' || TIERS.includes(tiers[i]) ? tiers[i] : 'other';
      nodes.push(el('span', { class: `tok ${cls}`, title: `token ${i}: ${tiers[i]}`, text: piece || '∅' }));
    });
    box.replaceChildren(...nodes);
  }

  // ---- Start

  async function start() {
    $('probe-form').addEventListener('submit', probe);
    $('api-key-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      state.apiKey = $('api-key').value;  // the refresh loop uses it from its next round
    });
    try {
      const r = await call('/props');
      if (r.status === 200) state.props = r.json;
    } catch (e) {
      banner(`cannot reach the server (${e.message})`);
    }
    if (state.props && !state.props.server.admin_api) {
      $('probe-unavailable').textContent = 'The probe is unavailable: it uses the admin API, which is disabled on ' +
        'this server. Start prefixd serve with --admin-key KEY (or PREFIXD_ADMIN_KEY) to enable it.';
      $('probe-unavailable').hidden = false;
      $('probe-fields').disabled = true;
    }
    refresh();
  }

  start();
})();
