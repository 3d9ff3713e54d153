// The dashboard in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core):
// after real requests it shows the hit count and rate /v1/prefix_cache_stats reports, the
// recent requests and the tiers; the probe panel shows a chat cold, then resident once it was
// sent; with the cache off and without an admin key it says what is unavailable and why; at
// 400 px it does not scroll sideways. Every request the page makes is checked: one to any
// host but 127.0.0.1 fails the test, as does any console error.
// Screenshots go to tests/e2e/artifacts/ (git-ignored); docs/dashboard.png is a copy of
// artifacts/dashboard.png.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { ADMIN_KEY, missingPrerequisite, startServer, uniqueWord } from './server.mjs';

const CHROMIUM = process.env.PREFIXD_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts');
const skip = missingPrerequisite() ??
  (existsSync(CHROMIUM) ? null
    : `Chromium is not installed at ${CHROMIUM} (scripts/setup.sh installs Debian's chromium; or set PREFIXD_CHROMIUM)`);
const T = { timeout: 30000 };
const REFRESH_MS = 250;

// A page on `srv`'s dashboard with its console errors and off-host requests collected.
async function openDashboard(browser, srv, viewport = { width: 1280, height: 900 }, { waitRefresh = true } = {}) {
  const context = await browser.newContext({ viewport });
  const seen = { errors: [], offsite: [] };
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.hostname === '127.0.0.1') return route.continue();
    seen.offsite.push(url.href);
    return route.abort();
  });
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') seen.errors.push(m.text()); });
  page.on('pageerror', (e) => seen.errors.push(`uncaught: ${e.message}`));
  await page.goto(`${srv.url}/dashboard?refresh=${REFRESH_MS}`);
  if (waitRefresh) await page.waitForFunction(() => Number(document.body.dataset.refreshes || 0) >= 1);
  return { page, context, seen };
}

function assertClean(seen) {
  assert.deepEqual(seen.offsite, [], 'requests that left 127.0.0.1');
  assert.deepEqual(seen.errors, [], 'console errors');
}

// Waits until the page shows `stats`' hit count (the page refreshes every REFRESH_MS).
async function waitForHits(page, hits) {
  await page.waitForFunction((h) => document.getElementById('hits').dataset.value === String(h), hits);
}

async function probeInPage(page, messages, salt) {
  await page.fill('#admin-key', ADMIN_KEY);
  await page.check('input[name="probe-mode"][value="chat"]');
  await page.fill('#probe-input', JSON.stringify(messages, null, 1));
  await page.fill('#probe-salt', salt);
  await page.evaluate(() => { delete document.getElementById('probe-summary').dataset.resident; });
  await page.click('#probe-button');
  await page.waitForFunction(() => document.getElementById('probe-summary').dataset.resident !== undefined);
  return {
    resident: Number(await page.getAttribute('#probe-summary', 'data-resident')),
    total: Number(await page.getAttribute('#probe-summary', 'data-total')),
    summary: await page.textContent('#probe-summary'),
  };
}

