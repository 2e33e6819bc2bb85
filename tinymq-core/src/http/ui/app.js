// The tinymq web UI: reads the plain API of this same origin and writes
// what it shows with textContent only, never as HTML.
'use strict';

const STATS_EVERY_MS = 1000;
const LISTS_EVERY_MS = 2000;
const CHART_SAMPLES = 120;
const WATCH_ROWS = 200;
const VALUE_ROWS = 1000;

const $ = (id) => document.getElementById(id);

// One table row from cell texts; `classes` names a class per cell.
function row(cells, classes = []) {
  const tr = document.createElement('tr');
  cells.forEach((text, i) => {
    const td = document.createElement('td');
    td.textContent = text == null ? '' : String(text);
    if (classes[i]) td.className = classes[i];
    tr.append(td);
  });
  return tr;
}

function duration(seconds) {
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds / 3600) % 24;
  const m = Math.floor(seconds / 60) % 60, s = Math.floor(seconds % 60);
  const parts = [];
  if (d) parts.push(d + 'd');
  if (d || h) parts.push(h + 'h');
  if (d || h || m) parts.push(m + 'm');
  parts.push(s + 's');
  return parts.join(' ');
}

function rate(value) {
  return value >= 100 ? Math.round(value).toLocaleString() : value.toFixed(value >= 10 ? 1 : 2);
}

function showAlert(text) {
  const alert = $('alert');
  alert.textContent = text;
  alert.hidden = !text;
}

function setLive(ok, text) {
  const live = $('live');
  live.textContent = text;
  live.className = 'badge ' + (ok ? 'ok' : 'bad');
}

// GET a JSON document; an error names what the broker said.
async function getJson(path) {
  const response = await fetch(path, { cache: 'no-store' });
  if (response.status === 401 || response.status === 403) {
    showAlert('The broker refused ' + path + ' (' + response.status + '): this page needs an admin user. ' +
      'Reload the page to log in again.');
    throw new Error('not authorized');
  }
  if (!response.ok) throw new Error(path + ': ' + response.status + ' ' + (await response.text()));
  return response.json();
}

// Runs `task` now and again `every` ms after each run ends.
function every(ms, task) {
  const run = async () => {
    try {
      await task();
    } catch (error) {
      if (error.message !== 'not authorized') console.warn(error);
    }
    setTimeout(run, ms);
  };
  run();
}

// --- statistics and the chart ----------------------------------------------

const samples = [];
let previous = null;

async function refreshStats() {
  let stats;
  try {
    stats = await getJson('/api/v1/stats');
  } catch (error) {
    setLive(false, 'offline');
    previous = null;
    throw error;
  }
  setLive(true, 'live');
  const now = performance.now();
  $('version').textContent = 'v' + stats.version;
  $('uptime').textContent = duration(stats.uptime_seconds);
  $('total-in').textContent = stats.messages_in.toLocaleString();
  $('total-out').textContent = stats.messages_out.toLocaleString();
  $('subscriptions').textContent = stats.subscription_count.toLocaleString();
  $('value-count').textContent = stats.values.toLocaleString();
  $('http-clients').textContent = stats.clients.subscribers.toLocaleString();
  $('requests').textContent = stats.requests.total.toLocaleString();
  const sessions = stats.sessions || { total: 0, persistent: 0 };
  $('sessions').textContent = `${sessions.total.toLocaleString()} (${sessions.persistent.toLocaleString()})`;
  $('qos1-queued').textContent = ((stats.qos1 || {}).queued || 0).toLocaleString();
  const transports = Object.entries(stats.connections || {}).sort(([a], [b]) => a.localeCompare(b));
  $('connections').replaceChildren(...transports.map(([name, n]) => row([name, n], ['', 'num'])));
  // Present only when the broker has bridges.
  const bridges = stats.bridges || [];
  $('bridges-card').hidden = bridges.length === 0;
  $('bridges').replaceChildren(...bridges.map((b) => row([
    b.kind,
    b.server || (b.servers || []).join(' '),
    b.connected ? 'up' : 'down',
    b.messages_in.toLocaleString(),
    b.messages_out.toLocaleString(),
    b.drops.toLocaleString(),
    b.queued.toLocaleString(),
    b.reconnects.toLocaleString(),
    b.last_error,
  ], ['', '', '', 'num', 'num', 'num', 'num wide-only', 'num wide-only', 'wide-only'])));
  if (previous) {
    const seconds = Math.max((now - previous.at) / 1000, 0.001);
    const rateIn = Math.max(stats.messages_in - previous.in, 0) / seconds;
    const rateOut = Math.max(stats.messages_out - previous.out, 0) / seconds;
    $('rate-in').textContent = rate(rateIn);
    $('rate-out').textContent = rate(rateOut);
    samples.push({ in: rateIn, out: rateOut });
    if (samples.length > CHART_SAMPLES) samples.shift();
    drawChart();
  }
  previous = { at: now, in: stats.messages_in, out: stats.messages_out };
}

