// Shared by the browser tests: start the real smolchat binary on port 0,
// launch Debian's Chromium through playwright-core, and wait for states
// with deadlines (never a fixed sleep).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import { chromium } from 'playwright-core';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = process.env.SMOLCHAT_BIN || join(ROOT, 'target', 'debug', 'smolchat');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
/**
 * A command line put in front of BIN, split on whitespace: CI sets it to
 * an emulator (e.g. `qemu-aarch64-static`) when BIN is built for another
 * architecture, as for the Rust tests (tests/support/mod.rs).
 */
export const WRAPPER = (process.env.SMOLCHAT_TEST_WRAPPER || '').split(/\s+/).filter(Boolean);

/**
 * Default deadline for one awaited state, in ms. Generous: it only matters
 * when something is wrong, and CI runs this suite against a server under
 * qemu on a loaded 2-core machine. Every page's own waits (locators,
 * waitForFunction) use it too, see openPage.
 */
export const DEADLINE = 45000;

/**
 * Starts smolchat with `--addr ADDR --threads 2` and `args`, and resolves
 * once it printed its ready line. `server.url` is `http://127.0.0.1:PORT`.
 */
export async function startServer(args = [], { addr = '127.0.0.1:0' } = {}) {
  if (!existsSync(BIN)) throw new Error(`no smolchat binary at ${BIN}: run cargo build, or set SMOLCHAT_BIN`);
  // History in memory unless the test names a database.
  const db = args.includes('--db') ? [] : ['--db', ':memory:'];
  const [cmd, ...pre] = [...WRAPPER, BIN];
  const child = spawn(cmd, [...pre, '--addr', addr, '--threads', '2', ...db, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
  });
  let stderr = '';
  child.stderr.on('data', (b) => { stderr += b; });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`smolchat did not start in time; stderr:\n${stderr}`)), DEADLINE);
    child.stdout.on('data', (b) => {
      out += b;
      const m = /smolchat listening on (https?:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`smolchat exited with ${code} before it was ready; stderr:\n${stderr}`));
    });
  });
  return {
    url,
    port: Number(new URL(url).port),
    stderr: () => stderr,
    exited,
    /** SIGTERM, then resolves with the exit code once the process is gone. */
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const deadline = setTimeout(() => child.kill('SIGKILL'), DEADLINE);
      const result = await exited;
      clearTimeout(deadline);
      return result;
    },
  };
}

/**
 * Runs a smolchat subcommand (`user`, `token`, `access`) under the same
 * wrapper as the server, with `input` on stdin; resolves with its stdout,
 * or rejects with its stderr.
 */
export function runCli(args, input = '') {
  const [cmd, ...pre] = [...WRAPPER, BIN];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, [...pre, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b) => { out += b; });
    child.stderr.on('data', (b) => { err += b; });
    child.stdin.on('error', () => {}); // a command that fails early reads nothing
    child.stdin.end(input);
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`smolchat ${args.join(' ')}: ${err}`))));
  });
}

/**
 * Headless Chromium with the flags CI uses. Every launch gets a fresh
 * temporary profile (playwright passes a new --user-data-dir), and every
 * `newContext()` inside it is isolated like another browser.
 */
