// The web UI at `/` in a real headless Chromium, against a running broker.
// It starts no broker: tinymq-bin/tests/e2e/web_ui.rs does, and runs this script
// (`cargo test -p tinymq-bin --test e2e web_ui`). To run it alone:
//
//   npm ci --prefix tests/browser            # once: playwright-core
//   tinymq broker --in-memory &              # 127.0.0.1:1883, HTTP on 127.0.0.1:33334
//   node tests/browser/ui.test.mjs --http http://127.0.0.1:33334 --tcp 127.0.0.1:1883
//
// Options (or the environment variable in brackets):
//   --http URL         the broker's HTTP base URL [TINYMQ_HTTP_URL]
//   --tcp HOST:PORT    its binary-protocol TCP address [TINYMQ_TCP_ADDR]
//   --version V        the version the page must show [TINYMQ_VERSION]; else /api/v1/stats's
//   --run ID           a tag in every topic and payload, so runs never mix [TINYMQ_UI_RUN]
//   --user U --password P   log in (the browser's HTTP Basic prompt, answered), also over TCP
//   --screenshots DIR  where ui-screenshot.png and ui-screenshot-phone.png go (default target/)
//   --chromium PATH    the browser (default /usr/bin/chromium) [CHROMIUM]
//   --bridge STATE     the broker has a bridge, shown as STATE (up or down);
//                      without it, the page must show no bridges
//
// It fails (exit 1, the reason on stderr) on any console error, page error or
// failed request, and on any check below that does not hold in time. Every
// wait is for a condition with a deadline, never a fixed sleep.

import net from 'node:net';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    http: { type: 'string', default: process.env.TINYMQ_HTTP_URL },
    tcp: { type: 'string', default: process.env.TINYMQ_TCP_ADDR },
    version: { type: 'string', default: process.env.TINYMQ_VERSION },
    run: { type: 'string', default: process.env.TINYMQ_UI_RUN || String(process.pid) },
    user: { type: 'string' },
    password: { type: 'string' },
    screenshots: {
      type: 'string',
      default: path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../target'),
    },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
    bridge: { type: 'string' },
  },
});
if (!args.http || !args.tcp) {
  console.error('usage: node ui.test.mjs --http http://HOST:PORT --tcp HOST:PORT [--version V] [--run ID]');
  process.exit(2);
}
const base = args.http.replace(/\/$/, '');
const run = args.run;
// What the page needs to see in time, and what a TCP client must receive.
const LIVE_MS = 2000;
const LOAD_MS = 10000;

function log(line) {
  console.log('ui test: ' + line);
}

// --- a tiny binary-protocol client (PROTOCOL.md) ----------------------------

const FRAME = { CONNECT: 0, CONNACK: 1, PUBLISH: 2, SUBSCRIBE: 3, SUBACK: 4, DISCONNECT: 9 };

// type(1) topic_len(2) topic payload_len(4) payload client_id_len(2) client_id, big-endian.
function encodeFrame(type, topic = '', payload = Buffer.alloc(0), clientId = '') {
  const t = Buffer.from(topic), p = Buffer.from(payload), c = Buffer.from(clientId);
  const out = Buffer.alloc(9 + t.length + p.length + c.length);
  let at = out.writeUInt8(type, 0);
  at = out.writeUInt16BE(t.length, at);
  at += t.copy(out, at);
  at = out.writeUInt32BE(p.length, at);
  at += p.copy(out, at);
  at = out.writeUInt16BE(c.length, at);
  c.copy(out, at);
  return out;
}

// The first whole frame in `buf`, or null while it is incomplete.
function decodeFrame(buf) {
  if (buf.length < 3) return null;
  const t = buf.readUInt16BE(1);
  if (buf.length < 7 + t) return null;
  const p = buf.readUInt32BE(3 + t);
  if (buf.length < 9 + t + p) return null;
  const c = buf.readUInt16BE(7 + t + p);
  const size = 9 + t + p + c;
  if (buf.length < size) return null;
  return {
    size,
    typeByte: buf[0],
    type: buf[0] & 0x1f,
    topic: buf.subarray(3, 3 + t).toString(),
    payload: buf.subarray(7 + t, 7 + t + p).toString(),
    clientId: buf.subarray(9 + t + p, size).toString(),
  };
}

