// Drives tinymq's Moustique-compatible API the way Moustique's JavaScript
// client (clients/javascript/moustique/index.js) did before December 2025,
// with Node's built-in fetch: values btoa'd then ROT13'd (the legacy order,
// which tinymq detects per request), bodies as URLSearchParams (POST with
// the form Content-Type; SUBSCRIBE and PICKUP without one, so fetch adds
// its own), PUTVAL as PUT, PICKUP replies decoded with atob and dispatched
// to callbacks by filter key, and /server/action/resubscribe answered by
// subscribing again.
//
// Usage: node moustique_client.mjs HOST PORT. Prints `CLIENT <name>` first
// and `ALL OK` last; exits 1 at the first difference from the contract
// (tinymq-bin/tests/e2e/http_moustique.rs runs it against a real broker).
//
// The JS client's btoa/atob work on Latin-1 strings, not UTF-8, so like its
// users this script sends ASCII text only.

import os from 'node:os';

const WAIT_MS = 5000;
const ROT_IN = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const ROT_OUT = 'NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm';

function fail(message) {
    console.log(`FAIL: ${message}`);
    process.exit(1);
}

function check(condition, message) {
    if (!condition) fail(message);
}

const show = (value) => JSON.stringify(value);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Moustique {
    constructor({ ip, port, clientName }) {
        this.baseUrl = `http://${ip}:${port}`;
        this.clientName = `${os.hostname()}-${clientName}-${Math.floor(Math.random() * 100)}-${Date.now()}`;
        this.callbacks = new Map();
        this.systemCallbacks = new Map();
        this.systemCallbacks.set('/server/action/resubscribe', () => this.resubscribe());
        this.resubscribes = 0;
        this.pickedUp = [];
    }

    static enc(text) {
        if (!text) return '';
        const b64 = btoa(text);
        return b64.replace(/[A-Za-z]/g, (c) => ROT_OUT[ROT_IN.indexOf(c)]);
    }

    static dec(encoded) {
        if (!encoded) return '';
        const rotated = encoded.replace(/[A-Za-z]/g, (c) => ROT_OUT[ROT_IN.indexOf(c)]);
        return atob(rotated);
    }

    static getNiceDateTime() {
        return new Date().toISOString().replace('T', ' ').substring(0, 19);
    }

    static async decoded(res, what) {
        const text = await res.text();
        check(res.status === 200, `${what}: status ${res.status}, body ${show(text)}`);
        const contentType = (res.headers.get('content-type') || '').replace(/ /g, '').toLowerCase();
        check(contentType === 'text/plain;charset=utf-8', `${what}: Content-Type ${show(contentType)}`);
        const decrypted = Moustique.dec(text.trim());
        try {
            return decrypted ? JSON.parse(decrypted) : null;
        } catch (err) {
            fail(`${what}: decoded body is not JSON (${err}): ${show(decrypted)}`);
        }
    }

    static async emptyOk(res, what) {
        const text = await res.text();
        check(res.status === 200, `${what}: status ${res.status}, body ${show(text)}`);
        check(text === '', `${what}: empty body expected, got ${show(text)}`);
    }

    async publish(topic, message, updatedTime) {
        const payload = {
            topic: Moustique.enc(topic),
            message: Moustique.enc(message),
            updated_time: Moustique.enc(String(updatedTime ?? Math.floor(Date.now() / 1000))),
            updated_nicedatetime: Moustique.enc(Moustique.getNiceDateTime()),
            from: Moustique.enc(this.clientName),
        };
        const res = await fetch(`${this.baseUrl}/POST`, {
            method: 'POST',
            body: new URLSearchParams(payload),
            headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        });
        await Moustique.emptyOk(res, `POST ${topic}`);
    }

    async putval(topic, message) {
        const payload = {
            valname: Moustique.enc(topic),
            val: Moustique.enc(message),
            updated_time: Moustique.enc(Math.floor(Date.now() / 1000).toString()),
            updated_nicedatetime: Moustique.enc(Moustique.getNiceDateTime()),
            from: Moustique.enc(this.clientName),
        };
        const res = await fetch(`${this.baseUrl}/PUTVAL`, {
            method: 'PUT',
            body: new URLSearchParams(payload),
            headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        });
        await Moustique.emptyOk(res, `PUTVAL ${topic}`);
    }

    async subscribe(topic, callback) {
        const payload = { topic: Moustique.enc(topic), client: Moustique.enc(this.clientName) };
        const res = await fetch(`${this.baseUrl}/SUBSCRIBE`, { method: 'POST', body: new URLSearchParams(payload) });
        await Moustique.emptyOk(res, `SUBSCRIBE ${topic}`);
        if (!this.callbacks.has(topic)) this.callbacks.set(topic, []);
        if (callback && !this.callbacks.get(topic).includes(callback)) this.callbacks.get(topic).push(callback);
    }

    async pickup() {
        const payload = { client: Moustique.enc(this.clientName) };
        const res = await fetch(`${this.baseUrl}/PICKUP`, { method: 'POST', body: new URLSearchParams(payload) });
        const data = await Moustique.decoded(res, 'PICKUP');
        check(data && typeof data === 'object' && !Array.isArray(data), `PICKUP: an object, got ${show(data)}`);
        for (const [topic, messages] of Object.entries(data)) {
            check(Array.isArray(messages), `PICKUP: ${topic} maps to a list: ${show(data)}`);
            for (const msg of messages) {
                this.pickedUp.push([topic, msg]);
                const callbacks = this.callbacks.get(topic) || [];
                for (const cb of callbacks) cb(msg.topic, msg.message, msg.from);
                const sysCb = this.systemCallbacks.get(topic);
                if (sysCb && callbacks.length === 0) await sysCb(msg.topic, msg.message);
            }
        }
        return data;
    }

    async pickupUntil(done, what) {
        const deadline = Date.now() + WAIT_MS;
        while (!done()) {
            check(Date.now() < deadline, `${what}: not within ${WAIT_MS} ms; picked up ${show(this.pickedUp)}`);
            await this.pickup();
            await sleep(20);
        }
    }

    async resubscribe() {
        this.resubscribes += 1;
        for (const topic of this.callbacks.keys()) {
            await this.subscribe(topic);
        }
    }

    async getval(topic) {
        const payload = { topic: Moustique.enc(topic), client: Moustique.enc(this.clientName) };
        return fetch(`${this.baseUrl}/GETVAL`, { method: 'POST', body: new URLSearchParams(payload) });
    }
}

