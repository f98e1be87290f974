// The server stops and starts again on the same port: the page says
// "reconnecting", then "live", and shows the messages posted meanwhile
// exactly once, although the restarted in-memory server counts ids from 1
// again and so reuses ids the page has already seen.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  audit, bodies, launch, live, openPage, postHttp, send, setName, startProxy, startServer, waitForMessage,
} from './harness.mjs';

let browser;
const servers = [];

before(async () => {
  browser = await launch();
});

after(async () => {
  await browser?.close();
  for (const s of servers) await s.stop();
});

test('stop and restart on the same port: reconnecting, live, missed messages once', async () => {
  const first = await startServer(['--rate', '0']);
  servers.push(first);
  const context = await browser.newContext();
  const page = await openPage(context, `${first.url}/#ops`);
  await setName(page, 'ana');
  await live(page);
  await send(page, 'before 1');
  await waitForMessage(page, 'before 1');
  await send(page, 'before 2');
  await waitForMessage(page, 'before 2');
  // A second tab follows the first one's stream through the restart.
  const tab = await openPage(context, `${first.url}/#ops`);
  await live(tab);
  await waitForMessage(tab, 'before 2');

  // Every state the connection shows, in order.
  await page.evaluate(() => {
    window.seenStates = [];
    new MutationObserver(() => window.seenStates.push(document.getElementById('state').dataset.state))
      .observe(document.getElementById('state'), { attributes: true, attributeFilter: ['data-state'] });
  });

  assert.deepEqual(await first.stop(), { code: 0, signal: null });
  await page.locator('#state[data-state="reconnecting"]').waitFor();

  const second = await startServer(['--rate', '0'], { addr: `127.0.0.1:${first.port}` });
  servers.push(second);
  // Posted while the page is still waiting to reconnect (its retry is 1-5 s).
  // The new server numbers them 1, 2, 3: ids the page has seen before.
  const missed = ['meanwhile 1', 'meanwhile 2', 'meanwhile 3'];
  for (const text of missed) {
    assert.equal((await postHttp(second, 'ops', { user: 'curl', text })).status, 201);
  }
  await live(page, 20000);
  for (const text of missed) await waitForMessage(page, text);

  // One more, live, as a marker: everything before it has been delivered.
  await postHttp(second, 'ops', { user: 'curl', text: 'after' });
  await waitForMessage(page, 'after');
  await send(page, 'and from the page');
  await waitForMessage(page, 'and from the page');

  const all = ['before 1', 'before 2', ...missed, 'after', 'and from the page'];
  assert.deepEqual(await bodies(page), all);
  await waitForMessage(tab, 'and from the page');
  assert.deepEqual(await bodies(tab), all);
  const states = await page.evaluate(() => window.seenStates);
  assert.equal(states[0], 'reconnecting', states.join(' '));
  assert.equal(states.at(-1), 'live', states.join(' '));
  await page.locator('#messages .notice-line', { hasText: 'server restarted' }).waitFor();
  await audit(page, 'a restart notice in the list');
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('resume after a network cut: Last-Event-ID brings what was missed, once', async () => {
  const server = await startServer(['--rate', '0']);
  servers.push(server);
  const proxy = await startProxy(server);
  const context = await browser.newContext();
  const page = await openPage(context, `${proxy.url}/#resume`);
  await live(page);
  await postHttp(server, 'resume', { user: 'a', text: 'one' });
  await waitForMessage(page, 'one');

  proxy.down();
  await page.locator('#state[data-state="reconnecting"]').waitFor();
  await audit(page, 'reconnecting');
  await postHttp(server, 'resume', { user: 'a', text: 'two' });
  await postHttp(server, 'resume', { user: 'a', text: 'three' });
  proxy.up();
  await live(page, 20000);
  await waitForMessage(page, 'three');
  await postHttp(server, 'resume', { user: 'a', text: 'four' });
  await waitForMessage(page, 'four');
  assert.deepEqual(await bodies(page), ['one', 'two', 'three', 'four']);
  // The browser resumed the stream itself, after message 1.
  assert.ok(
    proxy.heads.some((h) => /^GET \/rooms\/resume\/events/.test(h) && /^last-event-id: 1$/im.test(h)),
    proxy.heads.filter((h) => h.includes('/events')).join('\n---\n'),
  );
  assert.equal(await page.locator('#messages .notice-line').count(), 0);
  await context.close();
  await proxy.close();
});

test('a gap in history is shown as "some older messages are no longer available"', async () => {
  const server = await startServer(['--rate', '0', '--history', '2']);
  servers.push(server);
  const proxy = await startProxy(server);
  const context = await browser.newContext();
  const page = await openPage(context, `${proxy.url}/#short`);
  await live(page);
  await postHttp(server, 'short', { user: 'a', text: 'kept' });
  await waitForMessage(page, 'kept');

  proxy.down();
  await page.locator('#state[data-state="reconnecting"]').waitFor();
  for (const text of ['lost 1', 'lost 2', 'lost 3', 'held 1', 'held 2']) {
    await postHttp(server, 'short', { user: 'a', text });
  }
  proxy.up();
  await live(page, 20000);
  await waitForMessage(page, 'held 2');
  await page.locator('#messages .notice-line', { hasText: 'Some older messages are no longer available.' }).waitFor();
  assert.deepEqual(await bodies(page), ['kept', 'held 1', 'held 2']);
  // The notice sits where the hole is.
  const order = await page.$$eval('#messages li.msg .body, #messages .notice-line', (els) => els.map((e) => e.textContent));
  assert.deepEqual(order, ['kept', 'Some older messages are no longer available.', 'held 1', 'held 2']);
  await context.close();
  await proxy.close();
});
