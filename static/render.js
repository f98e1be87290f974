// Messages to DOM nodes, and times to words.
//
// Everything a message carries reaches the page through textContent or
// createTextNode, never innerHTML, so a message can hold any markup and it
// still shows as the characters that were typed. These functions touch no
// page state, so a test can import this module and check them one by one.

/** How a URL inside message text is found; only http and https become links. */
const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/g;

/**
 * The body of a message: its `spans` when the code transform made them
 * (`{text}`, `{code}` inline, `{block, lang}` fenced), else its plain text.
 *
 *     renderBody({ text: 'see x', spans: [{ text: 'see ' }, { code: 'x' }] })
 *     // <div class="body">see <code>x</code></div>
 */
export function renderBody(msg, me = '') {
  const body = document.createElement('div');
  body.className = 'body';
  if (msg.deleted) {
    body.classList.add('deleted');
    body.textContent = 'This message was deleted.';
    return body;
  }
  // Its own direction, from its own text: a right-to-left message or a
  // stray override character cannot turn the page around it (the CSS
  // isolates it too).
  body.dir = 'auto';
  const spans = Array.isArray(msg.spans) && msg.spans.length > 0
    ? msg.spans
    : [{ text: String(msg.text ?? '') }];
  for (const span of spans) {
    if (span && typeof span.block === 'string') {
      body.append(codeBlock(span.block, span.lang));
    } else if (span && typeof span.code === 'string') {
      const code = document.createElement('code');
      code.textContent = span.code;
      body.append(code);
    } else if (span && typeof span.text === 'string') {
      appendText(body, span.text, me);
    }
  }
  return body;
}

/**
 * Whether `text` mentions `me` (`@ana`, any case, not inside a longer name
 * or an address like ana@example.org).
 */
export function mentions(text, me) {
  if (!me) return false;
  return mentionRe(me).test(String(text ?? ''));
}

function mentionRe(me) {
  const name = me.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^\\p{L}\\p{N}_@.])@${name}(?![\\p{L}\\p{N}_])`, 'iu');
}

function codeBlock(text, lang) {
  const pre = document.createElement('pre');
  const code = document.createElement('code');
  // A fence's trailing newline would show as an empty last line.
  code.textContent = text.replace(/\n$/, '');
  if (typeof lang === 'string' && lang) {
    // Shown by CSS (attr()), so it is never markup either.
    pre.dataset.lang = lang;
    code.className = 'language-' + lang.replace(/[^A-Za-z0-9_+-]/g, '');
  }
  pre.append(code);
  return pre;
}

/**
 * Appends text, turning http(s) URLs into links that open in a new tab and
 * marking mentions of `me` (`<mark class="mention">@ana</mark>`).
 */
export function appendText(parent, text, me = '') {
  let at = 0;
  const plain = (chunk) => appendMentions(parent, chunk, me);
  for (const match of text.matchAll(URL_RE)) {
    // "see https://x.org/a." - the final dot ends the sentence, not the URL.
    let url = match[0].replace(/[.,;:!?]+$/, '');
    if (url.endsWith(')') && !url.includes('(')) url = url.slice(0, -1);
    if (match.index > at) plain(text.slice(at, match.index));
    const a = document.createElement('a');
    a.href = url;
    a.textContent = url;
    a.rel = 'noopener noreferrer nofollow';
    a.target = '_blank';
    parent.append(a);
    at = match.index + url.length;
  }
  if (at < text.length) plain(text.slice(at));
}

function appendMentions(parent, text, me) {
  if (!me) {
    parent.append(document.createTextNode(text));
    return;
  }
  const re = new RegExp(mentionRe(me).source, 'giu');
  let at = 0;
  for (const m of text.matchAll(re)) {
    const start = m.index + m[1].length; // after the character before the @
    if (start > at) parent.append(document.createTextNode(text.slice(at, start)));
    const mark = document.createElement('mark');
    mark.className = 'mention';
    mark.textContent = text.slice(start, m.index + m[0].length);
    parent.append(mark);
    at = m.index + m[0].length;
  }
  if (at < text.length) parent.append(document.createTextNode(text.slice(at)));
}

/**
 * One message as a list item: who, when and what. `mine` marks the
 * reader's own messages; `continued` is a follow-up by the same person
 * shortly after, shown without repeating the name (screen readers still
 * hear it); `deletable` adds a delete button. A guest (posted without an
 * account on a server that has them) is marked as one.
 */
export function renderMessage(msg, { mine = false, continued = false, deletable = false, me = '' } = {}) {
  const li = document.createElement('li');
  li.className = 'msg';
  if (mine) li.classList.add('mine');
  if (continued) li.classList.add('cont');
  li.dataset.id = String(msg.id);

  const meta = document.createElement('div');
  meta.className = 'meta';
  const who = document.createElement('span');
  who.className = 'who ' + userClass(msg.user);
  who.dir = 'auto';
  who.textContent = String(msg.user ?? 'anonymous');
  if (mine) {
    const you = document.createElement('span');
    you.className = 'sr-only';
    you.textContent = ' (you)';
    who.append(you);
  }
  meta.append(who);
  if (msg.guest) {
    const guest = document.createElement('span');
    guest.className = 'guest';
    guest.textContent = 'guest';
    guest.title = 'Posted without an account: anyone could use this name';
    meta.append(' ', guest);
  }
  meta.append(' ', renderTime(msg.time));
  if (deletable && !msg.deleted) {
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'delete link';
    del.dataset.id = String(msg.id);
    del.textContent = 'Delete';
    del.setAttribute('aria-label', `Delete message from ${msg.user} at ${clock(new Date(msg.time))}`);
    meta.append(' ', del);
  }
  if (msg.deleted) li.classList.add('gone');
  if (!mine && !msg.deleted && mentions(msg.text, me)) li.classList.add('mentioned');
  li.append(meta, renderBody(msg, me));
  return li;
}

/** A `<time>` showing the local clock time, with the full date on hover. */
export function renderTime(iso) {
  const time = document.createElement('time');
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) {
    time.textContent = '';
    return time;
  }
  time.dateTime = date.toISOString();
  time.textContent = clock(date);
  time.title = FULL.format(date);
  return time;
}

const CLOCK = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const FULL = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'short' });
const DAY = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long' });
const DAY_YEAR = new Intl.DateTimeFormat(undefined, { dateStyle: 'long' });

/** "14:05" or "2:05 PM", as the reader's locale writes it. */
export function clock(date) {
  return CLOCK.format(date);
}

/** A key that is equal for two dates on the same local day. */
export function dayKey(date) {
  return `${date.getFullYear()}-${date.getMonth()}-${date.getDate()}`;
}

/** "Today", "Yesterday", "Monday 3 March", or a full date in another year. */
export function dayLabel(date, now = new Date()) {
  if (dayKey(date) === dayKey(now)) return 'Today';
  const yesterday = new Date(now);
  yesterday.setDate(now.getDate() - 1);
  if (dayKey(date) === dayKey(yesterday)) return 'Yesterday';
  return date.getFullYear() === now.getFullYear() ? DAY.format(date) : DAY_YEAR.format(date);
}

/** One of eight colour classes, the same for a name on every device. */
export function userClass(name) {
  let h = 0;
  for (const ch of String(name ?? '')) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return 'u' + (h % 8);
}
