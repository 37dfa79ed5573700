// The page: fetches the panels, redraws them when the server says the stream moved.
// Everything from the server is set as text, never as markup.
'use strict';
const $ = (id) => document.getElementById(id);
const money = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' });
const count = new Intl.NumberFormat('en-US');
const cents = (c) => money.format(c / 100);

function cell(row, text) {
  const td = document.createElement('td');
  td.textContent = text;
  row.appendChild(td);
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

async function drawHourly() {
  const r = await fetch('/api/hourly?' + params());
  if (!r.ok) throw new Error('hourly: ' + r.status);
  const d = await r.json();
  fillSelect($('category'), d.categories);
  fillSelect($('brand'), d.brands);
  const h = d.hourly;
  $('span').textContent = h.hours.length ? `${h.from.slice(0, 16)} – ${h.to.slice(0, 16)} UTC` : '';
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
  document.body.dataset.generation = d.generation;
}

async function drawHealth() {
  const r = await fetch('/api/health');
  if (!r.ok) throw new Error('health: ' + r.status);
  const d = (await r.json()).health;
  const body = $('health').tBodies[0];
  body.replaceChildren();
  for (const p of d.partitions) {
    const tr = document.createElement('tr');
    cell(tr, String(p.partition));
    cell(tr, count.format(p.consumed));
    cell(tr, count.format(p.late));
    cell(tr, count.format(p.dead_lettered));
    cell(tr, p.watermark ? p.watermark.slice(0, 19).replace('T', ' ') : '–');
    cell(tr, p.watermark_delay_s == null ? '–' : `${Math.round(p.watermark_delay_s)} s`);
    cell(tr, `${Math.round(p.checkpoint_age_s)} s ago`);
    body.appendChild(tr);
  }
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
    await Promise.all([drawHourly(), drawHealth()]);
  } catch (e) {
    $('status').textContent = 'cannot reach the server: ' + e.message;
  }
}

for (const id of ['range', 'category', 'brand']) $(id).addEventListener('change', redraw);
const events = new EventSource('/api/events');
events.addEventListener('update', redraw);
events.onerror = () => { $('status').textContent = 'reconnecting…'; };
setInterval(drawHealth, 15000);
redraw();
