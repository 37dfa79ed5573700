// The page: fetches the panels, redraws them when the server says the stream moved.
// Everything from the server is set as text, never as markup.
'use strict';
const $ = (id) => document.getElementById(id);
const money = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' });
const count = new Intl.NumberFormat('en-US');
const cents = (c) => money.format(c / 100);
const PALETTE = { revenue: '#0072b2', units: '#e69f00' }; // Okabe-Ito blue and orange

function cell(row, text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function fillSelect(sel, values) {
  const keep = sel.value;
  while (sel.options.length > 1) sel.remove(1);
  for (const v of values) {
    const o = document.createElement('option');
    o.value = v; o.textContent = v;
    sel.appendChild(o);
  }
  sel.value = values.includes(keep) ? keep : '';
}

function params() {
  const p = new URLSearchParams();
  p.set('range', $('range').value);
  if ($('category').value) p.set('category', $('category').value);
  if ($('brand').value) p.set('brand', $('brand').value);
  return p.toString();
}

let chart = null;
function drawChart(h) {
  const el = $('chart');
  const xs = h.hours.map((x) => Date.parse(x.start) / 1000);
  const data = [xs, h.hours.map((x) => x.revenue_cents / 100), h.hours.map((x) => x.units)];
  const width = Math.max(280, el.clientWidth);
  if (typeof uPlot === 'undefined') return;
  if (chart) { chart.setData(data); chart.setSize({ width, height: 300 }); return; }
  chart = new uPlot({
    width, height: 300,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
    scales: { x: { time: true }, usd: {}, units: {} },
    axes: [
      {},
      { scale: 'usd', label: 'revenue (USD)', values: (u, v) => v.map((x) => '$' + count.format(x)) },
      { scale: 'units', side: 1, label: 'units', grid: { show: false } },
    ],
    series: [
      { label: 'hour (UTC)' },
      { label: 'revenue', scale: 'usd', stroke: PALETTE.revenue, width: 2, value: (u, v) => v == null ? '–' : money.format(v) },
      { label: 'units', scale: 'units', stroke: PALETTE.units, fill: PALETTE.units + '66', paths: uPlot.paths.bars({ size: [0.6, 40] }) },
    ],
  }, data, el);
}

function drawTop(id, rows) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  rows.forEach((r, i) => {
    const tr = document.createElement('tr');
    tr.dataset.product = r.product_id;
    cell(tr, String(i + 1));
    cell(tr, r.name, 'name');
    cell(tr, r.brand, 'name narrow-hide');
    cell(tr, count.format(r.units));
    cell(tr, cents(r.revenue_cents));
    body.appendChild(tr);
  });
}

function drawBars(id, panel) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  const max = Math.max(1, ...panel.bars.map((b) => b.revenue_cents));
  for (const b of panel.bars) {
    const tr = document.createElement('tr');
    cell(tr, b.label, 'name');
    const bar = document.createElement('span');
    bar.style.width = (100 * b.revenue_cents / max).toFixed(1) + '%';
    cell(tr, '', 'bar').appendChild(bar);
    cell(tr, cents(b.revenue_cents));
    cell(tr, count.format(b.units));
    cell(tr, count.format(b.orders), 'narrow-hide');
    body.appendChild(tr);
  }
  $(id + '-note').hidden = !panel.all_products;
  $(id + '-empty').hidden = panel.bars.length > 0;
}

async function drawPanels() {
  const r = await fetch('/api/panels?' + params());
  if (!r.ok) throw new Error('panels: ' + r.status);
  const d = await r.json();
  fillSelect($('category'), d.categories);
  fillSelect($('brand'), d.brands);
  const h = d.hourly;
  $('span').textContent = h.hours.length ? `${h.from.slice(0, 16).replace('T', ' ')} – ${h.to.slice(0, 16).replace('T', ' ')} UTC` : '';
  $('revenue').textContent = cents(h.revenue_cents);
  $('units').textContent = count.format(h.units);
  $('orders').textContent = count.format(h.orders);
  const body = $('hourly').tBodies[0];
  body.replaceChildren();
  for (const x of h.hours.slice().reverse()) {
    const tr = document.createElement('tr');
    if (x.open) tr.className = 'open';
    cell(tr, x.start.slice(0, 16).replace('T', ' ') + (x.open ? ' (open)' : ''));
    cell(tr, cents(x.revenue_cents));
    cell(tr, count.format(x.units));
    cell(tr, count.format(x.orders));
    body.appendChild(tr);
  }
  $('hourly-empty').hidden = h.orders > 0;
  drawChart(h);
  drawTop('top-units', d.top.by_units);
  drawTop('top-revenue', d.top.by_revenue);
  $('top-empty').hidden = d.top.by_units.length > 0;
  drawBars('countries', d.countries);
  drawBars('cards', d.cards);
  drawAlerts(d);
  document.body.dataset.generation = d.generation;
  document.body.dataset.refreshed = d.refreshed;
  document.body.dataset.draws = Number(document.body.dataset.draws || 0) + 1;
  document.body.dataset.query = params();
}

