// The message list: keeps messages in id order with day separators,
// groups a person's quick follow-ups, and scrolls like a chat should.
//
// Messages usually arrive in order and are appended. One that arrives
// out of order (a tab catching up from its leader's history) makes the
// current section be drawn again in order, which is rare and cheap at chat
// sizes. A "section" is one run of server ids: when the server restarts
// and counts from 1 again, a new section starts below the old one.
//
// Auto-scroll follows new messages only while the reader is at the bottom.
// Scrolled up, they read undisturbed and a "new messages" button counts
// what arrived and jumps down.

import { dayKey, dayLabel, renderMessage } from './render.js';

/** Follow-ups within this many ms by the same person are grouped. */
const GROUP_MS = 5 * 60 * 1000;
/** Within this many pixels of the end counts as "at the bottom". */
const NEAR = 48;
/** Items kept in the current section; older ones leave the page in batches. */
const KEEP = 1000;
const TRIM = 200;

export class MessageList {
  /**
   * `ol` is the list, `scroller` the element that scrolls, `jump` the
   * button shown when new messages arrive below, `empty` the "no messages"
   * note; `isMine(m)` says whether a message is the reader's own, and
   * `canDelete(m)` whether the reader may delete it.
   */
  constructor({ ol, scroller, jump, empty, isMine, canDelete = () => false, me = () => '' }) {
    Object.assign(this, { ol, scroller, jump, empty, isMine, canDelete, me });
    this.unread = 0;
    scroller.addEventListener('scroll', () => {
      if (this.atBottom()) this.markRead();
    }, { passive: true });
    jump.addEventListener('click', () => {
      this.toBottom();
      ol.focus({ preventScroll: true });
    });
    this.clear();
  }

  /** Empties the list, for another room. */
  clear() {
    this.ol.replaceChildren();
    this.section = 0;
    this.items = []; // the current section: { key, m } or { key, notice }
    this.ids = new Set(); // the message ids in it
    this.count = 0;
    this.tail = null;
    this.markRead();
    this.showEmpty();
  }

  atBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR;
  }

  toBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.markRead();
  }

  markRead() {
    this.unread = 0;
    this.jump.hidden = true;
  }

  showEmpty() {
    this.empty.hidden = this.count > 0 || this.ol.childElementCount > 0;
  }

  /**
   * Adds a message. One the current section has already is dropped: a new
   * stream of the same room (after a rename) replays what is shown.
   */
  add(m) {
    if (this.ids.has(m.id)) return;
    this.ids.add(m.id);
    const mine = this.isMine(m);
    this.place({ key: m.id, m }, () => {
      this.count++;
      if (!mine) this.unread++;
    }, mine);
  }

  /** A line of information at the place of id `key` in the current section. */
  notice(text, key = Infinity) {
    this.place({ key, notice: text }, () => {}, false);
  }

  /** The server started counting again: later messages go in a new section. */
  restart(text) {
    this.section++;
    this.items = [];
    this.ids = new Set();
    this.tail = null;
    this.place({ key: -Infinity, notice: text }, () => {}, false);
  }

  place(item, counted, mine) {
    const stick = this.atBottom() || mine;
    const last = this.items[this.items.length - 1];
    if (!last || item.key >= last.key) {
      this.items.push(item);
      this.draw(item);
    } else {
      let i = this.items.length;
      while (i > 0 && this.items[i - 1].key > item.key) i--;
      this.items.splice(i, 0, item);
      this.redraw();
    }
    counted();
    if (this.items.length > KEEP + TRIM) {
      for (const old of this.items.splice(0, TRIM)) if (old.m) this.ids.delete(old.m.id);
      this.redraw();
    }
    this.showEmpty();
    if (stick) {
      this.toBottom();
    } else if (item.m) {
      this.jump.hidden = false;
      this.jump.textContent = this.unread === 1 ? '1 new message ↓' : `${this.unread} new messages ↓`;
    }
  }

  redraw() {
    for (const el of [...this.ol.querySelectorAll(`[data-section="${this.section}"]`)]) el.remove();
    this.tail = null;
    for (const item of this.items) this.draw(item);
  }

  /** Appends one item, with a day separator when the day changes. */
  draw(item) {
    const add = (el) => {
      el.dataset.section = String(this.section);
      this.ol.append(el);
    };
    if (item.notice !== undefined) {
      const li = document.createElement('li');
      li.className = 'notice-line';
      li.textContent = item.notice;
      add(li);
      this.tail = { day: this.tail?.day ?? null, user: null, time: 0 };
      return;
    }
    const m = item.m;
    const date = new Date(m.time);
    const time = date.getTime();
    const day = Number.isNaN(time) ? null : dayKey(date);
    if (day && day !== this.tail?.day) {
      const sep = document.createElement('li');
      sep.className = 'day';
      sep.textContent = dayLabel(date);
      add(sep);
    }
    const continued = this.tail?.user === m.user && day === this.tail?.day
      && time - this.tail.time < GROUP_MS;
    add(renderMessage(m, { mine: this.isMine(m), continued, deletable: this.canDelete(m), me: this.me() }));
    this.tail = { day: day ?? this.tail?.day ?? null, user: m.user, time };
  }

  /** Shows message `id` as deleted, where it is on the page. */
  deleted(id) {
    const item = this.items.find((it) => it.m && it.m.id === id);
    if (!item || item.m.deleted) return;
    item.m = { ...item.m, text: '', spans: undefined, deleted: true };
    const li = this.ol.querySelector(`li.msg[data-id="${id}"][data-section="${this.section}"]`);
    if (!li) return;
    const fresh = renderMessage(item.m, {
      mine: this.isMine(item.m),
      continued: li.classList.contains('cont'),
      me: this.me(),
    });
    fresh.dataset.section = li.dataset.section;
    li.replaceWith(fresh);
  }

  /** Draws the current section again, e.g. after the reader changed name. */
  refresh() {
    const stick = this.atBottom();
    this.redraw();
    if (stick) this.toBottom();
  }
}