export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** A new page that fails the test on any uncaught page error or dialog. */
export async function openPage(context, url) {
  const page = await context.newPage();
  page.setDefaultTimeout(DEADLINE);
  page.errors = [];
  page.dialogs = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) {
      page.errors.push(`console: ${m.text()}`);
    }
  });
  page.on('dialog', (d) => {
    page.dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  if (url) await page.goto(url);
  return page;
}

/** Sets the name through the page, as a person would. */
export async function setName(page, name) {
  await page.locator('#name').fill(name);
  await page.locator('#name').press('Enter');
  await page.locator('#me-name', { hasText: name }).waitFor();
}

/** Types into the box and presses Enter. */
export async function send(page, text) {
  await page.locator('#text').fill(text);
  await page.locator('#text').press('Enter');
}

export function live(page, timeout = DEADLINE) {
  return page.locator('#state[data-state="live"]').waitFor({ timeout });
}

/** The bodies of the messages a page shows, in order. */
export function bodies(page) {
  return page.$$eval('#messages li.msg .body', (els) => els.map((e) => e.textContent));
}

/** Waits until the page shows a message whose body is exactly `text`. */
export function waitForMessage(page, text, timeout = DEADLINE) {
  return page.waitForFunction(
    (t) => [...document.querySelectorAll('#messages li.msg .body')].some((b) => b.textContent === t),
    text,
    { timeout },
  );
}

/** Polls `check` (async, truthy when done) until it passes or the deadline ends. */
export async function until(check, what, timeout = DEADLINE) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** POSTs JSON to a room over HTTP, like curl would. */
export async function postHttp(server, room, body) {
  const res = await fetch(`${server.url}/rooms/${room}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

/**
 * Opens a room's event stream like a curl client would, and keeps reading
 * it until `signal` aborts. The body must be read: Node's fetch cancels an
 * unread body whose Response has been garbage collected, which closes the
 * stream at a moment no test chose (a listener left the room mid-test on a
 * slow machine, where a collection happened to run during a long wait).
 */
export async function listen(server, room, query, signal) {
  const res = await fetch(`${server.url}/rooms/${room}/events${query}`, { signal });
  const reader = res.body.getReader();
  (async () => {
    try {
      while (!(await reader.read()).done);
    } catch {
      // Aborted by the test, or the server went away: the stream is over.
    }
  })();
  return res;
}

/**
 * Runs a full garbage collection now. A test that holds streams open calls
 * it to show they survive one: a collection runs at moments no test picks,
 * more often on a slow machine, and an unread fetch body does not survive it.
 */
export function collectGarbage() {
  v8.setFlagsFromString('--expose-gc');
  vm.runInNewContext('gc')();
}

/** The server's online count for `room` (`GET /rooms`). */
export async function onlineIn(server, room) {
  const rooms = await (await fetch(`${server.url}/rooms`)).json();
  return rooms.find((r) => r.room === room)?.online ?? 0;
}

/** `smolchat_subscribers` from `/metrics`. */
export async function subscribers(server) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  return Number(/^smolchat_subscribers (\d+)/m.exec(text)?.[1]);
}

/**
 * A TCP proxy in front of `server` that can drop every connection and
 * refuse new ones (`down()`) until `up()`: a network cut, as a phone
 * walking out of Wi-Fi sees it. `heads` collects the request heads seen.
 */
export async function startProxy(server) {
  const sockets = new Set();
  const heads = [];
  let isDown = false;
  const proxy = net.createServer((client) => {
    if (isDown) {
      client.destroy();
      return;
    }
    const upstream = net.connect(server.port, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    client.on('data', (b) => heads.push(b.toString('latin1').split('\r\n\r\n')[0]));
    client.pipe(upstream).pipe(client);
    for (const s of [client, upstream]) {
      s.on('error', () => {});
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
  });
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${proxy.address().port}`,
    heads,
    down() {
      isDown = true;
      for (const s of sockets) s.destroy();
    },
    up() {
      isDown = false;
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => proxy.close(resolve));
    },
  };
}

/** axe-core's browser build, injected into pages by `audit`. */
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/**
 * Runs axe-core on the page as it is now and fails on any serious or
 * critical violation, naming each rule and node. Returns the lesser ones
 * (`[{id, impact, nodes}]`) for the caller to look at.
 */
export async function audit(page, what) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      nodes: v.nodes.map((n) => `${n.target.join(' ')}: ${n.failureSummary}`),
    }));
  });
  const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], `axe-core on ${what}:\n${JSON.stringify(bad, null, 2)}`);
  return violations;
}