const utc = (t) => t.slice(0, 16).replace('T', ' ');

function alertRows(id, rows) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  for (const a of rows) {
    const tr = document.createElement('tr');
    tr.dataset.product = a.product_id;
    cell(tr, a.name, 'name');
    cell(tr, a.brand, 'name narrow-hide');
    cell(tr, count.format(a.updated_stock));
    cell(tr, count.format(a.threshold));
    cell(tr, utc(a.at));
    body.appendChild(tr);
  }
}

function drawAlerts(d) {
  const a = d.alerts;
  alertRows('alerts-open', a.open);
  alertRows('alerts-recovered', a.recoveries);
  const empty = $('alerts-empty');
  let why = '';
  if (!d.alerts_on) why = 'low-stock alerts are off: add "alerts" to stream.features';
  else if (!a.loaded) why = a.reachable ? 'reading low_stock_alerts…' : 'cannot reach the broker: alerts not read yet';
  else if (!a.reachable) why = 'cannot reach the broker: alerts as last read';
  else if (a.open.length === 0) why = 'no open alerts';
  if (a.undecodable) why += ` (${count.format(a.undecodable)} messages did not decode)`;
  empty.textContent = why;
  empty.hidden = why === '';
  $('recovered-empty').hidden = a.recoveries.length > 0 || !d.alerts_on;
}

let forecastChart = null;
function drawForecastChart(f) {
  const el = $('forecast-chart');
  const xs = f.days.map((x) => Date.parse(x.date + 'T00:00:00Z') / 1000);
  const data = [xs, f.days.map((x) => x.actual), f.days.map((x) => x.predicted)];
  const width = Math.max(280, el.clientWidth);
  if (typeof uPlot === 'undefined') return;
  if (forecastChart) { forecastChart.setData(data); forecastChart.setSize({ width, height: 260 }); return; }
  forecastChart = new uPlot({
    width, height: 260,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
    scales: { x: { time: true } },
    axes: [{}, { label: 'units per day' }],
    series: [
      { label: 'day (UTC)' },
      { label: 'actual', stroke: PALETTE.revenue, width: 2, points: { show: true } },
      { label: 'forecast', stroke: '#d55e00', width: 2, dash: [6, 4], points: { show: true } },
    ],
  }, data, el);
}

function fillProducts(sel, products, chosen) {
  sel.replaceChildren();
  for (const [id, name] of products) {
    const o = document.createElement('option');
    o.value = String(id); o.textContent = `${name} (#${id})`;
    sel.appendChild(o);
  }
  if (chosen != null) sel.value = String(chosen);
}

async function drawForecast() {
  const p = new URLSearchParams(params());
  const sel = $('forecast-product');
  if (sel.value) p.set('product', sel.value);
  const r = await fetch('/api/forecast?' + p.toString());
  if (!r.ok) throw new Error('forecast: ' + r.status);
  const f = (await r.json()).forecast;
  const body = $('forecast').tBodies[0];
  body.replaceChildren();
  $('forecast-empty').hidden = f != null && f.product_id != null;
  if (!f || f.product_id == null) {
    $('forecast-sum').textContent = f ? 'no forecast for the products of this filter' : '';
    fillProducts(sel, [], null);
    document.body.dataset.forecast = 'none';
    return;
  }
  fillProducts(sel, f.products, f.product_id);
  const err = f.mae == null ? 'no closed day to compare yet'
    : `MAE ${f.mae.toFixed(2)} units over ${f.compared_days} days` + (f.wape == null ? '' : `, WAPE ${(100 * f.wape).toFixed(1)} %`);
  $('forecast-sum').textContent = `run of ${f.run_date}, model ${f.model} (${f.model_version}): ${err}`;
  for (const x of f.days.slice().reverse()) {
    const tr = document.createElement('tr');
    if (x.open) tr.className = 'open';
    cell(tr, x.date + (x.open ? ' (open)' : ''));
    cell(tr, x.actual == null ? '–' : count.format(x.actual));
    cell(tr, x.predicted == null ? '–' : x.predicted.toFixed(1));
    body.appendChild(tr);
  }
  drawForecastChart(f);
  document.body.dataset.forecast = String(f.product_id);
}