class TcpClient {
  static async connect(address, clientId, credentials) {
    const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
    const client = new TcpClient();
    client.socket = net.connect({ host, port, noDelay: true });
    client.buf = Buffer.alloc(0);
    client.frames = [];
    client.waiters = [];
    client.socket.on('data', (chunk) => {
      client.buf = Buffer.concat([client.buf, chunk]);
      for (let frame; (frame = decodeFrame(client.buf)); ) {
        client.buf = client.buf.subarray(frame.size);
        client.frames.push(frame);
      }
      client.waiters.forEach((wake) => wake());
    });
    client.socket.on('error', (error) => { client.error = error; client.waiters.forEach((wake) => wake()); });
    const auth = credentials ? Buffer.from(credentials.user + '\0' + credentials.password) : Buffer.alloc(0);
    client.socket.write(encodeFrame(FRAME.CONNECT, '', auth, clientId));
    const ack = await client.next((f) => true, LOAD_MS, 'ConnAck');
    if (ack.type !== FRAME.CONNACK) throw new Error(clientId + ': expected ConnAck, got ' + JSON.stringify(ack));
    return client;
  }

  // The first frame `wanted` accepts (frames before it are dropped), within `ms`.
  next(wanted, ms, what) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { done(); reject(new Error('no ' + what + ' within ' + ms + ' ms')); }, ms);
      const done = () => { clearTimeout(timer); this.waiters = this.waiters.filter((w) => w !== check); };
      const check = () => {
        if (this.error) { done(); reject(this.error); return; }
        while (this.frames.length) {
          const frame = this.frames.shift();
          if (wanted(frame)) { done(); resolve(frame); return; }
        }
      };
      this.waiters.push(check);
      check();
    });
  }

  async subscribe(filter) {
    this.socket.write(encodeFrame(FRAME.SUBSCRIBE, filter));
    const ack = await this.next((f) => f.type === FRAME.SUBACK, LOAD_MS, 'SubAck for ' + filter);
    if (ack.payload.length) throw new Error('subscribe ' + filter + ' refused: ' + JSON.stringify(ack));
  }

  publish(topic, payload) {
    this.socket.write(encodeFrame(FRAME.PUBLISH, topic, Buffer.from(payload)));
  }

  close() {
    this.socket.end(encodeFrame(FRAME.DISCONNECT));
  }
}

// --- the browser ------------------------------------------------------------