function drawChart() {
  const canvas = $('chart');
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const g = canvas.getContext('2d');
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const style = getComputedStyle(document.documentElement);
  const color = (name) => style.getPropertyValue(name).trim();
  const top = Math.max(1, ...samples.map((s) => Math.max(s.in, s.out)));
  const scale = niceCeiling(top);
  const pad = { left: 44, right: 6, top: 8, bottom: 16 };
  const plotW = width - pad.left - pad.right, plotH = height - pad.top - pad.bottom;
  g.font = '11px system-ui, sans-serif';
  g.fillStyle = color('--muted');
  g.strokeStyle = color('--line');
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = pad.top + plotH * (1 - i / 4);
    g.beginPath();
    g.moveTo(pad.left, y);
    g.lineTo(width - pad.right, y);
    g.stroke();
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    g.fillText(rate(scale * i / 4), pad.left - 6, y);
  }
  g.textAlign = 'left';
  g.textBaseline = 'alphabetic';
  g.fillText(CHART_SAMPLES * STATS_EVERY_MS / 1000 + ' s ago', pad.left, height - 2);
  g.textAlign = 'right';
  g.fillText('now', width - pad.right, height - 2);
  const line = (key, stroke) => {
    g.strokeStyle = stroke;
    g.lineWidth = 2;
    g.beginPath();
    samples.forEach((s, i) => {
      const x = pad.left + plotW * (i + CHART_SAMPLES - samples.length) / (CHART_SAMPLES - 1);
      const y = pad.top + plotH * (1 - s[key] / scale);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  };
  line('out', color('--out'));
  line('in', color('--in'));
}

// The smallest of 1, 2, 5 times a power of ten at or above `value`.
function niceCeiling(value) {
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

// --- clients ----------------------------------------------------------------

async function refreshClients() {
  const clients = await getJson('/api/v1/clients');
  $('clients').replaceChildren(...clients.map((c) => row([
    c.Name,
    c.Transport,
    c.LatestPickupNiceDatetime ? c.LatestPickupNiceDatetime + ' UTC' : '',
    c.Queued,
    (c.Subscriptions || []).join(' '),
  ], ['', '', 'time', 'num wide-only', 'wide-only'])));
  $('clients-empty').hidden = clients.length > 0;
}

// --- stored topics ----------------------------------------------------------

let values = [];

async function refreshValues() {
  values = await getJson('/api/v1/values?match=' + encodeURIComponent('#'));
  values.sort((a, b) => a.topic.localeCompare(b.topic));
  renderValues();
}

function renderValues() {
  const needle = $('values-search').value.trim().toLowerCase();
  const shown = needle
    ? values.filter((v) => v.topic.toLowerCase().includes(needle) || v.message.toLowerCase().includes(needle))
    : values;
  $('values').replaceChildren(...shown.slice(0, VALUE_ROWS).map((v) =>
    row([v.topic, v.message, v.from, v.updated_nicedatetime], ['', '', 'wide-only', 'time wide-only'])));
  $('values-shown').textContent = needle ? shown.length + ' of ' + values.length : String(values.length);
}

// --- publish ----------------------------------------------------------------

async function publish(event) {
  event.preventDefault();
  const status = $('publish-status');
  const topic = $('publish-topic').value.trim();
  const retain = $('publish-retain').checked;
  const query = new URLSearchParams({ topic, from: 'web-ui' });
  if (retain) query.set('retain', '1');
  status.className = 'status';
  status.textContent = 'Publishing…';
  try {
    const response = await fetch('/api/v1/publish?' + query, { method: 'POST', body: $('publish-message').value });
    if (!response.ok) throw new Error(response.status + ' ' + (await response.text()));
    status.className = 'status ok';
    status.textContent = 'Published to ' + topic + (retain ? ' and stored.' : '.');
    if (retain) refreshValues().catch(() => {});
  } catch (error) {
    status.className = 'status bad';
    status.textContent = 'Not published: ' + error.message;
  }
}

// --- watch ------------------------------------------------------------------

let stream = null;

function stopWatching(text) {
  if (stream) stream.close();
  stream = null;
  $('watch-button').textContent = 'Watch';
  $('watch-status').textContent = text;
}

function watch(event) {
  event.preventDefault();
  if (stream) {
    stopWatching('Not watching.');
    return;
  }
  const filter = $('watch-filter').value.trim();
  const status = $('watch-status');
  status.textContent = 'Connecting…';
  $('watch-button').textContent = 'Stop';
  $('watch-messages').replaceChildren();
  stream = new EventSource('/api/v1/events?topic=' + encodeURIComponent(filter));
  stream.onopen = () => { status.textContent = 'Watching ' + filter; };
  stream.onerror = () => {
    // EventSource reconnects by itself unless the broker refused the stream.
    if (stream && stream.readyState === EventSource.CLOSED) {
      stopWatching('The broker refused the filter ' + filter + ' (or the stream); not watching.');
    } else {
      status.textContent = 'Reconnecting…';
    }
  };
  stream.onmessage = (message) => {
    const m = JSON.parse(message.data);
    const time = new Date(m.updated_time * 1000).toLocaleTimeString([], { hour12: false });
    const list = $('watch-messages');
    list.prepend(row([time, m.topic, m.message, m.from], ['time', '', '', 'wide-only']));
    while (list.rows.length > WATCH_ROWS) list.lastElementChild.remove();
  };
}

document.addEventListener('DOMContentLoaded', () => {
  $('publish').addEventListener('submit', publish);
  $('watch').addEventListener('submit', watch);
  $('values-search').addEventListener('input', renderValues);
  window.addEventListener('resize', drawChart);
  drawChart();
  every(STATS_EVERY_MS, refreshStats);
  every(LISTS_EVERY_MS, refreshClients);
  every(LISTS_EVERY_MS, refreshValues);
});
