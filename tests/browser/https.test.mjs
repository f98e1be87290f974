// The page over HTTPS, in a secure context: it works end to end, the tabs
// elect their leader with Web Locks, a mention of you is highlighted, and a
// desktop notification says so while the tab is hidden; the title counts
// unread messages. The certificate comes from a test CA (tests/browser.rs
// makes it): the browser context ignores HTTPS errors, and the served chain
// is checked against that CA here.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import {
  launch, live, openPage, postHttp, send, setName, startServer, until, waitForMessage,
} from './harness.mjs';

const TLS = process.env.SMOLCHAT_TEST_TLS;
let server;
let browser;

before(async () => {
  assert.ok(TLS, 'SMOLCHAT_TEST_TLS names the test certificates (run through cargo test)');
  server = await startServer([
    '--rate', '0',
    '--tls-cert', join(TLS, 'cert.pem'),
    '--tls-key', join(TLS, 'key.pem'),
  ]);
  assert.match(server.url, /^https:\/\//);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** POSTs over HTTPS, trusting the test CA. */
function postTls(room, body) {
  const ca = readFileSync(join(TLS, 'ca.pem'));
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: server.port, ca, servername: 'localhost' }, () => {
      const json = JSON.stringify(body);
      socket.write(`POST /rooms/${room}/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n`
        + `Content-Length: ${Buffer.byteLength(json)}\r\nConnection: close\r\n\r\n${json}`);
    });
    let out = '';
    socket.on('data', (b) => { out += b; });
    socket.on('end', () => resolve(Number(out.split(' ')[1])));
    socket.on('error', reject);
  });
}

test('the served chain is the test CA\'s, and plain posts over TLS work', async () => {
  const ca = readFileSync(join(TLS, 'ca.pem'));
  const info = await new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: server.port, ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () => {
      resolve({ authorized: s.authorized, alpn: s.alpnProtocol, protocol: s.getProtocol() });
      s.end();
    });
    s.on('error', reject);
  });
  assert.deepEqual(info, { authorized: true, alpn: 'http/1.1', protocol: 'TLSv1.3' });
  assert.equal(await postTls('chain', { user: 'curl', text: 'hello over tls' }), 201);
});

test('over HTTPS: chat, Web Locks, a highlighted mention and a notification while hidden', async () => {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  await context.grantPermissions(['notifications'], { origin: server.url });
  // Record the notifications the page shows (and still show them).
  await context.addInitScript(() => {
    window.shown = [];
    const Real = window.Notification;
    class Recorded extends Real {
      constructor(title, options) {
        super(title, options);
        window.shown.push({ title, body: options?.body });
      }
    }
    window.Notification = Recorded;
    localStorage.setItem('smolchat.name', 'ana');
  });
  const page = await openPage(context, `${server.url}/#secure`);
  await live(page);
  // A secure context: Web Locks exist, and the tab leads through them.
  assert.equal(await page.evaluate(() => window.isSecureContext && 'locks' in navigator), true);
  await until(async () => (await page.evaluate(() => document.documentElement.dataset.role)) === 'leader', 'the leader role');
  const held = await page.evaluate(async () => (await navigator.locks.query()).held.map((l) => l.name));
  assert.ok(held.some((n) => n.startsWith('smolchat:secure')), JSON.stringify(held));

  await send(page, 'ana here, over https');
  await waitForMessage(page, 'ana here, over https');

  // Hidden: messages count in the title, a mention raises a notification.
  await page.evaluate(() => {
    Object.defineProperty(document, 'hidden', { value: true, configurable: true });
    Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  assert.equal(await postTls('secure', { user: 'bob', text: 'lunch, @ana?' }), 201);
  assert.equal(await postTls('secure', { user: 'bob', text: 'no mention here' }), 201);
  await waitForMessage(page, 'no mention here');
  await until(async () => (await page.title()) === '(2) #secure — smolchat', 'the unread count in the title');
  const shown = await page.evaluate(() => window.shown);
  assert.deepEqual(shown, [{ title: 'bob in #secure', body: 'lunch, @ana?' }]);
  // The mention is marked in the message.
  const mention = page.locator('#messages li.msg.mentioned mark.mention');
  assert.equal(await mention.textContent(), '@ana');
  assert.equal(await page.locator('#messages li.msg.mentioned').count(), 1);
  // Back in view: the count goes.
  await page.evaluate(() => {
    Object.defineProperty(document, 'hidden', { value: false, configurable: true });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await until(async () => (await page.title()) === '#secure — smolchat', 'the title without a count');
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('notifications are asked for on a click, never on load', async () => {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  await context.addInitScript(() => {
    window.asked = 0;
    const real = Notification.requestPermission.bind(Notification);
    Notification.requestPermission = () => {
      window.asked++;
      return real();
    };
  });
  const page = await openPage(context, `${server.url}/#ask`);
  await live(page);
  await setName(page, 'cy');
  assert.equal(await page.evaluate(() => window.asked), 0, 'not on load');
  if (await page.locator('#menu').isVisible()) await page.locator('#menu').click(); // the drawer, on a narrow screen
  await page.locator('#notify-button').click();
  assert.equal(await page.evaluate(() => window.asked), 1);
  await context.close();
});
