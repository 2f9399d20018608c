// The browser half of scripts/ui-browser-test.sh: drives Debian's headless
// Chromium with playwright-core and checks what a person would see.
// Every check throws on wrong content; the process exits 1 on the first one.
'use strict';
const { chromium } = require('playwright-core');
const path = require('path');

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const BASE = env('BASE');
const CRASHED_GROUP = env('CRASHED_GROUP');
const LIVE_GROUP = env('LIVE_GROUP');
const CRASHED_RANK = env('CRASHED_RANK');
const SHOTS = env('SHOTS');
const METRICS = ['train/loss', 'train/lr', 'train/grad_norm', 'perf/samples_per_s'];

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

async function main() {
  const context = await chromium.launchPersistentContext(env('PROFILE'), {
    executablePath: env('CHROMIUM'),
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run',
    ],
    viewport: { width: 1280, height: 900 },
  });
  const problems = [];
  const page = context.pages()[0] || (await context.newPage());
  page.on('dialog', async (d) => { problems.push(`a dialog opened: ${d.message()}`); await d.dismiss(); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  const shot = (name) => page.screenshot({ path: path.join(SHOTS, name), fullPage: true });

  // Runs page.
  let res = await page.goto(`${BASE}/`);
  check(res.status() === 200, 'runs page answers 200');
  const runRows = await page.locator('#runs tbody tr').count();
  check(runRows === 9, `runs page lists the 9 runs (found ${runRows})`);
  const evil = page.locator('#runs td a', { hasText: '<img src=x onerror=alert(1)>' });
  check((await evil.count()) === 1, 'a run named <img src=x onerror=alert(1)> shows as text');
  check((await page.locator('#runs img').count()) === 0, 'no <img> element made from the name');
  await shot('runs.png');
  await page.selectOption('select[name=group]', CRASHED_GROUP);
  await page.waitForURL(/group=/);
  const filtered = await page.locator('#runs tbody tr').count();
  check(filtered === 4, `the group filter leaves the job's 4 runs (found ${filtered})`);
  const crashedRuns = await page.locator('#runs tbody tr', { hasText: 'crashed' }).count();
  check(crashedRuns >= 1, 'the crashed rank is shown as crashed in the runs list');
  await shot('runs-filtered.png');

  // Group page of the job with a crashed rank.
  res = await page.goto(`${BASE}/group/${encodeURIComponent(CRASHED_GROUP)}`);
  check(res.status() === 200, 'group page answers 200');
  const rankRows = page.locator('#ranks tbody tr');
  check((await rankRows.count()) === 4, 'group page shows 4 rank rows');
  for (let r = 0; r < 4; r++) {
    check((await page.locator(`#ranks tr[data-rank="${r}"]`).count()) === 1, `rank ${r} has a row`);
  }
  const crashedRow = page.locator(`#ranks tr[data-rank="${CRASHED_RANK}"]`);
  check((await crashedRow.innerText()).includes('crashed'), `rank ${CRASHED_RANK}'s row says crashed`);
  check(await crashedRow.evaluate((e) => e.classList.contains('bad')), `rank ${CRASHED_RANK}'s row is marked`);
  const flags = await page.locator('#flags').innerText();
  check(flags.includes(`crashed: rank ${CRASHED_RANK}`), `the flags name rank ${CRASHED_RANK} as crashed`);
  const charts = page.locator('figure.chart');
  check((await charts.count()) === METRICS.length, `one chart per metric (${METRICS.length})`);
  for (const m of METRICS) {
    const fig = page.locator(`figure.chart[data-metric="${m}"]`);
    check((await fig.count()) === 1, `a chart for ${m}`);
    check(await fig.isVisible(), `the chart for ${m} is visible`);
    check((await fig.locator('path.line[data-rank]').count()) === 4, `${m}: a line per rank`);
    check((await fig.locator('path.mean').count()) === 1, `${m}: the bold mean`);
    check((await fig.locator('path.band').count()) === 1, `${m}: the min-max band`);
    const box = await fig.locator('svg').boundingBox();
    check(box && box.width > 300 && box.height > 150, `${m}: the chart has a real size`);
  }
  await shot('group.png');
  // Click rank 1 in the table: its line is highlighted in every chart.
  await page.locator('#ranks tr[data-rank="1"] td').first().click();
  const on = await page.locator('path.line.on[data-rank="1"]').count();
  check(on === METRICS.length, `clicking rank 1 highlights its line in every chart (${on})`);
  const [hiOpacity, loOpacity] = await page.evaluate(() => {
    const hi = document.querySelector('path.line.on');
    const lo = document.querySelector('path.line:not(.on)');
    return [getComputedStyle(hi).strokeOpacity, getComputedStyle(lo).strokeOpacity];
  });
  check(Number(hiOpacity) > Number(loOpacity) * 3, `the highlighted line stands out (${hiOpacity} vs ${loOpacity})`);
  await shot('group-highlight.png');
  await page.locator('#ranks tr[data-rank="1"] td').first().click();
  check((await page.locator('path.line.on').count()) === 0, 'a second click removes the highlight');

  // Run page of the crashed rank (via its link).
  await page.locator(`#ranks tr[data-rank="${CRASHED_RANK}"] a`).click();
  await page.waitForURL(/\/run\//);
  const meta = await page.locator('#meta').innerText();
  check(meta.includes('crashed'), 'the run page says crashed');
  check(meta.includes(CRASHED_GROUP), 'the run page names the group');
  check(meta.includes('command'), 'the run page shows the command');
  check((await page.locator('h2', { hasText: 'Config' }).count()) === 1, 'the run page shows the config');
  check((await page.locator('table.kv', { hasText: 'batch_per_rank' }).count()) === 1, 'config keys shown');
  const visibleCharts = async () => page.locator('figure.chart:visible').count();
  check((await visibleCharts()) === METRICS.length, 'one visible chart per metric (x = step)');
  check((await page.locator('.x-step figure.chart:visible').count()) === METRICS.length, 'step charts shown first');
  await shot('run.png');
  await page.locator('#walltime').check();
  check((await page.locator('.x-time figure.chart:visible').count()) === METRICS.length, 'wall-time charts after the toggle');
  check((await page.locator('.x-step figure.chart:visible').count()) === 0, 'step charts hidden after the toggle');
  await shot('run-walltime.png');

  // Live group: the rank table updates without a reload; scroll and highlight stay.
  res = await page.goto(`${BASE}/group/${encodeURIComponent(LIVE_GROUP)}`);
  check(res.status() === 200, 'live group page answers 200');
  check((await page.locator('#ranks tbody tr').count()) === 4, 'live group shows 4 ranks');
  check((await page.locator('#ranks tr[data-state="running"]').count()) === 4, 'all 4 live ranks running');
  await page.evaluate(() => { window.__noReload = 'still here'; });
  await page.locator('#ranks tr[data-rank="2"] td').first().click();
  await page.setViewportSize({ width: 1280, height: 500 });
  // The charts arrive after the rank table; only then is there room to scroll.
  await page.waitForFunction(
    (n) => document.querySelectorAll('figure.chart').length >= n
      && document.documentElement.scrollHeight > window.innerHeight + 300,
    METRICS.length,
    { timeout: 30000 },
  );
  await page.evaluate(() => window.scrollTo(0, 300));
  const scrollBefore = await page.evaluate(() => window.scrollY);
  check(scrollBefore >= 250, `scrolled down to ${scrollBefore}`);
  const stepsOf = () => page.locator('#ranks tr[data-rank="0"] td').nth(3).innerText();
  const before = Number(await stepsOf());
  let after = before;
  for (let i = 0; i < 40 && after === before; i++) {
    await page.waitForTimeout(500);
    after = Number(await stepsOf());
  }
  check(after > before, `rank 0's steps went from ${before} to ${after} while the page was open`);
  check((await page.evaluate(() => window.__noReload)) === 'still here', 'no reload happened');
  const scrollAfter = await page.evaluate(() => window.scrollY);
  check(Math.abs(scrollAfter - scrollBefore) < 5, `the scroll position stayed (${scrollBefore} -> ${scrollAfter})`);
  check((await page.locator('path.line.on[data-rank="2"]').count()) === METRICS.length, 'the highlight survived the update');
  const status = await page.locator('#status').innerText();
  check(status.startsWith('updated'), `the status line says "${status}"`);
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot('group-live.png');

  check(problems.length === 0, `no dialogs, page errors or console errors (${problems.join('; ')})`);
  await context.close();
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
