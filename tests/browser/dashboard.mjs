// Drives the dashboard in Debian's Chromium (playwright-core, no browser download) and prints
// what a person would read off the page, as JSON lines on stdout:
//
//   node dashboard.mjs snapshot URL OUTDIR [TOKEN]
//       at 1280 px and 390 px: console errors, dialogs, screenshots (OUTDIR/dashboard-<w>.png),
//       whether the keyboard reaches the controls, and the numbers of every panel for each
//       range, for each category and for one brand: {"width":..,"views":[..]}
//       with DASH_PRODUCT and DASH_CUSTOMER set, the 1280 px line also has the low-stock
//       tables, the forecast table of that product (picked in its select) and the
//       recommendations of that customer, of an unknown one and of a malformed id (typed, Enter)
//   node dashboard.mjs live URL
//       prints {"ready":{...}} once the page shows data, then waits for a line on stdin, then
//       prints {"changed":{...},"ms":..} when the page's totals change (without a reload); then,
//       after a line on stdin (the server is being stopped), {"down":{...}} once the page says it
//       is reconnecting, and after another line (started again) {"back":{...},"ms":..} once it
//       has redrawn from the new server by itself
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';

const [mode, url, outdir, token] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
});
const out = (x) => process.stdout.write(JSON.stringify(x) + '\n');

async function open(width) {
  const ctx = await browser.newContext({
    viewport: { width, height: 900 },
    extraHTTPHeaders: token ? { Authorization: 'Bearer ' + token } : {},
  });
  const page = await ctx.newPage();
  const errors = [], dialogs = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('dialog', async (d) => { dialogs.push(d.message()); await d.dismiss(); });
  await page.goto(url);
  await page.waitForFunction(() => Number(document.body.dataset.refreshed || 0) >= 1, null, { timeout: 30000 });
  return { page, errors, dialogs };
}

// What the page shows now, read from the DOM as text.
function read() {
  const text = (id) => document.getElementById(id).textContent.trim();
  const rows = (id) => [...document.getElementById(id).tBodies[0].rows].map((r) => [...r.cells].map((c) => c.textContent.trim()));
  return {
    query: document.body.dataset.query, span: text('span'),
    generation: Number(document.body.dataset.generation),
    revenue: text('revenue'), units: text('units'), orders: text('orders'),
    hourly: rows('hourly'),
    top_units: rows('top-units'), top_revenue: rows('top-revenue'),
    countries: rows('countries'), cards: rows('cards'),
    countries_note: !document.getElementById('countries-note').hidden,
    health: rows('health'), status: text('status'),
    alerts_open: rows('alerts-open'), alerts_recovered: rows('alerts-recovered'),
    alerts_empty: document.getElementById('alerts-empty').hidden ? '' : text('alerts-empty'),
    forecast: rows('forecast'), forecast_sum: text('forecast-sum'),
    forecast_chart: !!document.querySelector('#forecast-chart canvas'),
    recs: rows('recs'), recs_sum: text('recs-sum'),
    images: document.querySelectorAll('main img').length,
    chart: !!document.querySelector('#chart canvas'),
  };
}

async function choose(page, id, value) {
  const before = await page.evaluate(() => document.body.dataset.query);
  await page.selectOption('#' + id, value);
  await page.waitForFunction((b) => document.body.dataset.query !== b, before, { timeout: 10000 });
  return page.evaluate(read);
}

if (mode === 'snapshot') {
  for (const width of [1280, 390]) {
    const { page, errors, dialogs } = await open(width);
    // The keyboard reaches the controls in order.
    await page.keyboard.press('Tab');
    const focus1 = await page.evaluate(() => document.activeElement && document.activeElement.id);
    await page.screenshot({ path: `${outdir}/dashboard-${width}.png`, fullPage: true });
    const views = [];
    let batch = null;
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (width === 1280) {
      for (const r of ['1h', '6h', '24h', '7d', '30d']) views.push(await choose(page, 'range', r));
      const cats = await page.$$eval('#category option', (os) => os.map((o) => o.value).filter(Boolean));
      for (const c of cats) views.push(await choose(page, 'category', c));
      await choose(page, 'category', '');
      const brand = await page.$eval('#brand option:nth-child(2)', (o) => o.value);
      views.push(await choose(page, 'brand', brand));
      await choose(page, 'brand', '');
      if (process.env.DASH_PRODUCT) {
        const product = process.env.DASH_PRODUCT;
        await page.selectOption('#forecast-product', product);
        await page.waitForFunction((p) => document.body.dataset.forecast === p, product, { timeout: 10000 });
        batch = { forecast: await page.evaluate(read) };
        for (const [name, id] of [['customer', process.env.DASH_CUSTOMER], ['unknown', '999999']]) {
          await page.fill('#customer', id);
          await page.focus('#customer');
          await page.keyboard.press('Enter');
          await page.waitForFunction((w) => document.body.dataset.recs === w, id, { timeout: 10000 }).catch(async (e) => {
            const seen = await page.evaluate(() => [document.body.dataset.recs, document.getElementById('recs-sum').textContent, document.getElementById('status').textContent]);
            throw new Error(`recommendations of ${id}: ${e.message}; page has ${JSON.stringify(seen)}; errors ${JSON.stringify(errors)}`);
          });
          batch[name] = await page.evaluate(read);
        }
        // Not a number: the browser refuses to submit it (the input's pattern); nothing changes.
        await page.fill('#customer', '12x');
        await page.keyboard.press('Enter');
        await page.waitForTimeout(500);
        batch.invalid = await page.evaluate(read);
        batch.invalid.mismatch = await page.evaluate(() => document.getElementById('customer').validity.patternMismatch);
      }
    } else {
      views.push(await page.evaluate(read));
    }
    out({ width, focus: focus1, overflow, errors, dialogs, views, batch });
    await page.context().close();
  }
} else if (mode === 'live') {
  const { page, errors } = await open(1280);
  await page.selectOption('#range', '30d');
  await page.waitForFunction(() => (document.body.dataset.query || '').includes('30d'));
  const before = await page.evaluate(read);
  out({ ready: before });
  const lines = createInterface({ input: process.stdin });
  for await (const _ of lines) break;
  const t0 = Date.now();
  await page.waitForFunction((u) => document.getElementById('units').textContent.trim() !== u, before.units, { timeout: 60000, polling: 100 });
  const after = await page.evaluate(read);
  out({ changed: after, ms: Date.now() - t0, errors, navigations: 0 });
  // The server is stopped: the page says so; started again: it reconnects and redraws itself.
  let navigations = 0;
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations += 1; });
  for await (const _ of lines) break;
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('reconnecting'), null, { timeout: 20000, polling: 100 });
  const draws = await page.evaluate(() => Number(document.body.dataset.draws));
  out({ down: await page.evaluate(read) });
  for await (const _ of lines) break;
  const t1 = Date.now();
  await page.waitForFunction((d) => Number(document.body.dataset.draws) > d && document.getElementById('status').textContent === 'live',
    draws, { timeout: 30000, polling: 100 });
  out({ back: await page.evaluate(read), ms: Date.now() - t1, navigations, errors });
}
await browser.close();