async function drawRecs() {
  const p = new URLSearchParams(params());
  const c = $('customer').value.trim();
  if (c) p.set('customer', c);
  const r = await fetch('/api/recommendations?' + p.toString());
  const body = $('recs').tBodies[0];
  if (r.status === 400) {
    body.replaceChildren();
    $('recs-sum').textContent = 'a customer id is a whole number';
    document.body.dataset.recs = 'invalid:' + c;
    return;
  }
  if (!r.ok) throw new Error('recommendations: ' + r.status);
  const d = (await r.json()).recommendations;
  body.replaceChildren();
  $('recs-empty').hidden = d != null;
  if (!d) { $('recs-sum').textContent = ''; document.body.dataset.recs = 'none'; return; }
  const who = d.customer_id == null ? 'cold-start list (for customers without history)'
    : d.known ? `customer ${d.customer_id}` : `customer ${d.customer_id} is not in this run: the cold-start list`;
  const hidden = d.filtered_out ? `, ${d.filtered_out} hidden by the filter` : '';
  $('recs-sum').textContent = `${who}, run of ${d.run_date}${hidden}`;
  for (const x of d.items) {
    const tr = document.createElement('tr');
    tr.dataset.product = x.product_id;
    cell(tr, String(x.rank));
    cell(tr, x.name, 'name');
    cell(tr, x.brand, 'name narrow-hide');
    cell(tr, x.score.toFixed(3));
    cell(tr, x.source, 'name');
    body.appendChild(tr);
  }
  document.body.dataset.recs = c || 'cold';
}

const fmtRate = (x) => x == null ? '–' : count.format(Math.round(x));

async function drawHealth() {
  const r = await fetch('/api/health');
  if (!r.ok) throw new Error('health: ' + r.status);
  const d = (await r.json()).health;
  const body = $('health').tBodies[0];
  body.replaceChildren();
  for (const p of d.partitions) {
    const tr = document.createElement('tr');
    cell(tr, String(p.partition));
    cell(tr, fmtRate(p.events_per_s));
    cell(tr, p.lag == null ? '–' : count.format(p.lag));
    cell(tr, count.format(p.consumed));
    cell(tr, count.format(p.late));
    cell(tr, count.format(p.dead_lettered));
    cell(tr, p.watermark ? p.watermark.slice(0, 19).replace('T', ' ') : '–');
    cell(tr, p.watermark_delay_s == null ? '–' : `${count.format(Math.round(p.watermark_delay_s))} s`);
    cell(tr, `${count.format(Math.round(p.checkpoint_age_s))} s ago`);
    body.appendChild(tr);
  }
  $('health-sum').textContent = d.partitions.length
    ? `${count.format(d.consumed)} consumed, ${count.format(d.late)} late, ${count.format(d.dead_lettered)} dead-lettered`
    : '';
  const s = $('status');
  if (d.stale && d.last_checkpoint) {
    s.textContent = 'stale since ' + new Date(d.last_checkpoint).toISOString().slice(11, 16) + ' UTC';
    s.className = 'stale';
  } else {
    s.textContent = d.partitions.length ? 'live' : 'no checkpoints yet: start `jobs stream`';
    s.className = '';
  }
}

async function redraw() {
  try {
    await Promise.all([drawPanels(), drawHealth(), drawForecast(), drawRecs()]);
  } catch (e) {
    $('status').textContent = 'cannot reach the server: ' + e.message;
  }
}

for (const id of ['range', 'category', 'brand']) $(id).addEventListener('change', redraw);
$('forecast-product').addEventListener('change', () => drawForecast().catch((e) => { $('status').textContent = e.message; }));
$('recs-form').addEventListener('submit', (e) => { e.preventDefault(); drawRecs().catch((x) => { $('status').textContent = x.message; }); });
$('forecast-form').addEventListener('submit', (e) => e.preventDefault());
window.addEventListener('resize', () => {
  if (chart) chart.setSize({ width: Math.max(280, $('chart').clientWidth), height: 300 });
  if (forecastChart) forecastChart.setSize({ width: Math.max(280, $('forecast-chart').clientWidth), height: 260 });
});
const events = new EventSource('/api/events');
events.addEventListener('update', redraw);
events.onerror = () => { $('status').textContent = 'reconnecting…'; };
setInterval(() => drawHealth().catch((e) => { $('status').textContent = 'cannot reach the server: ' + e.message; }), 15000);
redraw();
