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
  document.body.dataset.generation = d.generation;
  document.body.dataset.query = params();
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
    await Promise.all([drawPanels(), drawHealth()]);
  } catch (e) {
    $('status').textContent = 'cannot reach the server: ' + e.message;
  }
}

for (const id of ['range', 'category', 'brand']) $(id).addEventListener('change', redraw);
window.addEventListener('resize', () => { if (chart) chart.setSize({ width: Math.max(280, $('chart').clientWidth), height: 300 }); });
const events = new EventSource('/api/events');
events.addEventListener('update', redraw);
events.onerror = () => { $('status').textContent = 'reconnecting…'; };
setInterval(drawHealth, 15000);
redraw();