function checkMessage(message, topic, text, from, what) {
    check(message && typeof message === 'object', `${what}: a message object, got ${show(message)}`);
    for (const key of ['topic', 'message', 'from', 'updated_time', 'updated_nicedatetime', 'ip']) {
        check(key in message, `${what}: no ${key} in ${show(message)}`);
    }
    check(message.topic === topic, `${what}: topic ${show(message)}`);
    check(message.message === text, `${what}: message ${show(message.message)} != ${show(text)}`);
    check(message.from === from, `${what}: from ${show(message.from)} != ${show(from)}`);
    check(message.ip === '127.0.0.1', `${what}: ip ${show(message.ip)}`);
    check(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/.test(message.updated_nicedatetime), `${what}: ${show(message)}`);
}

async function main() {
    const [host, port] = process.argv.slice(2);
    if (!host || !port) fail('usage: node moustique_client.mjs HOST PORT');
    const client = new Moustique({ ip: host, port, clientName: 'JsClient' });
    console.log(`CLIENT ${client.clientName}`);

    const temperatures = [];
    const everything = [];
    await client.subscribe('/js/sensors/+/temperature', (t, m, f) => temperatures.push([t, m, f]));
    await client.subscribe('/js/sensors/#', (t, m, f) => everything.push([t, m, f]));
    const stamp = Math.floor(Date.now() / 1000) - 60;
    await client.publish('/js/sensors/hall/temperature', '19.0', stamp);
    await client.publish('/js/sensors/hall/humidity', '55%');
    await client.pickupUntil(() => everything.length >= 2, 'both messages under /js/sensors/#');
    check(
        show(temperatures) === show([['/js/sensors/hall/temperature', '19.0', client.clientName]]),
        `the +/temperature callback got ${show(temperatures)}`,
    );
    check(
        show(everything) ===
            show([
                ['/js/sensors/hall/temperature', '19.0', client.clientName],
                ['/js/sensors/hall/humidity', '55%', client.clientName],
            ]),
        `the # callback got ${show(everything)}`,
    );
    for (const [, msg] of client.pickedUp) {
        if (msg.topic === '/js/sensors/hall/temperature') {
            checkMessage(msg, msg.topic, '19.0', client.clientName, 'PICKUP');
            check(msg.updated_time === stamp, `the client's updated_time is kept: ${show(msg)}`);
        }
    }
    console.log('ok SUBSCRIBE two filters, POST, PICKUP by filter');

    const empty = await client.pickup();
    check(show(empty) === '{}', `an empty PICKUP is {}: ${show(empty)}`);
    console.log('ok empty PICKUP');

    const config = [];
    await client.subscribe('/js/config/#', (t, m, f) => config.push([t, m, f]));
    await client.putval('/js/config/mode', 'eco');
    await client.publish('/js/config/sentinel', 'after the PUTVAL');
    await client.pickupUntil(() => config.length > 0, 'the sentinel');
    check(
        show(config) === show([['/js/config/sentinel', 'after the PUTVAL', client.clientName]]),
        `PUTVAL was published: ${show(config)}`,
    );
    console.log('ok PUTVAL (PUT) does not publish');

    const value = await Moustique.decoded(await client.getval('/js/config/mode'), 'GETVAL');
    checkMessage(value, '/js/config/mode', 'eco', client.clientName, 'GETVAL of a PUTVAL');
    const missing = await client.getval('/js/never/set');
    await missing.text();
    check(missing.status === 404, `GETVAL of a topic without a value: 404, got ${missing.status}`);
    console.log('ok GETVAL');

    const regex = await fetch(`${client.baseUrl}/GETVALSBYREGEX`, {
        method: 'POST',
        body: new URLSearchParams({ topic: Moustique.enc('^/js/sensors/.*/(temp|hum)'), client: Moustique.enc(client.clientName) }),
    });
    const values = await Moustique.decoded(regex, 'GETVALSBYREGEX');
    check(
        show(Object.keys(values).sort()) === show(['/js/sensors/hall/humidity', '/js/sensors/hall/temperature']),
        `GETVALSBYREGEX: ${show(values)}`,
    );
    console.log('ok GETVALSBYREGEX');

    // VERSION has no parameter to tell the order by: tinymq answers it in
    // the current order (ROT13 of the text, then Base64), as the Moustique
    // server does, so this old-generation client reads it that way here.
    const versionRes = await fetch(`${client.baseUrl}/VERSION`);
    check(versionRes.status === 200, `VERSION (GET): status ${versionRes.status}`);
    const rotated = atob((await versionRes.text()).trim());
    const version = JSON.parse(rotated.replace(/[A-Za-z]/g, (c) => ROT_OUT[ROT_IN.indexOf(c)]));
    check(typeof version === 'string' && version.length > 0, `VERSION: a non-empty string, got ${show(version)}`);
    console.log(`ok VERSION ${version}`);

    const forgotten = new Moustique({ ip: host, port, clientName: 'Forgotten' });
    const back = [];
    forgotten.callbacks.set('/js/resub/#', [(t, m, f) => back.push([t, m, f])]);
    const data = await forgotten.pickup();
    const resub = data['/server/action/resubscribe'];
    check(
        show(Object.keys(data)) === show(['/server/action/resubscribe']) &&
            Array.isArray(resub) &&
            resub.length === 1 &&
            resub[0].topic === '/server/action/resubscribe',
        `an unknown client's PICKUP: ${show(data)}`,
    );
    check(forgotten.resubscribes === 1, 'the resubscribe system callback ran');
    await client.publish('/js/resub/x', 'welcome back');
    await forgotten.pickupUntil(() => back.length > 0, 'a message after resubscribing');
    check(show(back) === show([['/js/resub/x', 'welcome back', client.clientName]]), `after resubscribing: ${show(back)}`);
    console.log('ok resubscribe');

    console.log('ALL OK');
}

main().catch((err) => fail(`unexpected error: ${err?.stack ?? err}`));
