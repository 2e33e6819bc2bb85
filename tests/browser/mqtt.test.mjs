// MQTT over WebSocket from a real browser: the `mqtt` package from npm
// (its browser bundle, dist/mqtt.min.js) in headless Chromium, against the
// broker's `GET /mqtt` (see tinymq-bin/tests/e2e/mqtt.rs, which runs this).
//
//   node mqtt.test.mjs --http http://HOST:PORT --run ID [--chromium PATH]
//
// For MQTT 5 and then 3.1.1, the page connects to ws://HOST:PORT/mqtt,
// subscribes to browser/ID/# at QoS 1, publishes browser/ID/hello at QoS 1
// and waits for it to come back, then waits for browser/ID/from-rust: the
// Rust test publishes it over the binary protocol once it has seen the
// page's hello. One line per step on stdout; exit 1 at the first failure.

import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    http: { type: 'string' },
    run: { type: 'string', default: String(process.pid) },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
  },
});
if (!args.http) {
  console.error('usage: node mqtt.test.mjs --http http://HOST:PORT [--run ID] [--chromium PATH]');
  process.exit(2);
}
const base = args.http.replace(/\/$/, '');
const bundle = path.join(path.dirname(fileURLToPath(import.meta.url)), 'node_modules/mqtt/dist/mqtt.min.js');
const WAIT_MS = 10000;

const browser = await chromium.launch({
  executablePath: args.chromium,
  headless: true,
  // Chromium's sandbox needs user namespaces, which root in a container lacks.
  args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
});
let exitCode = 0;
try {
  const page = await browser.newPage();
  page.on('console', (message) => console.log('page: ' + message.text()));
  // Any page of the broker's origin will do; the health check is small.
  await page.goto(base + '/api/v1/health');
  await page.addScriptTag({ path: bundle });
  for (const version of [5, 4]) {
    const topic = `browser/${args.run}/v${version}`;
    const result = await page.evaluate(
      async ({ url, topic, version, waitMs }) => {
        const client = mqtt.connect(url, { protocolVersion: version, clientId: `browser-${topic}`, reconnectPeriod: 0 });
        const messages = [];
        let wake = () => {};
        client.on('message', (t, payload, packet) => {
          messages.push({ topic: t, payload: new TextDecoder().decode(payload), qos: packet.qos });
          wake();
        });
        const next = (wanted) =>
          new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`no ${wanted} within ${waitMs} ms: ${JSON.stringify(messages)}`)), waitMs);
            const check = () => {
              const at = messages.findIndex((m) => m.topic === wanted);
              if (at >= 0) {
                clearTimeout(timer);
                resolve(messages.splice(at, 1)[0]);
              }
            };
            wake = check;
            check();
          });
        await new Promise((resolve, reject) => {
          client.once('connect', resolve);
          client.once('error', reject);
        });
        const granted = await client.subscribeAsync(`${topic}/#`, { qos: 1 });
        await client.publishAsync(`${topic}/hello`, 'from the browser', { qos: 1 });
        const echo = await next(`${topic}/hello`);
        const fromRust = await next(`${topic}/from-rust`);
        await client.endAsync();
        return { granted: granted.map((g) => g.qos), echo, fromRust };
      },
      { url: base.replace(/^http/, 'ws') + '/mqtt', topic, version, waitMs: WAIT_MS },
    );
    const expect = (ok, what) => {
      if (!ok) throw new Error(`MQTT ${version}: ${what}: ${JSON.stringify(result)}`);
    };
    expect(result.granted.join() === '1', 'granted QoS 1');
    expect(result.echo.payload === 'from the browser' && result.echo.qos === 1, 'its own QoS 1 message back');
    expect(result.fromRust.payload === 'from rust', 'the binary publish');
    console.log(`ok mqtt ${version} over websocket: granted ${result.granted}, echo and binary publish received`);
  }
} catch (error) {
  console.log('FAIL ' + (error && error.stack ? error.stack : error));
  exitCode = 1;
} finally {
  await browser.close();
}
process.exit(exitCode);
