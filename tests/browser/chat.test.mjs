// Chatting: two people both ways, history on reload, markup stays text,
// code renders as code, the room in the URL, scrolling, the composer keys,
// and the screenshots for the README.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  ROOT, bodies, collectGarbage, launch, listen, live, onlineIn, openPage, postHttp, send, setName, startServer,
  until, waitForMessage,
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

test('two browser contexts chat both ways, with presence', async () => {
  const ana = await openPage(await browser.newContext(), `${server.url}/#both`);
  const bob = await openPage(await browser.newContext(), `${server.url}/#both`);
  await setName(ana, 'ana');
  await setName(bob, 'bob');
  await live(ana);
  await live(bob);

  await send(ana, 'hi bob');
  await waitForMessage(bob, 'hi bob');
  await send(bob, 'hi ana');
  await waitForMessage(ana, 'hi ana');
  // Each page shows its own message from its own stream too.
  await waitForMessage(bob, 'hi ana');
  assert.deepEqual(await bodies(ana), ['hi bob', 'hi ana']);
  assert.deepEqual(await bodies(bob), ['hi bob', 'hi ana']);

  // Own messages are marked as such, the other person's are not.
  const mine = (page) => page.$$eval('#messages li.msg', (els) => els.map((e) => e.classList.contains('mine')));
  assert.deepEqual(await mine(ana), [true, false]);
  assert.deepEqual(await mine(bob), [false, true]);
  // Each message shows who and a local time.
  const meta = await ana.$eval('#messages li.msg', (li) => ({
    who: li.querySelector('.who').firstChild.textContent,
    time: li.querySelector('time').textContent,
    datetime: li.querySelector('time').dateTime,
  }));
  assert.equal(meta.who, 'ana');
  assert.match(meta.time, /\d/);
  assert.ok(!Number.isNaN(Date.parse(meta.datetime)));

  // Who is online: both names, on both pages.
  await ana.locator('#people li', { hasText: 'bob' }).waitFor();
  await bob.locator('#people li', { hasText: 'ana' }).waitFor();
  assert.equal(await onlineIn(server, 'both'), 2);
  await bob.context().close();
  await ana.locator('#people li', { hasText: 'bob' }).waitFor({ state: 'detached' });
  assert.deepEqual(ana.errors, []);
  await ana.context().close();
});

test('a reload shows the history, the name and the room again', async () => {
  const context = await browser.newContext();
  const page = await openPage(context, `${server.url}/#reload`);
  await setName(page, 'cleo');
  await live(page);
  await send(page, 'first');
  await waitForMessage(page, 'first');
  await send(page, 'second');
  await waitForMessage(page, 'second');

  await page.reload();
  await live(page);
  await waitForMessage(page, 'second');
  assert.deepEqual(await bodies(page), ['first', 'second']);
  assert.equal(await page.locator('#me-name').textContent(), 'cleo');
  assert.equal(await page.locator('#room-title').textContent(), '#reload');
  assert.equal(new URL(page.url()).hash, '#reload');
  await context.close();
});

