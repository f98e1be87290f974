// The chat page: wires the room (stream.js), the message list (list.js)
// and the composer (send.js) to the document.
//
// The room comes from the URL hash (`/#kitchen`), so a link opens it and
// Back goes to the previous room. The name lives in localStorage, so it is
// asked once per browser; a change in one tab reaches the others through
// the `storage` event.

import { MessageList } from './list.js';
import { mentions } from './render.js';
import { explain, newKey, post } from './send.js';
import { openRoom } from './stream.js';

const $ = (id) => document.getElementById(id);
const NAME_KEY = 'smolchat.name';
const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const STATES = { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…' };

let me = validName(storage('get')) ?? '';
/** The signed-in account (`/me`), or null; then `me` is its name. */
let account = null;
/** What `/me` says of the server: accounts exist, the edit window. */
let server = { accounts: false, editWindow: 300 };
let room = null;
let conn = null;
let unseen = 0; // messages from others while the tab is hidden
let live = false; // the stream is live (so a message is new, not replayed)

const list = new MessageList({
  ol: $('messages'),
  scroller: $('scroller'),
  jump: $('jump'),
  empty: $('empty'),
  isMine: (m) => me !== '' && m.user === me && !(account && m.guest),
  me: () => me,
  canDelete: (m) => account !== null && !m.deleted && (account.admin
    || (m.user === account.user && !m.guest
      && Date.now() - Date.parse(m.time) < server.editWindow * 1000)),
});

// ---- rooms ----

function roomFromHash() {
  let raw = '';
  try {
    raw = decodeURIComponent(location.hash.slice(1));
  } catch {
    // A malformed escape is just a bad name.
  }
  return { raw, room: ROOM_RE.test(raw) ? raw : null };
}

function followHash() {
  const { raw, room: wanted } = roomFromHash();
  if (!wanted) {
    if (raw) roomError(`"${raw}" is not a room name. ${ROOM_RULE}`);
    history.replaceState(null, '', `#${room ?? 'lobby'}`);
    if (room) return;
  }
  enter(wanted ?? 'lobby');
}

const ROOM_RULE = 'Room names use letters, digits, "_", "." and "-" (up to 64).';

function roomError(text) {
  $('room-error').textContent = text;
}

function enter(name) {
  if (name === room) return;
  conn?.close();
  room = name;
  list.clear();
  setState('connecting');
  showPresence({ online: 0, users: [] });
  $('room-title').textContent = `#${room}`;
  $('messages').setAttribute('aria-label', `Messages in #${room}`);
  $('announce').setAttribute('aria-label', `New messages in #${room}`);
  $('invite-room').textContent = `#${room}`;
  heard = 0;
  $('text').placeholder = `Message #${room}`;
  updateTitle();
  markCurrentRoom();
  connect();
  loadRooms();
}

function connect() {
  conn?.close();
  listen();
  conn = openRoom({ room, user: me, onEvent });
}

function onEvent(ev) {
  switch (ev.t) {
    case 'role':
      document.documentElement.dataset.role = ev.role;
      break;
    case 'state':
      setState(ev.state);
      // Only what arrives once live is new; a replay is history.
      if (ev.state === 'live') setTimeout(() => { live = true; }, 0);
      else live = false;
      break;
    case 'presence':
      showPresence(ev);
      break;
    case 'message':
      list.add(ev.m);
      hear(ev.m);
      if (document.hidden && ev.m.user !== me) {
        unseen++;
        updateTitle();
        if (live && mentions(ev.m.text, me)) notify(ev.m);
      }
      break;
    case 'gap':
      list.notice('Some older messages are no longer available.', ev.since + 0.5);
      break;
    case 'restart':
      list.restart('The server restarted. Newer messages continue below.');
      heard = 0; // its ids start over, and all it has is new
      break;
    case 'delete':
      list.deleted(ev.id);
      break;
    case 'denied':
      setState('reconnecting');
      if (ev.status === 403 && !account) {
        // Maybe signed in (or out) in another tab meanwhile: ask again.
        whoAmI().then(() => {
          if (account) signedIn(account);
          else say(`You may not read #${room}.`, 'error');
        });
      } else if (ev.status === 401) {
        askSignIn(`#${room} is for members: sign in to read it.`);
      } else {
        say(`You may not read #${room}.`, 'error');
      }
      break;
  }
}

function setState(state) {
  const el = $('state');
  el.dataset.state = state;
  el.textContent = STATES[state] ?? state;
}

function showPresence({ online, users }) {
  $('online-count').textContent = online > 0 ? `${online} online` : '';
  const people = $('people');
  people.replaceChildren(...users.map((name) => {
    const li = document.createElement('li');
    li.textContent = name;
    if (name === me) {
      const you = document.createElement('span');
      you.className = 'you';
      you.textContent = ' (you)';
      li.append(you);
    }
    return li;
  }));
  const unnamed = online - users.length;
  if (unnamed > 0) {
    const li = document.createElement('li');
    li.className = 'unnamed';
    li.textContent = unnamed === 1 ? '1 more without a name' : `${unnamed} more without a name`;
    people.append(li);
  }
}

let rooms = [];

async function loadRooms() {
  try {
    const res = await fetch('/rooms', { cache: 'no-store' });
    if (res.ok) rooms = await res.json();
  } catch {
    return; // the connection state already says the server is away
  }
  const names = new Set(rooms.map((r) => r.room));
  const all = [...rooms];
  if (room && !names.has(room)) all.push({ room, online: 0 });
  if (!names.has('lobby') && room !== 'lobby') all.push({ room: 'lobby', online: 0 });
  all.sort((a, b) => (a.room === 'lobby' ? -1 : b.room === 'lobby' ? 1 : a.room.localeCompare(b.room)));
  $('rooms').replaceChildren(...all.map((r) => {
    const li = document.createElement('li');
    const a = document.createElement('a');
    a.href = `#${r.room}`;
    a.textContent = `#${r.room}`;
    const count = document.createElement('span');
    count.className = 'count';
    count.textContent = r.online > 0 ? String(r.online) : '';
    if (r.online > 0) count.title = `${r.online} online`;
    a.append(count);
    li.append(a);
    return li;
  }));
  $('room-options').replaceChildren(...all.map((r) => new Option(r.room)));
  markCurrentRoom();
}

function markCurrentRoom() {
  for (const a of $('rooms').querySelectorAll('a')) {
    if (a.hash === `#${room}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

$('room-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $('room-input');
  const name = input.value.trim().replace(/^#/, '');
  if (!ROOM_RE.test(name)) {
    roomError(name ? `"${name}" is not a room name. ${ROOM_RULE}` : 'Type a room name first.');
    input.focus();
    return;
  }
  roomError('');
  input.value = '';
  openSide(false);
  location.hash = name;
  $('text').focus();
});

// ---- read out what is new ----

// A new stream replays the room, a reconnect catches up and the list is
// sometimes drawn again: the list gets items a screen reader has read
// before, so it is not a live region. What is new is said in #announce (a
// polite log), once: messages of others with an id above `heard`. A stream opened on a room starts from the newest id the
// history has (what is there already is not news); meanwhile its messages
// wait in `held`.

/** The newest id heard in this room (said, or passed over as history). */
let heard = 0;
/** Messages that wait for the history's newest id, or null. */
let held = null;

/** Starts hearing a new stream of the current room. */
function listen() {
  const target = room;
  const wait = (held = []);
  delete $('announce').dataset.since;
  newestId(target).then((id) => {
    if (held !== wait || room !== target) return;
    held = null;
    // Unknown (offline, a room that wants a sign-in): what came is history.
    const before = id ?? Math.max(0, ...wait.map((m) => m.id));
    heard = Math.max(heard, before);
    // Where news starts, for the curious (and the tests).
    $('announce').dataset.since = String(heard);
    for (const m of wait) hear(m);
  });
}

async function newestId(target) {
  try {
    const res = await fetch(`/rooms/${encodeURIComponent(target)}/messages?limit=1`, { cache: 'no-store' });
    if (!res.ok) return null;
    const [last] = await res.json();
    return last?.id ?? 0;
  } catch {
    return null;
  }
}

function hear(m) {
  if (held) {
    held.push(m);
    return;
  }
  if (m.id <= heard) return;
  heard = m.id;
  if (m.deleted || list.isMine(m)) return;
  const box = $('announce');
  const p = document.createElement('p');
  p.textContent = `${m.user}: ${m.text}`;
  box.append(p);
  // Screen readers read what is added; what was read need not stay.
  while (box.childElementCount > 3) box.firstElementChild.remove();
}

// ---- invite a phone ----

/** Opens "Invite a phone" with the URL and QR code of the current room. */
async function invite() {
  const dialog = $('invite');
  const shown = room;
  const a = $('invite-url');
  const img = $('invite-qr');
  a.textContent = 'the address is on its way…';
  a.removeAttribute('href');
  img.removeAttribute('src');
  img.alt = '';
  dialog.showModal();
  try {
    const res = await fetch(`/rooms/${encodeURIComponent(shown)}/invite`, { cache: 'no-store' });
    const { url } = await res.json();
    if (shown !== room || typeof url !== 'string') throw new Error('no url');
    a.textContent = url;
    a.href = url;
    img.alt = `QR code of ${url}`;
    img.src = `/rooms/${encodeURIComponent(shown)}/invite.svg`;
  } catch {
    if (shown === room) a.textContent = 'the address is not available now; try again in a moment';
  }
}

$('invite-open').addEventListener('click', invite);
$('invite-close').addEventListener('click', () => $('invite').close());
// A click on the backdrop (outside the dialog's box) closes it too.
$('invite').addEventListener('click', (e) => {
  if (e.target === $('invite')) $('invite').close();
});

// ---- the side panel (a drawer on narrow screens) ----

function openSide(open) {
  $('side').classList.toggle('open', open);
  $('menu').setAttribute('aria-expanded', String(open));
  if (open) {
    loadRooms();
    $('room-input').focus();
  }
}

$('menu').addEventListener('click', () => openSide(!$('side').classList.contains('open')));
$('rooms').addEventListener('click', (e) => {
  if (e.target.closest('a')) openSide(false);
});
document.addEventListener('keydown', (e) => {
  // With the dialog open, Escape is the dialog's (the browser closes it).
  if (e.key === 'Escape' && !$('invite').open && $('side').classList.contains('open')) {
    openSide(false);
    $('menu').focus();
  }
});

// ---- the name ----

function storage(op, value) {
  try {
    if (op === 'get') return localStorage.getItem(NAME_KEY);
    localStorage.setItem(NAME_KEY, value);
  } catch {
    // Storage can be off (private modes); the name then lasts for this page.
  }
  return null;
}

/** The name as the server will take it, or null when it would refuse it. */
function validName(raw) {
  const name = String(raw ?? '').trim();
  const chars = [...name].length;
  // eslint-disable-next-line no-control-regex
  return chars >= 1 && chars <= 32 && !/[\u0000-\u001f\u007f-\u009f]/.test(name) ? name : null;
}

function showName(editing = false) {
  if (account) {
    $('account-name').textContent = account.user;
    $('account').hidden = false;
    $('me').hidden = true;
    $('name-form').hidden = true;
    $('sign-in-offer').hidden = true;
    return;
  }
  $('account').hidden = true;
  $('me-name').textContent = me;
  $('me').hidden = editing || !me;
  $('name-form').hidden = !(editing || !me);
  $('sign-in-offer').hidden = !server.accounts || !$('sign-in').hidden;
}

function setName(name) {
  if (name === me) return;
  me = name;
  showName();
  list.refresh();
  if (room) connect(); // presence is per name
}

$('name-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const name = validName($('name').value);
  if (!name) {
    $('name-error').textContent = 'A name is 1 to 32 characters.';
    $('name').focus();
    return;
  }
  $('name-error').textContent = '';
  storage('set', name);
  setName(name);
  showName();
  $('text').focus();
});

$('name').addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && me) {
    showName();
    $('rename').focus();
  }
});

$('rename').addEventListener('click', () => {
  $('name').value = me;
  showName(true);
  $('name').focus();
  $('name').select();
});

const SESSION_KEY = 'smolchat.session';

addEventListener('storage', (e) => {
  if (e.key === NAME_KEY && !account) setName(validName(e.newValue) ?? '');
  // Another tab signed in or out: the cookie is shared, so this tab is too.
  if (e.key === SESSION_KEY) whoAmI().then(() => signedIn(account));
});

/** Tells the other tabs that the session changed. */
function announceSession() {
  try {
    localStorage.setItem(SESSION_KEY, String(Date.now()));
  } catch {
    // Without storage the other tabs learn it on their next refusal.
  }
}

// ---- accounts ----

/** Asks the server who we are (the session cookie decides). */
async function whoAmI() {
  try {
    const res = await fetch('/me', { cache: 'no-store' });
    if (!res.ok) return;
    const info = await res.json();
    server = { accounts: info.accounts, editWindow: info.edit_window ?? 300 };
    account = info.user ? { user: info.user, admin: info.admin } : null;
  } catch {
    // Offline: the stream's state says so; try again on the next sign-in.
  }
}

function askSignIn(why = '') {
  $('sign-in-why').textContent = why;
  $('sign-in').hidden = false;
  $('sign-in-offer').hidden = true;
  $('sign-in-user').value ||= me;
  $('sign-in-user').focus();
}

function signedIn(next) {
  account = next;
  me = next ? next.user : (validName(storage('get')) ?? '');
  showName();
  // A new stream replays the room: start the list afresh (what may be
  // shown, and who is "mine", changed).
  list.clear();
  if (room) connect();
  loadRooms();
}

$('sign-in-open').addEventListener('click', () => askSignIn());
$('sign-in-cancel').addEventListener('click', () => {
  $('sign-in').hidden = true;
  $('sign-in-error').textContent = '';
  showName();
});

$('sign-in').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('sign-in-error').textContent = '';
  let res;
  try {
    res = await fetch('/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user: $('sign-in-user').value.trim(), password: $('sign-in-password').value }),
    });
  } catch {
    $('sign-in-error').textContent = 'Could not reach the server.';
    return;
  }
  const json = await res.json().catch(() => ({}));
  if (!res.ok) {
    $('sign-in-error').textContent = res.status === 401
      ? 'Wrong account name or password.'
      : explain({ status: res.status, error: json.error, retryAfter: 1 });
    $('sign-in-password').select();
    return;
  }
  $('sign-in-password').value = '';
  $('sign-in').hidden = true;
  signedIn({ user: json.user, admin: json.admin });
  announceSession();
  box.focus();
});

$('sign-out').addEventListener('click', async () => {
  try {
    await fetch('/logout', { method: 'POST' });
  } catch {
    // The cookie goes with the session on the server's side anyway.
  }
  signedIn(null);
  announceSession();
});

// Deleting a message: its button carries the id.
$('messages').addEventListener('click', async (e) => {
  const button = e.target.closest('button.delete');
  if (!button) return;
  button.disabled = true;
  const target = room;
  let res;
  try {
    res = await fetch(`/rooms/${encodeURIComponent(target)}/messages/${button.dataset.id}`, { method: 'DELETE' });
  } catch {
    say('Could not reach the server; the message was not deleted.', 'error');
    button.disabled = false;
    return;
  }
  if (!res.ok && res.status !== 410) {
    const json = await res.json().catch(() => ({}));
    say(explain({ status: res.status, error: json.error, retryAfter: 1 }).replace('Not sent', 'Not deleted'), 'error');
    button.disabled = false;
  }
  // The stream's `delete` event updates every tab, this one included.
});

// ---- the composer ----

const box = $('text');
const button = $('send-button');
let sending = false;
let coolingDown = false;
// Enter pressed while a message is on its way: send the box next.
let sendNext = false;

function say(text, kind = 'info') {
  const notice = $('notice');
  notice.textContent = text;
  notice.dataset.kind = kind;
}

function busy(label) {
  sending = label !== null;
  button.disabled = sending || coolingDown;
  button.textContent = label ?? 'Send';
  $('send').setAttribute('aria-busy', String(sending));
}

/** Calls `tick(s)` for s = seconds … 1, one second apart, then resolves. */
function countDown(seconds, tick) {
  return new Promise((resolve) => {
    const step = (s) => {
      if (s <= 0) return resolve();
      tick(s);
      setTimeout(() => step(s - 1), 1000);
    };
    step(seconds);
  });
}

async function submit() {
  if (coolingDown) return;
  if (sending) {
    // A quick second message: it goes when the one before is stored, so
    // the two keep their order and neither is dropped.
    sendNext = box.value.trim() !== '';
    return;
  }
  const text = box.value;
  if (!text.trim()) {
    box.focus();
    return;
  }
  const target = room;
  // One key for this message and all its retries.
  const key = newKey();
  busy('Sending…');
  say('');
  let sent = false;
  for (let tries = 0; ; tries++) {
    const res = await post(target, me, text, key);
    if (res.ok) {
      // Keep anything typed meanwhile.
      if (box.value === text) box.value = '';
      fit();
      sent = true;
      break;
    }
    if (res.status === 503 && tries < 5) {
      busy('Retrying…');
      await countDown(res.retryAfter, (s) => say(explain(res, s), 'wait'));
      say('Sending again…', 'wait');
      continue;
    }
    if (res.status === 503) {
      say('The room is still busy and your message was not sent. Try again in a moment.', 'error');
    } else if (res.status === 401) {
      say('Sign in to post here. Your message is still in the box.', 'error');
      askSignIn(`#${target} is for members: sign in to post.`);
    } else if (res.status === 429) {
      coolingDown = true;
      busy(null);
      await countDown(res.retryAfter, (s) => say(explain(res, s), 'error'));
      coolingDown = false;
      say('');
    } else {
      say(explain(res), 'error');
    }
    break;
  }
  busy(null);
  // After a failure the next message waits in the box with the notice.
  const next = sendNext && sent && box.value.trim() !== '';
  sendNext = false;
  if (next) submit();
}

$('send').addEventListener('submit', (e) => {
  e.preventDefault();
  submit();
});

box.addEventListener('keydown', (e) => {
  // Enter sends; Shift+Enter is a new line; Enter that ends an IME
  // composition (Japanese, Chinese...) only confirms the characters.
  if (e.key === 'Enter' && !e.shiftKey && !e.altKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault();
    submit();
  }
});

/** Grows the box with its text, up to the cap the stylesheet sets. */
function fit() {
  box.style.height = 'auto';
  box.style.height = `${box.scrollHeight + 2}px`;
}
box.addEventListener('input', fit);

// ---- the tab title and notifications ----

function updateTitle() {
  document.title = `${unseen > 0 ? `(${unseen}) ` : ''}#${room} — smolchat`;
}

/** A desktop notification for a mention, when allowed (asked on a click). */
function notify(m) {
  if (typeof Notification !== 'function' || Notification.permission !== 'granted') return;
  const n = new Notification(`${m.user} in #${room}`, { body: m.text, tag: `smolchat-${room}-${m.id}` });
  n.onclick = () => {
    window.focus();
    n.close();
  };
}

function showNotifyOffer() {
  const offer = $('notify');
  const can = typeof Notification === 'function' && window.isSecureContext;
  offer.hidden = !can || Notification.permission !== 'default';
}

$('notify-button').addEventListener('click', async () => {
  // Asked here, on a click, never on load: browsers (rightly) punish pages
  // that ask unprompted.
  try {
    await Notification.requestPermission();
  } catch {
    // Old Safari: the callback form; the state shows on the next load.
  }
  showNotifyOffer();
});

document.addEventListener('visibilitychange', () => {
  if (!document.hidden && unseen > 0) {
    unseen = 0;
    updateTitle();
  }
});

// ---- start ----

showName();
showNotifyOffer();
whoAmI().then(() => {
  if (account) me = account.user;
  showName();
  addEventListener('hashchange', followHash);
  followHash();
});
setInterval(() => {
  if (!document.hidden) loadRooms();
}, 15000);
(me ? box : $('name')).focus();
