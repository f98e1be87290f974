// The page for everyone: axe-core finds nothing serious on any screen (a
// desktop and a 360 px phone; a first visit, messages, the drawer, the
// invite dialog, a form error), the keyboard reaches everything with a
// visible focus and Escape closes what is open, a screen reader hears each
// new message once, and "Invite a phone" shows the room's URL and its QR
// code under the page's strict CSP.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  audit, bodies, launch, live, openPage, postHttp, send, setName, startProxy, startServer, until,
  waitForMessage,
} from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer(['--rate', '0']);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const SCREENS = [
  { name: 'desktop', viewport: { width: 1280, height: 800 } },
  { name: 'phone', viewport: { width: 360, height: 740 } },
];

/**
 * `audit`, and of the lesser rules only axe's skip-link heuristic: it
 * takes the room links (`#kitchen`, the first links of the page) for skip
 * links whose target is missing (moderate; they are not skip links).
 */
async function spotless(page, what) {
  const lesser = (await audit(page, what)).filter((v) => v.id !== 'skip-link');
  assert.deepEqual(lesser, [], what);
}

/** Opens the invite dialog and waits for its QR code to be drawn. */
async function openInvite(page) {
  await page.locator('#invite-open').click();
  await page.locator('#invite[open]').waitFor();
  await page.waitForFunction(() => {
    const img = document.getElementById('invite-qr');
    return img.getAttribute('src') && img.complete && img.naturalWidth > 0;
  });
}

for (const { name, viewport } of SCREENS) {
  test(`axe-core finds nothing serious on any screen (${name})`, async () => {
    const room = `audit-${name}`;
    const context = await browser.newContext({ viewport });
    const page = await openPage(context, `${server.url}/#${room}`);
    await live(page);
    await spotless(page, `${name}: a first visit (the name form, no messages)`);

    await setName(page, 'ana');
    await live(page);
    await send(page, 'hello `code` there');
    await waitForMessage(page, 'hello code there');
    await postHttp(server, room, { user: 'bob', text: 'hi @ana, a block:\n```\nls -l\n```' });
    await postHttp(server, room, { user: 'bob', text: 'and a follow-up' });
    await waitForMessage(page, 'and a follow-up');
    await page.locator('#people li', { hasText: 'ana' }).waitFor({ state: 'attached' });
    await spotless(page, `${name}: messages (own, others', code, a mention, a follow-up)`);

    if (name === 'phone') {
      await page.locator('#menu').click();
      await page.locator('#side.open').waitFor();
      await spotless(page, `${name}: the drawer open`);
    }
    // A form error: a room name the page refuses.
    await page.locator('#room-input').fill('no spaces please');
    await page.locator('#room-input').press('Enter');
    await page.locator('#room-error', { hasText: 'is not a room name' }).waitFor();
    await spotless(page, `${name}: a form error`);

    await openInvite(page);
    await spotless(page, `${name}: the invite dialog`);
    await page.keyboard.press('Escape');
    await page.locator('#invite').waitFor({ state: 'hidden' });
    if (name === 'phone') {
      await page.keyboard.press('Escape');
      await page.locator('#side').waitFor({ state: 'hidden' });
    }

    // Renaming: the name form again, with a value.
    await page.locator('#rename').click();
    await page.locator('#name-form').waitFor();
    await spotless(page, `${name}: changing the name`);
    assert.deepEqual(page.errors, []);
    await context.close();
  });
}

/** The id (or tag) of the focused element, whether it shows, and its focus ring. */
function focused(page) {
  return page.evaluate(() => {
    const el = document.activeElement;
    const style = getComputedStyle(el);
    return {
      id: el.id || el.tagName.toLowerCase(),
      visible: el.checkVisibility({ visibilityProperty: true }),
      ring: el.matches(':focus-visible') && style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0,
    };
  });
}

/** Presses Tab until `id` has the focus; returns the stops on the way. */
async function tabTo(page, id, most = 40) {
  const stops = [];
  for (let i = 0; i < most; i++) {
    await page.keyboard.press('Tab');
    const f = await focused(page);
    stops.push(f);
    if (f.id === id) return stops;
  }
  assert.fail(`Tab never reached #${id}: ${stops.map((s) => s.id).join(' ')}`);
}