test('regression: a rename showed every message of the room twice', async () => {
  // The new name opens a new stream, which replays the room into the list
  // that already shows it.
  const context = await browser.newContext();
  const page = await openPage(context, `${server.url}/#rename`);
  await setName(page, 'dora');
  await live(page);
  await postHttp(server, 'rename', { user: 'eve', text: 'one' });
  await send(page, 'two');
  await waitForMessage(page, 'two');
  await page.locator('#rename').click();
  await setName(page, 'dora2');
  await page.locator('#people li', { hasText: 'dora2' }).waitFor({ state: 'attached' });
  await postHttp(server, 'rename', { user: 'eve', text: 'three' });
  await waitForMessage(page, 'three');
  assert.deepEqual(await bodies(page), ['one', 'two', 'three']);
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('markup in a message is shown as text and never runs', async () => {
  const evil = '<img src=x onerror=alert(1)>';
  const context = await browser.newContext();
  const sender = await openPage(context, `${server.url}/#xss`);
  const reader = await openPage(await browser.newContext(), `${server.url}/#xss`);
  await setName(sender, '<b>mallory</b>');
  await live(sender);
  await live(reader);
  await send(sender, evil);
  await waitForMessage(reader, evil);
  await waitForMessage(sender, evil);
  for (const page of [sender, reader]) {
    assert.equal(await page.locator('#messages img').count(), 0);
    assert.equal(await page.locator('#messages b').count(), 0);
    assert.equal(await page.locator('#messages .who').first().evaluate((e) => e.firstChild.textContent), '<b>mallory</b>');
    assert.deepEqual(page.dialogs, []);
    assert.deepEqual(page.errors, []);
  }
  await context.close();
  await reader.context().close();
});

test('direction overrides and stacked accents stay inside their message', async () => {
  const page = await openPage(await browser.newContext(), `${server.url}/#bidi`);
  await live(page);
  // The server's text policy (docs/security.md): overrides are kept, the
  // page isolates them; stacked accents beyond 8 on a letter are dropped;
  // a lone CR is a line break; NUL and invisible name characters refused.
  const rlo = '\u202Egnp.exe and more';
  const zalgo = `z${'\u0301'.repeat(40)}!`;
  assert.equal((await postHttp(server, 'bidi', { user: 'ana', text: rlo })).status, 201);
  assert.equal((await postHttp(server, 'bidi', { user: 'ana', text: zalgo })).status, 201);
  assert.equal((await postHttp(server, 'bidi', { user: 'ana', text: 'one\rtwo' })).status, 201);
  assert.equal((await postHttp(server, 'bidi', { user: 'ana', text: 'after' })).status, 201);
  const nul = await postHttp(server, 'bidi', { user: 'ana', text: 'a\u0000b' });
  assert.deepEqual([nul.status, nul.json.error], [400, 'text contains control characters']);
  const spoof = await postHttp(server, 'bidi', { user: 'ana\u200B', text: 'hi' });
  assert.equal(spoof.status, 400);
  await waitForMessage(page, 'after');
  const shown = await page.$$eval('#messages li.msg .body', (els) => els.map((e) => ({
    text: e.textContent,
    dir: e.dir,
    bidi: getComputedStyle(e).unicodeBidi,
  })));
  assert.deepEqual(shown.map((m) => m.text), [rlo, `z${'\u0301'.repeat(8)}!`, 'one\ntwo', 'after']);
  for (const m of shown) assert.deepEqual([m.dir, m.bidi], ['auto', 'isolate']);
  // The message after the override reads left to right, as typed.
  const after = page.locator('#messages li.msg .body', { hasText: 'after' });
  assert.equal(await after.evaluate((e) => getComputedStyle(e).direction), 'ltr');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('code spans render as <code> and <pre><code>', async () => {
  const context = await browser.newContext();
  const page = await openPage(context, `${server.url}/#code`);
  await live(page);

  // The renderer on its own, fed a message the code transform would make.
  const html = await page.evaluate(async () => {
    const { renderBody } = await import('/render.js');
    const body = renderBody({
      text: 'see `x + 1`\n```rust\nfn main() {}\n```',
      spans: [
        { text: 'see ' },
        { code: 'x + 1' },
        { text: ' and <i>this</i>\n' },
        { block: 'fn main() {\n    println!("<b>hi</b>");\n}\n', lang: 'rust' },
        { block: 'plain' },
      ],
    });
    return {
      inline: [...body.querySelectorAll(':scope > code')].map((c) => c.textContent),
      blocks: [...body.querySelectorAll(':scope > pre > code')].map((c) => c.textContent),
      lang: body.querySelector('pre').dataset.lang,
      codeClass: body.querySelector('pre code').className,
      italics: body.querySelectorAll('i, b').length,
      text: body.textContent,
    };
  });
  assert.deepEqual(html.inline, ['x + 1']);
  assert.deepEqual(html.blocks, ['fn main() {\n    println!("<b>hi</b>");\n}', 'plain']);
  assert.equal(html.lang, 'rust');
  assert.equal(html.codeClass, 'language-rust');
  assert.equal(html.italics, 0);
  assert.match(html.text, /and <i>this<\/i>/);

  // Without spans the text is the body, and URLs become links.
  const plain = await page.evaluate(async () => {
    const { renderBody } = await import('/render.js');
    const body = renderBody({ text: 'docs at https://example.org/a_b. <script>' });
    return { links: [...body.querySelectorAll('a')].map((a) => a.href), text: body.textContent };
  });
  assert.deepEqual(plain.links, ['https://example.org/a_b']);
  assert.equal(plain.text, 'docs at https://example.org/a_b. <script>');

  // Through the server: with the code transform, the message carries spans.
  const text = 'run `cargo test` then\n```sh\nls -l\n```';
  const res = await postHttp(server, 'code', { user: 'dev', text });
  assert.equal(res.status, 201);
  await page.locator('#messages li.msg').waitFor();
  assert.ok(Array.isArray(res.json.spans), 'the code transform sends spans');
  await page.locator('#messages li.msg .body > code', { hasText: 'cargo test' }).waitFor();
  await page.locator('#messages li.msg .body > pre > code', { hasText: 'ls -l' }).waitFor();
  await context.close();
});

test('the URL hash picks the room, and the room picker changes it', async () => {
  await postHttp(server, 'garden', { user: 'gus', text: 'tomatoes are in' });
  const context = await browser.newContext();
  const page = await openPage(context, `${server.url}/`);
  await live(page);
  assert.equal(new URL(page.url()).hash, '#lobby');
  // The picker lists rooms from GET /rooms.
  await page.locator('#rooms a', { hasText: '#garden' }).waitFor();

  await page.locator('#room-input').fill('garden');
  await page.locator('#room-input').press('Enter');
  await page.waitForURL(/#garden$/);
  await waitForMessage(page, 'tomatoes are in');
  assert.equal(await page.locator('#room-title').textContent(), '#garden');

  await page.locator('#room-input').fill('not a room!');
  await page.locator('#room-input').press('Enter');
  await page.locator('#room-error', { hasText: 'not a room name' }).waitFor();
  assert.equal(new URL(page.url()).hash, '#garden');

  await page.goBack();
  await page.waitForURL(/#lobby$/);
  await page.locator('#room-title', { hasText: '#lobby' }).waitFor();
  await context.close();
});

test('auto-scroll stops while reading older messages, with a jump to new ones', async () => {
  const context = await browser.newContext({ viewport: { width: 800, height: 500 } });
  const page = await openPage(context, `${server.url}/#scroll`);
  await live(page);
  for (let i = 1; i <= 30; i++) await postHttp(server, 'scroll', { user: 'feed', text: `line ${i}` });
  await waitForMessage(page, 'line 30');
  const atBottom = () => page.$eval('#scroller', (s) => s.scrollHeight - s.scrollTop - s.clientHeight < 48);
  await until(atBottom, 'the list to follow new messages');

  await page.$eval('#scroller', (s) => { s.scrollTop = 0; });
  await until(async () => !(await atBottom()), 'scrolled up');
  await postHttp(server, 'scroll', { user: 'feed', text: 'line 31' });
  await waitForMessage(page, 'line 31');
  await page.locator('#jump', { hasText: '1 new message' }).waitFor();
  assert.equal(await page.$eval('#scroller', (s) => s.scrollTop), 0);

  await page.locator('#jump').click();
  await until(atBottom, 'the jump to reach the bottom');
  await page.locator('#jump').waitFor({ state: 'hidden' });
  await context.close();
});

test('Enter sends, Shift+Enter adds a line, and sending shows progress', async () => {
  const context = await browser.newContext();
  const page = await openPage(context, `${server.url}/#keys`);
  await setName(page, 'kim');
  await live(page);
  const box = page.locator('#text');
  await box.focus();
  await page.keyboard.type('one');
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('two');
  assert.equal(await box.inputValue(), 'one\ntwo');
  // The button says "Sending…" while the post is in flight: hold the
  // request until we have seen that. It is held in the page, by its own
  // fetch: a CDP route (page.route) once let it through on a loaded CI run.
  await page.evaluate(() => {
    const fetchNow = window.fetch;
    const held = new Promise((r) => { window.releasePosts = r; });
    window.fetch = async (url, init) => {
      if (init?.method === 'POST') await held;
      return fetchNow(url, init);
    };
  });
  await page.keyboard.press('Enter');
  await page.locator('#send-button', { hasText: 'Sending' }).waitFor();
  assert.equal(await page.locator('#send').getAttribute('aria-busy'), 'true');
  // A second message typed and sent while the first is in flight is sent
  // after it, not dropped (a loaded CI run once lost one that way).
  assert.equal(await box.inputValue(), 'one\ntwo');
  await box.fill('three');
  await page.keyboard.press('Enter');
  await page.evaluate(() => window.releasePosts());
  await waitForMessage(page, 'three');
  assert.deepEqual(await bodies(page), ['one\ntwo', 'three']);
  await page.locator('#send-button', { hasText: /^Send$/ }).waitFor();
  assert.equal(await box.inputValue(), '');
  await context.close();
});

test('screenshots: a phone at 360x740 and a desktop', async () => {
  // A server of its own, so the pictures show a tidy set of rooms.
  const demo = await startServer(['--rate', '0']);
  const listeners = new AbortController();
  try {
    const room = 'pi';
    const say = (user, text) => postHttp(demo, room, { user, text });
    await postHttp(demo, 'lobby', { user: 'cleo', text: 'morning all' });
    await postHttp(demo, 'kitchen', { user: 'bob', text: 'who took the last oat milk?' });
    // bob and cleo are online too, listening like any client would.
    for (const user of ['bob', 'cleo']) {
      const res = await listen(demo, room, `?user=${user}`, listeners.signal);
      assert.equal(res.status, 200);
    }
    // Their streams stay open through a garbage collection.
    collectGarbage();
    // The pictures in docs/ are rewritten only when asked
    // (SMOLCHAT_SCREENSHOTS=1, see scripts/screenshots.sh); otherwise they
    // go to a temporary folder, so a test run leaves the work tree as it was.
    const shots = process.env.SMOLCHAT_SCREENSHOTS === '1'
      ? join(ROOT, 'docs')
      : mkdtempSync(join(tmpdir(), 'smolchat-shots-'));
    mkdirSync(shots, { recursive: true });
    const context = await browser.newContext({ viewport: { width: 360, height: 740 }, deviceScaleFactor: 1 });
    // The name is known before the page opens its stream, as for a returning user.
    await context.addInitScript(() => localStorage.setItem('smolchat.name', 'ana'));
    const page = await openPage(context, `${demo.url}/#${room}`);
    await page.locator('#me-name', { hasText: 'ana' }).waitFor();
    await live(page);
    await say('bob', 'Is the Pi back up? The kitchen display went blank.');
    await send(page, 'Yes, restarted it a minute ago 🙂');
    await waitForMessage(page, 'Yes, restarted it a minute ago 🙂');
    await say('bob', 'Thanks! What did you run?');
    await send(page, 'Just `sudo systemctl restart smolchat` and then\n```sh\ncurl -N localhost:8080/events\n```\nto watch the lobby.');
    await say('cleo', 'Nice. Lunch at 12:30?');
    await waitForMessage(page, 'Nice. Lunch at 12:30?');
    await page.locator('#online-count', { hasText: '3 online' }).waitFor();
    await page.locator('#text').fill('Sounds good');
    // Nothing sticks out sideways on a 360 px phone.
    assert.equal(await page.evaluate(() => document.documentElement.scrollWidth), 360);
    assert.equal(await page.$eval('#scroller', (s) => s.scrollWidth <= s.clientWidth), true);
    await page.screenshot({ path: join(shots, 'screenshot-phone.png') });

    // On the phone the rooms and people live in a drawer behind the menu button.
    assert.equal(await page.locator('#side').isVisible(), false);
    await page.locator('#menu').click();
    await page.locator('#people li', { hasText: 'cleo' }).waitFor();
    assert.equal(await page.locator('#menu').getAttribute('aria-expanded'), 'true');
    await page.keyboard.press('Escape');
    await page.locator('#side').waitFor({ state: 'hidden' });

    await page.setViewportSize({ width: 1280, height: 800 });
    await page.locator('#rooms a', { hasText: '#kitchen' }).waitFor();
    await page.screenshot({ path: join(shots, 'screenshot-desktop.png') });
    for (const f of ['screenshot-phone.png', 'screenshot-desktop.png']) {
      assert.ok(statSync(join(shots, f)).size > 10000, `${f} was written`);
    }
    assert.deepEqual(page.errors, []);
    await context.close();
    if (process.env.SMOLCHAT_SCREENSHOTS !== '1') rmSync(shots, { recursive: true });
  } finally {
    listeners.abort();
    await demo.stop();
  }
});

test('the page shows exactly who is online after streams come and go', async () => {
  const room = 'churn';
  const context = await browser.newContext();
  await context.addInitScript(() => localStorage.setItem('smolchat.name', 'ana'));
  const page = await openPage(context, `${server.url}/#${room}`);
  await live(page);
  // Other clients open and close streams: named, unnamed, one name twice.
  const open = [];
  const connect = async (user) => {
    const stop = new AbortController();
    const q = user ? `?user=${user}` : '';
    const res = await listen(server, room, q, stop.signal);
    assert.equal(res.status, 200);
    open.push({ user, stop });
  };
  const names = ['bob', 'cy', null, 'bob', null, 'dan', 'cy', null];
  for (let i = 0; i < 40; i++) {
    if (open.length < 3 || i % 3 !== 2) await connect(names[i % names.length]);
    else open.splice((i * 7) % open.length, 1)[0].stop.abort();
  }
  collectGarbage();
  // What the server says, once it has seen every close, is the truth.
  const users = [...new Set(['ana', ...open.map((o) => o.user).filter(Boolean)])].sort();
  await until(async () => {
    const rooms = await (await fetch(`${server.url}/rooms`)).json();
    const r = rooms.find((x) => x.room === room);
    return r.online === open.length + 1 && JSON.stringify(r.users) === JSON.stringify(users);
  }, 'GET /rooms to count the open streams');
  // The page converges to the same count and list.
  const shown = () => page.evaluate(() => ({
    count: document.getElementById('online-count').textContent,
    people: [...document.querySelectorAll('#people li:not(.unnamed)')].map((li) => li.firstChild.textContent),
    unnamed: document.querySelector('#people li.unnamed')?.textContent ?? '',
  }));
  const unnamed = open.length + 1 - users.length;
  const want = {
    count: `${open.length + 1} online`,
    people: users,
    unnamed: unnamed === 0 ? '' : unnamed === 1 ? '1 more without a name' : `${unnamed} more without a name`,
  };
  await until(async () => JSON.stringify(await shown()) === JSON.stringify(want), `the page to show ${JSON.stringify(want)}`);
  for (const o of open) o.stop.abort();
  await until(async () => (await shown()).count === '1 online', 'the page to show only itself');
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('follows the system colour scheme, and the list is announced politely', async () => {
  const background = async (colorScheme) => {
    const context = await browser.newContext({ colorScheme });
    const page = await openPage(context, `${server.url}/#scheme`);
    await live(page);
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const list = await page.$eval('#announce', (log) => [log.getAttribute('role'), log.getAttribute('aria-live')]);
    const labelled = await page.$$eval('input, textarea', (els) => els.every((e) => e.labels.length > 0));
    await context.close();
    return { bg, list, labelled };
  };
  const light = await background('light');
  const dark = await background('dark');
  assert.notEqual(light.bg, dark.bg);
  assert.deepEqual(light.list, ['log', 'polite']);
  assert.equal(light.labelled, true);
});
