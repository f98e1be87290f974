// Accounts in the page: signing in and out, a members-only room that asks
// to sign in, guests marked as such, and an admin's delete that reaches
// every context and every tab.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  audit, launch, live, openPage, postHttp, runCli, send, startServer, until, waitForMessage,
} from './harness.mjs';

let server;
let browser;
let dir;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'smolchat-accounts-'));
  const db = join(dir, 'chat.db');
  // The subcommands write the file; the server (started after) reads it.
  await runCli(['user', 'add', 'ana', '--admin', '--password-stdin', '--db', db], 'ana-password\n');
  await runCli(['user', 'add', 'bob', '--password-stdin', '--db', db], 'bob-password\n');
  await runCli(['access', 'everyone', 'team-*', 'deny', '--db', db]);
  await runCli(['access', 'bob', 'team-*', 'rw', '--db', db]);
  server = await startServer(['--rate', '0', '--db', db]);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function signIn(page, user, password) {
  await page.locator('#sign-in-user').fill(user);
  await page.locator('#sign-in-password').fill(password);
  await page.locator('#sign-in button[type=submit]').click();
  await page.locator('#account-name', { hasText: user }).waitFor();
}

test('sign in, chat, an admin deletes a message everywhere, sign out', async () => {
  const bobCtx = await browser.newContext();
  const bob = await openPage(bobCtx, `${server.url}/#deck`);
  const bob2 = await openPage(bobCtx, `${server.url}/#deck`); // a second tab, sharing the stream
  await live(bob);
  // The server has accounts: the page offers to sign in.
  await bob.locator('#name').fill('bobby');
  await bob.locator('#name').press('Enter');
  await bob.locator('#sign-in-open').click();
  await signIn(bob, 'bob', 'bob-password');
  await live(bob);
  await send(bob, 'bob was here');
  await waitForMessage(bob, 'bob was here');
  await waitForMessage(bob2, 'bob was here');

  const ana = await openPage(await browser.newContext(), `${server.url}/#deck`);
  await live(ana);
  await ana.locator('#sign-in-open').click();
  await signIn(ana, 'ana', 'ana-password');
  await waitForMessage(ana, 'bob was here');
  // Someone without an account is marked as a guest.
  assert.equal((await postHttp(server, 'deck', { user: 'zed', text: 'just visiting' })).status, 201);
  await waitForMessage(ana, 'just visiting');
  assert.equal(await ana.locator('#messages li.msg', { hasText: 'just visiting' }).locator('.guest').count(), 1);
  assert.equal(await ana.locator('#messages li.msg', { hasText: 'bob was here' }).locator('.guest').count(), 0);

  // A guest's mark and the delete buttons.
  await audit(ana, 'signed in as an admin, with delete buttons');

  // The admin may delete anyone's message.
  const target = ana.locator('#messages li.msg', { hasText: 'bob was here' });
  await target.hover();
  await target.locator('button.delete').click();
  for (const page of [ana, bob, bob2]) {
    await page.locator('#messages li.msg .body.deleted', { hasText: 'This message was deleted.' }).waitFor();
    assert.equal(await page.locator('#messages li.msg', { hasText: 'bob was here' }).count(), 0);
  }
  // A reload (the replay) shows it deleted too.
  await bob.reload();
  await live(bob);
  await bob.locator('#messages li.msg .body.deleted').waitFor();

  // Signing out: the name box is back, /me says nobody.
  await bob.locator('#sign-out').click();
  await bob.locator('#me').waitFor();
  assert.equal(await bob.locator('#account').isVisible(), false);
  const me = await bob.evaluate(async () => (await (await fetch('/me')).json()).user);
  assert.equal(me, null);
  for (const page of [ana, bob, bob2]) assert.deepEqual(page.errors, []);
  await bobCtx.close();
  await ana.context().close();
});

test('a members-only room asks to sign in, then works', async () => {
  const page = await openPage(await browser.newContext(), `${server.url}/#team-red`);
  await page.locator('#sign-in-why', { hasText: 'is for members' }).waitFor();
  await audit(page, 'the sign-in form (desktop)');
  await page.setViewportSize({ width: 360, height: 740 });
  await audit(page, 'the sign-in form (phone)');
  // A wrong password: the error under the form.
  await page.locator('#sign-in-user').fill('bob');
  await page.locator('#sign-in-password').fill('not it');
  await page.locator('#sign-in button[type=submit]').click();
  await page.locator('#sign-in-error', { hasText: 'Wrong account name or password' }).waitFor();
  await audit(page, 'a refused sign-in (phone)');
  await page.setViewportSize({ width: 1280, height: 720 });
  await signIn(page, 'bob', 'bob-password');
  await live(page);
  await send(page, 'members only');
  await waitForMessage(page, 'members only');
  // An anonymous post there is refused.
  assert.equal((await postHttp(server, 'team-red', { text: 'let me in' })).status, 401);
  await until(async () => (await page.locator('#messages li.msg').count()) === 1, 'only the member message');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