for (const { name, viewport } of SCREENS) {
  test(`the keyboard reaches everything, with a visible focus (${name})`, async () => {
    const room = `keys-${name}`;
    const context = await browser.newContext({ viewport });
    await context.addInitScript(() => localStorage.setItem('smolchat.name', 'ana'));
    const page = await openPage(context, `${server.url}/#${room}`);
    await live(page);
    await postHttp(server, room, { user: 'bob', text: 'type back' });
    await waitForMessage(page, 'type back');

    // From the top of the page: every stop shows and shows its focus, the
    // composer and the send button come in that order.
    await page.evaluate(() => {
      // Tab's starting point: the top of the document.
      document.body.tabIndex = -1;
      document.body.focus();
      document.body.removeAttribute('tabindex');
    });
    const stops = await tabTo(page, 'send-button');
    const ids = stops.map((s) => s.id);
    assert.ok(ids.indexOf('messages') < ids.indexOf('text'), ids.join(' '));
    assert.equal(ids.at(-2), 'text', ids.join(' '));
    for (const s of stops) {
      assert.ok(s.visible, `#${s.id} takes the focus while hidden: ${ids.join(' ')}`);
      assert.ok(s.ring, `#${s.id} has no visible focus ring: ${ids.join(' ')}`);
    }
    if (name === 'phone') {
      // The closed drawer is out of the way.
      assert.ok(!ids.includes('room-input'), ids.join(' '));
      assert.equal(ids[0], 'menu', ids.join(' '));
    } else {
      assert.ok(ids.includes('room-input') && ids.includes('invite-open'), ids.join(' '));
    }

    // Type, Tab to Send, press it.
    await page.locator('#text').focus();
    await page.keyboard.type('sent with keys');
    await page.keyboard.press('Tab');
    assert.equal((await focused(page)).id, 'send-button');
    await page.keyboard.press('Enter');
    await waitForMessage(page, 'sent with keys');

    if (name === 'phone') {
      // The drawer: opened from the menu button, Escape closes it and gives
      // the focus back.
      await page.locator('#menu').focus();
      await page.keyboard.press('Enter');
      await page.locator('#side.open').waitFor();
      assert.equal(await page.locator('#menu').getAttribute('aria-expanded'), 'true');
      assert.equal((await focused(page)).id, 'room-input');
      await tabTo(page, 'invite-open');
      // The dialog over the drawer: the first Escape closes the dialog only.
      await page.keyboard.press('Enter');
      await page.locator('#invite[open]').waitFor();
      assert.equal((await focused(page)).id, 'invite-close');
      await page.keyboard.press('Escape');
      await page.locator('#invite').waitFor({ state: 'hidden' });
      assert.equal((await focused(page)).id, 'invite-open');
      assert.equal(await page.locator('#side').evaluate((s) => s.classList.contains('open')), true);
      await page.keyboard.press('Escape');
      await page.locator('#side').waitFor({ state: 'hidden' });
      assert.equal(await page.locator('#menu').getAttribute('aria-expanded'), 'false');
      assert.equal((await focused(page)).id, 'menu');
    } else {
      // The dialog: its Close button has the focus, Tab stays inside
      // (modal), Escape closes it and the focus comes back.
      await page.locator('#invite-open').focus();
      await page.keyboard.press('Enter');
      await page.locator('#invite[open]').waitFor();
      assert.equal((await focused(page)).id, 'invite-close');
      for (let i = 0; i < 4; i++) {
        await page.keyboard.press('Tab');
        const inside = await page.evaluate(() => document.getElementById('invite').contains(document.activeElement));
        // Chromium lets Tab leave a modal dialog only for the browser's own UI.
        if (!inside) assert.equal((await focused(page)).id, 'body');
      }
      await page.keyboard.press('Escape');
      await page.locator('#invite').waitFor({ state: 'hidden' });
      assert.equal((await focused(page)).id, 'invite-open');
    }
    assert.deepEqual(page.errors, []);
    await context.close();
  });
}

