// A failed send says why, in plain words, and keeps the text: 429 with a
// countdown, 422 with the transform's reason, 503 retried by itself, and a
// server that cannot be reached.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  audit, DEADLINE, launch, live, openPage, postHttp, send, setName, startServer, waitForMessage,
} from './harness.mjs';

let browser;

before(async () => {
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

/**
 * Sends `text` from the page and waits for what became of it: 'refused'
 * when the 429 notice shows, 'posted' when the message shows.
 */
async function sendAndSee(page, text) {
  await page.locator('#text').fill(text);
  await page.locator('#text').press('Enter');
  const outcome = await page.waitForFunction(
    (t) => {
      const notice = document.getElementById('notice').textContent;
      if (/too fast\. You can send again in \d+ s\./.test(notice)) return 'refused';
      const shown = [...document.querySelectorAll('#messages li.msg .body')];
      return shown.some((b) => b.textContent === t) && 'posted';
    },
    text,
    { timeout: DEADLINE },
  );
  return outcome.jsonValue();
}

test('429: says to slow down, counts down from Retry-After, keeps the text', async () => {
  const server = await startServer(['--rate', '1', '--rate-burst', '1']);
  try {
    const context = await browser.newContext();
    const page = await openPage(context, `${server.url}/#rate`);
    await setName(page, 'speedy');
    await live(page);
    await send(page, 'one');
    await waitForMessage(page, 'one');
    // Keep the bucket empty from this side (the page and this test share
    // 127.0.0.1) while the page posts, so that its post is over the rate
    // however slow the machine is. Emptied once, it refills within the
    // second, which a loaded machine can take to get the page's post out;
    // a post that still gets through (a token came between two drains)
    // is seen, and the next one tried.
    let draining = true;
    const drainer = (async () => {
      while (draining) await postHttp(server, 'rate', { user: 'drain', text: 'drain' });
    })();
    let refused;
    try {
      for (let i = 0; !refused; i++) {
        assert.ok(i < 10, 'ten posts in a row got through a rate of one a second');
        const text = `two ${i}`;
        if ((await sendAndSee(page, text)) === 'refused') {
          refused = text;
        } else {
          await page.locator('#send-button', { hasText: /^Send$/ }).waitFor();
        }
      }
    } finally {
      draining = false;
      await drainer;
    }
    assert.equal(await page.locator('#text').inputValue(), refused);
    assert.equal(await page.locator('#send-button').isDisabled(), true);
    await audit(page, 'a 429 countdown, the send button disabled');
    // The countdown ends, the button comes back, and the same text goes
    // out. (A drain that took the token after the page was refused earns
    // it one more countdown: that one is waited out too.)
    for (let i = 0; ; i++) {
      assert.ok(i < 10, 'the refused text never went out');
      await page.locator('#send-button:not([disabled])').waitFor();
      await page.waitForFunction(() => document.getElementById('notice').textContent === '');
      assert.equal(await page.locator('#text').inputValue(), refused);
      if ((await sendAndSee(page, refused)) === 'posted') break;
    }
    // The stream may show the message before the post's answer is read;
    // the box is emptied on that answer, just before the button is back.
    await page.locator('#send-button', { hasText: /^Send$/ }).waitFor();
    assert.equal(await page.locator('#text').inputValue(), '');
    assert.deepEqual(page.errors, []);
    await context.close();
  } finally {
    await server.stop();
  }
});

test('422 from the censor transform: shows the reason, keeps the text', async () => {
  const server = await startServer(['--rate', '0', '--transforms', 'censor', '--censor-mode', 'refuse']);
  try {
    const context = await browser.newContext();
    const page = await openPage(context, `${server.url}/#polite`);
    await live(page);
    await send(page, 'oh shit');
    await page.locator('#notice', { hasText: /^Not sent: .+/ }).waitFor();
    const text = await page.locator('#notice').textContent();
    assert.match(text, /blocked|refus|word/i, text);
    assert.equal(await page.locator('#text').inputValue(), 'oh shit');
    assert.equal(await page.locator('#messages li.msg').count(), 0);
    await context.close();
  } finally {
    await server.stop();
  }
});

// The page's handling of answers the server gives only under load or
// misconfiguration, checked by answering the POST in the browser.
test('answers in plain words: 422 reason, 503 retried, network down', async () => {
  const server = await startServer(['--rate', '0']);
  try {
    const context = await browser.newContext();
    const page = await openPage(context, `${server.url}/#faked`);
    await setName(page, 'tess');
    await live(page);
    const url = '**/rooms/faked/messages';

    await page.route(url, (route) => route.fulfill({
      status: 422,
      contentType: 'application/json',
      body: JSON.stringify({ error: 'censor: message contains a blocked word' }),
    }), { times: 1 });
    await send(page, 'refused words');
    await page.locator('#notice', { hasText: 'Not sent: Message contains a blocked word (censor).' }).waitFor();
    assert.equal(await page.locator('#text').inputValue(), 'refused words');

    // 503: "room is busy, retrying", then the retry goes to the real server.
    await page.route(url, (route) => route.fulfill({
      status: 503,
      headers: { 'retry-after': '1' },
      contentType: 'application/json',
      body: JSON.stringify({ error: 'room is congested: try again' }),
    }), { times: 1 });
    await send(page, 'busy room');
    await page.locator('#notice', { hasText: 'The room is busy, retrying in 1 s' }).waitFor();
    await page.locator('#send-button', { hasText: 'Retrying' }).waitFor();
    await waitForMessage(page, 'busy room');
    await page.locator('#send-button', { hasText: /^Send$/ }).waitFor();
    assert.equal(await page.locator('#text').inputValue(), '');

    // A longer Retry-After counts down second by second.
    await page.route(url, (route) => route.fulfill({
      status: 429,
      headers: { 'retry-after': '3' },
      contentType: 'application/json',
      body: JSON.stringify({ error: 'too many posts; retry in 3 s' }),
    }), { times: 1 });
    await send(page, 'patience');
    for (const n of [3, 2, 1]) {
      await page.locator('#notice', { hasText: `You can send again in ${n} s.` }).waitFor();
    }
    await page.waitForFunction(() => document.getElementById('notice').textContent === '');
    assert.equal(await page.locator('#text').inputValue(), 'patience');

    // The network is down.
    await page.route(url, (route) => route.abort('internetdisconnected'), { times: 1 });
    await send(page, 'into the void');
    await page.locator('#notice', { hasText: 'Could not reach the server' }).waitFor();
    assert.equal(await page.locator('#text').inputValue(), 'into the void');

    // And 413 with the server's own words.
    await page.route(url, (route) => route.fulfill({
      status: 413,
      contentType: 'application/json',
      body: JSON.stringify({ error: 'body too large (limit 4096 bytes)' }),
    }), { times: 1 });
    await page.locator('#text').press('Enter');
    await page.locator('#notice', { hasText: 'Not sent: this message is too long (the limit is 4096 bytes).' }).waitFor();
    assert.deepEqual(page.errors, []);
    await context.close();
  } finally {
    await server.stop();
  }
});

test('a 503 after the post was stored: the retry, with the same Idempotency-Key, posts nothing twice', async () => {
  const server = await startServer(['--rate', '0']);
  try {
    const context = await browser.newContext();
    const page = await openPage(context, `${server.url}/#lost`);
    await setName(page, 'iris');
    await live(page);
    const keys = [];
    page.on('request', (r) => {
      if (r.method() === 'POST' && r.url().endsWith('/rooms/lost/messages')) {
        keys.push(r.headers()['idempotency-key']);
      }
    });
    // The post reaches the server and is stored, but its answer is lost:
    // the page sees a 503 and retries.
    await page.route('**/rooms/lost/messages', async (route) => {
      const stored = await route.fetch();
      assert.equal(stored.status(), 201);
      await route.fulfill({
        status: 503,
        headers: { 'retry-after': '1' },
        contentType: 'application/json',
        body: JSON.stringify({ error: 'room is congested: try again' }),
      });
    }, { times: 1 });
    await send(page, 'lost answer');
    await page.locator('#notice', { hasText: 'The room is busy, retrying in 1 s' }).waitFor();
    await page.locator('#send-button', { hasText: /^Send$/ }).waitFor();
    assert.equal(await page.locator('#text').inputValue(), '');
    await waitForMessage(page, 'lost answer');
    // One message, on the page and on the server; both tries sent one key.
    const history = await (await fetch(`${server.url}/rooms/lost/messages`)).json();
    assert.deepEqual(history.map((m) => m.text), ['lost answer']);
    assert.equal(await page.locator('#messages li.msg .body', { hasText: 'lost answer' }).count(), 1);
    assert.equal(keys.length, 2);
    assert.match(keys[0], /^[0-9a-f]{32}$/);
    assert.equal(keys[0], keys[1]);
    assert.deepEqual(page.errors, []);
    await context.close();
  } finally {
    await server.stop();
  }
});