describe('dashboard in headless Chromium', { skip: skip ?? false }, () => {
  let browser;
  let srv;
  const diskDir = mkdtempSync(path.join(tmpdir(), 'prefixd-e2e-dash-'));
  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
    srv = await startServer({ args: ['--disk-cache-dir', diskDir, '--disk-prefix-cache', 'full'] });
  });
  after(async () => {
    await browser?.close();
    await srv?.stop();
    rmSync(diskDir, { recursive: true, force: true });
  });

  const story = `Once upon a time ${uniqueWord()} there was a little dog who liked to run in the park.`;
  const chat = [{ role: 'system', content: 'You tell short stories for children.' },
                { role: 'user', content: `Tell me about a cat called ${uniqueWord()} who found a hat.` }];
  // Its own salt: not even BOS is shared with the other prompts, so "cold" is all cold.
  const salt = `dash-${uniqueWord()}`;

  it('shows the hit count and rate the stats report, the requests and the tiers', T, async () => {
    let last;
    for (let i = 0; i < 3; i++) {
      last = await srv.client.completions.create({ model: srv.model, prompt: story, temperature: 0, max_tokens: 6 });
    }
    const stats = await srv.stats();
    assert.ok(stats.hits >= 2 && stats.misses >= 1, JSON.stringify(stats));
    const { page, context, seen } = await openDashboard(browser, srv);
    try {
      await waitForHits(page, stats.hits);
      assert.equal(await page.textContent('#hits'), String(stats.hits));
      assert.equal(await page.textContent('#misses'), String(stats.misses));
      assert.equal(await page.textContent('#hit-rate-total'), `${(stats.hit_rate * 100).toFixed(1)}%`);
      const oneMinute = await page.textContent('#rates tr[data-window="1m"]');
      assert.ok(oneMinute.includes(String(stats.rates['1m'].hits)), oneMinute);
      assert.equal(await page.textContent('#tokens-cached'), String(stats.hit_tokens));
      assert.equal(await page.textContent('#cache-state'), 'cache on');

      // Newest first; the last repeat was served from the pool up to its last token.
      const rows = page.locator('#recent tbody tr');
      assert.equal(await rows.count(), 3);
      const newest = await rows.first().textContent();
      assert.ok(newest.includes(`pool ${last.usage.prefix_cache.by_tier.pool}`), newest);
      assert.match(await page.textContent('#ttft-summary'), /^last 3: p50/);
      // The server's history: the three requests are in the chart's buckets.
      assert.ok(await page.locator('#hit-chart rect.f-cached').count() >= 1);
      assert.match(await page.textContent('#hit-chart-note'), /tallest bar: [1-3] lookups/);

      for (const tier of ['pool', 'host', 'disk', 'partial']) {
        const row = await page.textContent(`#tiers tr[data-tier="${tier}"]`);
        assert.ok(!row.includes('N/A'), `${tier}: ${row}`);
      }
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-stats.png'), fullPage: true });
      assertClean(seen);
    } finally {
      await context.close();
    }
  });

  it('probes a chat cold, then resident after it was sent, keeping the key in memory', T, async () => {
    const { page, context, seen } = await openDashboard(browser, srv);
    try {
      const cold = await probeInPage(page, chat, salt);
      const api = await srv.admin('/admin/api/cache/probe', { messages: chat, cache_salt: salt });
      assert.equal(cold.resident, 0, cold.summary);
      assert.equal(cold.total, api.json.total_tokens);
      assert.match(cold.summary, new RegExp(`^0 of ${cold.total} tokens resident`));
      // One mark per message plus the reply header.
      assert.equal(await page.locator('#probe-bar .boundary').count(), chat.length + 1);
      assert.equal(await page.locator('#probe-tokens .tok.cold').count(), cold.total);

      const sent = await srv.client.chat.completions.create({
        model: srv.model, messages: chat, temperature: 0, max_tokens: 4, cache_salt: salt });
      const warm = await probeInPage(page, chat, salt);
      const apiWarm = await srv.admin('/admin/api/cache/probe', { messages: chat, cache_salt: salt });
      assert.ok(warm.resident > 0, warm.summary);
      assert.equal(warm.resident, apiWarm.json.resident_tokens);
      assert.equal(warm.total, sent.usage.prompt_tokens);
      assert.equal(await page.locator('#probe-tokens .tok.pool').count(), apiWarm.json.by_tier.pool);

      // The chat shows up among the recent requests with where it diverged.
      await page.waitForFunction(() => document.querySelectorAll('#recent tbody tr').length >= 4);
      assert.match(await page.textContent('#recent tbody tr'), /chat/);

      const storage = await page.evaluate(() => [localStorage.length, sessionStorage.length, document.cookie]);
      assert.deepEqual(storage, [0, 0, ''], 'the admin key is kept in memory only');
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png'), fullPage: true });
      assertClean(seen);
    } finally {
      await context.close();
    }
  });

  it('fits a 400 px wide window without scrolling sideways', T, async () => {
    const { page, context, seen } = await openDashboard(browser, srv, { width: 400, height: 900 });
    try {
      await probeInPage(page, chat, salt);
      const widths = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
      assert.ok(widths[0] <= widths[1], `page ${widths[0]} px wide in a ${widths[1]} px window`);
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-narrow.png'), fullPage: true });
      assertClean(seen);
    } finally {
      await context.close();
    }
  });

  it('asks for the API key when the server has one, then shows the statistics', T, async () => {
    const keyed = await startServer({ args: ['--api-key', 'dash-api-key'] });
    try {
      const { page, context, seen } = await openDashboard(browser, keyed, undefined, { waitRefresh: false });
      try {
        await page.waitForSelector('#api-key-form', { state: 'visible' });
        assert.equal(await page.textContent('#hits'), '0');
        await page.fill('#api-key', 'dash-api-key');
        await page.click('#api-key-form button');
        await page.waitForFunction(() => Number(document.body.dataset.refreshes || 0) >= 1);
        assert.equal(await page.isVisible('#api-key-form'), false);
        assert.equal(await page.textContent('#cache-state'), 'cache on');
        assertClean(seen);
      } finally {
        await context.close();
      }
    } finally {
      await keyed.stop();
    }
  });

  it('says what is unavailable with the cache off, an empty cache and no admin key', T, async () => {
    const off = await startServer({ adminKey: null, args: ['--prefix-cache', 'off'] });
    try {
      const { page, context, seen } = await openDashboard(browser, off);
      try {
        assert.match(await page.textContent('#cache-state'), /cache off: .*--prefix-cache off/);
        assert.equal(await page.textContent('#hit-rate-total'), 'N/A');
        assert.match(await page.textContent('#hit-rate-note'), /--prefix-cache off/);
        assert.equal(await page.isVisible('#recent-empty'), true);
        for (const tier of ['pool', 'host', 'disk', 'partial']) {
          const row = await page.textContent(`#tiers tr[data-tier="${tier}"]`);
          assert.match(row, /N\/A.*--prefix-cache off/, `${tier}: ${row}`);
        }
        assert.equal(await page.isVisible('#probe-unavailable'), true);
        assert.match(await page.textContent('#probe-unavailable'), /admin API.*--admin-key/);
        assert.equal(await page.isDisabled('#probe-button'), true);

        await off.client.completions.create({ model: off.model, prompt: 'Once upon a time', temperature: 0, max_tokens: 4 });
        await page.waitForFunction(() => document.querySelectorAll('#recent tbody tr').length === 1);
        assert.match(await page.textContent('#recent tbody tr'), /completion.*none/);
        await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-cache-off.png'), fullPage: true });
        assertClean(seen);
      } finally {
        await context.close();
      }
    } finally {
      await off.stop();
    }
  });
});