test('a screen reader hears each new message of others once: not the history, not a replay', async () => {
  const room = 'heard';
  for (const text of ['old 1', 'old 2', 'old 3']) {
    assert.equal((await postHttp(server, room, { user: 'bob', text })).status, 201);
  }
  // Through a proxy that can cut the network.
  const proxy = await startProxy(server);
  const context = await browser.newContext();
  await context.addInitScript(() => {
    localStorage.setItem('smolchat.name', 'ana');
    // Everything ever added to the announcer, in order.
    window.said = [];
    addEventListener('DOMContentLoaded', () => {
      new MutationObserver((records) => {
        for (const r of records) for (const n of r.addedNodes) window.said.push(n.textContent);
      }).observe(document.getElementById('announce'), { childList: true });
    });
  });
  const page = await openPage(context, `${proxy.url}/#${room}`);
  const said = () => page.evaluate(() => window.said);
  const settled = () => page.locator('#announce[data-since]').waitFor({ state: 'attached' });
  await live(page);
  await waitForMessage(page, 'old 3');
  await settled();
  assert.equal(await page.locator('#announce').getAttribute('data-since'), '3');

  // What the browser gives a screen reader: a polite log of what is new,
  // named after the room, and the list of messages, not in any live
  // region (browsed, not read out).
  const cdp = await context.newCDPSession(page);
  const { nodes } = await cdp.send('Accessibility.getFullAXTree');
  const prop = (node, key) => node.properties?.find((p) => p.name === key)?.value.value;
  const log = nodes.find((n) => n.role?.value === 'log');
  assert.equal(log?.name?.value, `New messages in #${room}`);
  assert.equal(prop(log, 'live'), 'polite');
  assert.equal(prop(log, 'relevant'), 'additions');
  const list = nodes.find((n) => n.role?.value === 'list' && n.name?.value === `Messages in #${room}`);
  assert.ok(list, 'the list is named after the room');
  assert.equal(prop(list, 'live'), undefined);
  const item = nodes.find((n) => n.role?.value === 'listitem' && list.childIds.includes(n.nodeId));
  assert.equal(prop(item, 'live'), undefined);
  await cdp.detach();

  await postHttp(server, room, { user: 'bob', text: 'new 1' });
  await until(async () => (await said()).length === 1, 'the first new message to be said');
  assert.deepEqual(await said(), ['bob: new 1']);

  // Our own message is not said back to us.
  await send(page, 'mine');
  await waitForMessage(page, 'mine');
  const shown = ['old 1', 'old 2', 'old 3', 'new 1', 'mine'];
  assert.deepEqual(await bodies(page), shown);

  // A rename opens a new stream that replays the room: nothing is said again.
  await page.locator('#rename').click();
  await page.locator('#name').fill('ana2');
  await page.locator('#name').press('Enter');
  await page.locator('#me-name', { hasText: 'ana2' }).waitFor();
  await settled();
  // The new stream is live once the server counts the new name.
  await page.locator('#people li', { hasText: 'ana2' }).waitFor({ state: 'attached' });
  await live(page);
  assert.deepEqual(await bodies(page), shown);

  // A network cut: the reconnect's catch-up says only what was missed.
  proxy.down();
  await page.locator('#state[data-state="reconnecting"]').waitFor();
  await postHttp(server, room, { user: 'bob', text: 'while away' });
  proxy.up();
  await live(page);
  await waitForMessage(page, 'while away');
  await postHttp(server, room, { user: 'cy', text: 'new 2' });
  await waitForMessage(page, 'new 2');
  await until(async () => (await said()).length >= 3, 'three messages said');
  assert.deepEqual(await said(), ['bob: new 1', 'bob: while away', 'cy: new 2']);
  // The announcer keeps only what was just said.
  assert.ok(await page.locator('#announce p').count() <= 3);
  assert.deepEqual(page.errors, []);
  await context.close();
  await proxy.close();
});

test('Invite a phone shows the room\'s URL and its QR code, under the strict CSP', async () => {
  const context = await browser.newContext({ viewport: { width: 360, height: 740 } });
  const page = await openPage(context, `${server.url}/#kitchen`);
  await live(page);
  await page.locator('#menu').click();
  await page.locator('#side.open').waitFor();
  await openInvite(page);
  // The test server listens on 127.0.0.1 only, so no network address
  // stands in for it (tests/invite.rs covers that).
  const url = `${server.url}/#kitchen`;
  await page.locator('#invite-url', { hasText: url }).waitFor();
  assert.equal(await page.locator('#invite-url').getAttribute('href'), url);
  assert.equal(await page.locator('#invite-title').textContent(), 'Invite a phone to #kitchen');
  const img = await page.locator('#invite-qr').evaluate((i) => ({
    src: i.src, alt: i.alt, width: i.getBoundingClientRect().width,
  }));
  assert.equal(img.src, `${server.url}/rooms/kitchen/invite.svg`);
  assert.equal(img.alt, `QR code of ${url}`);
  // Big enough to scan from a phone held at arm's length, inside 360 px.
  assert.ok(img.width >= 200 && img.width <= 360, `${img.width}`);
  const svg = await fetch(img.src);
  assert.equal(svg.headers.get('content-type'), 'image/svg+xml');
  assert.match(svg.headers.get('content-security-policy'), /default-src 'none'/);
  assert.match(await svg.text(), /^<svg [^>]*><rect [^>]*fill="#fff"\/><path fill="#000" d="M/);

  // Closed with its button; then another room: the dialog follows it.
  await page.locator('#invite-close').click();
  await page.locator('#invite').waitFor({ state: 'hidden' });
  await page.evaluate(() => { location.hash = 'garden'; });
  await live(page);
  await openInvite(page);
  await page.locator('#invite-url', { hasText: `${server.url}/#garden` }).waitFor();
  assert.equal(
    await page.locator('#invite-qr').evaluate((i) => i.src),
    `${server.url}/rooms/garden/invite.svg`,
  );
  // A click on the backdrop closes it too.
  await page.mouse.click(5, 5);
  await page.locator('#invite').waitFor({ state: 'hidden' });
  // No CSP report, no script error.
  assert.deepEqual(page.errors, []);
  await context.close();
});