const credentials = args.user ? { user: args.user, password: args.password ?? '' } : null;
const problems = [];
let closing = false;
const browser = await chromium.launch({
  executablePath: args.chromium,
  headless: true,
  // Chromium's sandbox needs user namespaces, which root in a container lacks.
  args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
});
const clients = [];
let exitCode = 0;
try {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 900 },
    // Answers the broker's WWW-Authenticate challenge on `/` as a person
    // would; the page's own requests then ride on the browser's cache.
    httpCredentials: credentials ? { username: credentials.user, password: credentials.password } : undefined,
  });
  const page = await context.newPage();
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push('console error: ' + message.text());
  });
  page.on('pageerror', (error) => problems.push('page error: ' + error.message));
  page.on('requestfailed', (request) => {
    if (!closing) problems.push('request failed: ' + request.url() + ' ' + request.failure()?.errorText);
  });
  page.on('response', (response) => {
    // With credentials the first `/` is a 401 challenge, answered by the browser.
    const challenge = credentials && response.status() === 401 && new URL(response.url()).pathname === '/';
    if (response.status() >= 400 && !challenge) problems.push('HTTP ' + response.status() + ' for ' + response.url());
  });
  const fail = (text) => { throw new Error(text); };
  const text = (selector) => page.locator(selector).textContent();

  const response = await page.goto(base + '/', { waitUntil: 'load', timeout: LOAD_MS });
  if (response.status() !== 200) fail('GET / answered ' + response.status());
  const contentType = response.headers()['content-type'];
  if (contentType !== 'text/html; charset=utf-8') fail('GET / is ' + contentType);
  if (!/default-src 'self'/.test(response.headers()['content-security-policy'] || '')) {
    fail('GET / has no Content-Security-Policy');
  }

  // Version, uptime, live.
  let version = args.version;
  if (!version) {
    const stats = await page.evaluate(() => fetch('/api/v1/stats').then((r) => r.json()));
    version = stats.version;
  }
  await page.waitForFunction((v) => document.getElementById('version').textContent === 'v' + v, version,
    { timeout: LOAD_MS }).catch(() => fail('the version v' + version + ' is not shown'));
  await page.waitForFunction(() => /^\d+s$|[dhm] /.test(document.getElementById('uptime').textContent),
    null, { timeout: LOAD_MS }).catch(async () => fail('no uptime shown: ' + (await text('#uptime'))));
  await page.locator('#live', { hasText: 'live' }).waitFor({ timeout: LOAD_MS });
  log('shows version v' + version + ', uptime ' + (await text('#uptime')));

  const topics = 'ui-test-' + run;
  const subscriber = await TcpClient.connect(args.tcp, 'ui-sub-' + run, credentials);
  clients.push(subscriber);
  await subscriber.subscribe(topics + '/#');
  const publisher = await TcpClient.connect(args.tcp, 'ui-pub-' + run, credentials);
  clients.push(publisher);

  // The watch pane: a message published over TCP appears within 2 s.
  await page.fill('#watch-filter', topics + '/#');
  await page.click('#watch-button');
  await page.locator('#watch-status', { hasText: 'Watching ' + topics + '/#' }).waitFor({ timeout: LOAD_MS });
  const tcpPayload = 'over tcp <b>' + run + '</b>';
  const published = Date.now();
  publisher.publish(topics + '/tcp', tcpPayload);
  const watched = page.locator('#watch-messages tr', { hasText: tcpPayload });
  await watched.waitFor({ timeout: LIVE_MS })
    .catch(() => fail('the TCP publish did not appear in the watch pane within ' + LIVE_MS + ' ms'));
  const cells = await watched.locator('td').allTextContents();
  if (cells[1] !== topics + '/tcp' || cells[2] !== tcpPayload || cells[3] !== 'ui-pub-' + run) {
    fail('the watched row is ' + JSON.stringify(cells));
  }
  if (await page.locator('#watch-messages b').count()) fail('a payload was inserted as HTML');
  log('a TCP publish showed in the watch pane after ' + (Date.now() - published) + ' ms, as text');
  await subscriber.next((f) => f.type === FRAME.PUBLISH && f.payload === tcpPayload, LIVE_MS, 'the TCP publish');

  // The publish form reaches a TCP subscriber.
  const formPayload = 'from the form ' + run;
  await page.fill('#publish-topic', topics + '/form');
  await page.fill('#publish-message', formPayload);
  await page.click('#publish button[type=submit]');
  await page.locator('#publish-status', { hasText: 'Published to ' + topics + '/form' }).waitFor({ timeout: LOAD_MS })
    .catch(async () => fail('the form says: ' + (await text('#publish-status'))));
  const delivered = await subscriber.next(
    (f) => f.type === FRAME.PUBLISH && f.topic === topics + '/form', LIVE_MS, 'the form\'s publish over TCP');
  if (delivered.payload !== formPayload || delivered.clientId !== 'web-ui') {
    fail('the TCP subscriber got ' + JSON.stringify(delivered));
  }
  await page.locator('#watch-messages tr', { hasText: formPayload }).waitFor({ timeout: LIVE_MS });
  log('the form\'s publish reached the TCP subscriber, from web-ui');

  // A value stored over HTTP shows in the stored-topic list, and the search finds it.
  const retainedTopic = topics + '/kitchen/temperature';
  const retainedValue = '21.5 ' + run;
  const stored = await fetch(base + '/api/v1/publish?topic=' + encodeURIComponent(retainedTopic) + '&retain=1', {
    method: 'POST',
    body: retainedValue,
    headers: credentials
      ? { authorization: 'Basic ' + Buffer.from(credentials.user + ':' + credentials.password).toString('base64') }
      : {},
  });
  if (stored.status !== 204) fail('the retained publish over HTTP answered ' + stored.status);
  const valueRow = page.locator('#values tr', { hasText: retainedTopic });
  await valueRow.waitFor({ timeout: LOAD_MS + LIVE_MS })
    .catch(() => fail('the stored value of ' + retainedTopic + ' is not listed'));
  const valueCells = await valueRow.locator('td').allTextContents();
  if (valueCells[1] !== retainedValue) fail('the stored-topic row is ' + JSON.stringify(valueCells));
  await page.fill('#values-search', 'KITCHEN/temp');
  await valueRow.waitFor({ timeout: LIVE_MS });
  await page.fill('#values-search', 'no such topic ' + run);
  await valueRow.waitFor({ state: 'detached', timeout: LIVE_MS })
    .catch(() => fail('the search did not hide ' + retainedTopic));
  await page.fill('#values-search', '');
  await valueRow.waitFor({ timeout: LIVE_MS });
  log('the value stored over HTTP is listed, and the search finds and hides it');

  // Clients, connections, the chart's figures.
  await page.locator('#clients tr', { hasText: 'ui-sub-' + run }).waitFor({ timeout: LOAD_MS })
    .catch(() => fail('the TCP subscriber is not listed among the clients'));
  const tcpRow = page.locator('#connections tr', { hasText: 'tcp' });
  await page.waitForFunction(() => {
    const row = [...document.querySelectorAll('#connections tr')].find((r) => r.cells[0].textContent === 'tcp');
    return row && Number(row.cells[1].textContent) >= 2;
  }, null, { timeout: LOAD_MS }).catch(async () => fail('tcp connections: ' + (await tcpRow.textContent())));
  await page.waitForFunction(() => Number(document.getElementById('total-in').textContent.replace(/\D/g, '')) >= 3,
    null, { timeout: LOAD_MS }).catch(async () => fail('messages in: ' + (await text('#total-in'))));
  log('lists the TCP clients and connections; ' + (await text('#total-in')) + ' messages in');
  // Each connected binary client holds a session (not persistent here).
  await page.waitForFunction(() => {
    const shown = /^(\d+) \((\d+)\)$/.exec(document.getElementById('sessions').textContent);
    return shown && Number(shown[1]) >= 2 && /^\d+$/.test(document.getElementById('qos1-queued').textContent);
  }, null, { timeout: LOAD_MS }).catch(async () => fail('sessions: ' + (await text('#sessions'))));
  log('shows ' + (await text('#sessions')) + ' sessions (persistent), ' + (await text('#qos1-queued')) + ' QoS 1 queued');

  // Bridges: a card with each one's state, or none at all.
  if (args.bridge) {
    await page.waitForFunction((state) => {
      const row = document.querySelector('#bridges tr');
      return !document.getElementById('bridges-card').hidden && row && row.cells[2].textContent === state;
    }, args.bridge, { timeout: LOAD_MS }).catch(async () => fail('bridge 0 not shown ' + args.bridge + ': '
      + (await page.locator('#bridges-card').innerText())));
    log('bridge 0 is shown ' + args.bridge + ': ' + (await page.locator('#bridges tr').first().innerText()).replace(/\s+/g, ' '));
  } else if (await page.locator('#bridges-card').isVisible()) {
    fail('a bridges card on a broker without bridges');
  } else {
    log('no bridges card on a broker without bridges');
  }

  fs.mkdirSync(args.screenshots, { recursive: true });
  const desktop = path.join(args.screenshots, 'ui-screenshot.png');
  await page.screenshot({ path: desktop, fullPage: true });
  // A phone: everything fits the width, nothing scrolls sideways.
  await page.setViewportSize({ width: 375, height: 812 });
  await page.waitForFunction(() => document.documentElement.scrollWidth <= window.innerWidth, null,
    { timeout: LOAD_MS }).catch(async () => {
    fail('at 375 px the page is ' + (await page.evaluate(() => document.documentElement.scrollWidth)) + ' px wide');
  });
  const phone = path.join(args.screenshots, 'ui-screenshot-phone.png');
  await page.screenshot({ path: phone, fullPage: true });
  log('screenshots: ' + desktop + ', ' + phone);

  if (problems.length) fail(problems.join('\n'));
  closing = true;
  await context.close();
  log('all checks passed');
} catch (error) {
  exitCode = 1;
  console.error('ui test: FAILED: ' + error.message);
  if (problems.length) console.error('ui test: also seen:\n' + problems.join('\n'));
} finally {
  closing = true;
  clients.forEach((client) => client.close());
  await browser.close();
}
process.exit(exitCode);
