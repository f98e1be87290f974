// Eight tabs of one browser on one room share ONE stream: one tab leads and
// holds the EventSource, the others get its events over a BroadcastChannel.
// Without sharing, the seventh tab would hang behind the browser's limit of
// six connections per host. Closing the leader hands the stream over.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  bodies, launch, live, onlineIn, openPage, postHttp, startServer, subscribers, until,
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

const role = (page) => page.evaluate(() => document.documentElement.dataset.role);

async function eightTabs(room, { withoutLocks = false } = {}) {
  const context = await browser.newContext();
  if (withoutLocks) {
    // What a page on plain http from a LAN address sees: Web Locks exist
    // only in secure contexts, BroadcastChannel everywhere.
    await context.addInitScript(() => { delete Navigator.prototype.locks; });
  }
  await context.addInitScript(() => localStorage.setItem('smolchat.name', 'tabby'));
  const pages = [];
  for (let i = 0; i < 8; i++) pages.push(await openPage(context, `${server.url}/#${room}`));
  for (const page of pages) await live(page);
  if (withoutLocks) assert.equal(await pages[0].evaluate(() => 'locks' in navigator), false);
  return { context, pages };
}

async function sharedStream(room, options) {
  const { context, pages } = await eightTabs(room, options);
  // One stream for the eight tabs, as the server counts them.
  await until(async () => (await onlineIn(server, room)) === 1, `one subscriber in ${room}`);
  await until(async () => (await subscribers(server)) === 1, 'smolchat_subscribers 1');
  const roles = await Promise.all(pages.map(role));
  assert.equal(roles.filter((r) => r === 'leader').length, 1, roles.join(' '));
  assert.equal(roles.filter((r) => r === 'follower').length, 7, roles.join(' '));
  await pages[7].locator('#people li', { hasText: 'tabby' }).waitFor();

  await postHttp(server, room, { user: 'ext', text: 'to every tab' });
  for (const page of pages) await waitForMessage(page, 'to every tab');

  // A tab that speaks is heard by all: posting does not need the stream.
  await pages[5].locator('#text').fill('from tab 6');
  await pages[5].locator('#text').press('Enter');
  for (const page of pages) await waitForMessage(page, 'from tab 6');

  // Close the leader: another tab takes over, still one stream.
  const leader = pages[roles.indexOf('leader')];
  await leader.close();
  const rest = pages.filter((p) => p !== leader);
  await until(async () => (await Promise.all(rest.map(role))).includes('leader'), 'a new leader');
  for (const page of rest) await live(page);
  await until(async () => (await onlineIn(server, room)) === 1, `one subscriber in ${room} after handover`);

  await postHttp(server, room, { user: 'ext', text: 'after the handover' });
  for (const page of rest) {
    await waitForMessage(page, 'after the handover');
    assert.deepEqual(await bodies(page), ['to every tab', 'from tab 6', 'after the handover']);
    assert.deepEqual(page.errors, []);
  }
  const newRoles = await Promise.all(rest.map(role));
  assert.equal(newRoles.filter((r) => r === 'leader').length, 1, newRoles.join(' '));
  await context.close();
}

test('eight tabs share one stream (Web Locks), and the leader hands over', async () => {
  await sharedStream('tabs');
});

test('eight tabs share one stream without Web Locks (plain http on a LAN)', async () => {
  await sharedStream('lan', { withoutLocks: true });
});

test('a tab that opens later gets the history from the leader', async () => {
  const context = await browser.newContext();
  const first = await openPage(context, `${server.url}/#late`);
  await live(first);
  await postHttp(server, 'late', { user: 'ext', text: 'early bird' });
  await waitForMessage(first, 'early bird');
  const later = await openPage(context, `${server.url}/#late`);
  await live(later);
  await waitForMessage(later, 'early bird');
  assert.equal(await role(later), 'follower');
  assert.equal(await onlineIn(server, 'late'), 1);
  assert.equal(await subscribers(server), 1);
  await context.close();
});
