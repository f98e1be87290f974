// A room's event stream, shared by every tab of one browser.
//
// Browsers allow six HTTP/1.1 connections per host, and each EventSource
// holds one for good, so the seventh tab of a chat would hang. Instead the
// tabs showing one room (as one user) elect a leader; only the leader opens
// an EventSource, and it relays what it hears to the other tabs over a
// BroadcastChannel. When the leader tab closes another tab takes over and
// resumes from the last message id it has seen, so nothing is missed.
//
// The election uses Web Locks where the page has them: every tab asks for
// the same lock, the holder leads, and the browser hands the lock to the
// next tab when the holder closes or crashes. Web Locks exist only in secure
// contexts (https, or localhost), and a Pi on a LAN is usually plain http,
// so there the tabs elect over the BroadcastChannel itself (see
// `channelElection`). Without BroadcastChannel every tab opens its own
// stream, as a plain chat page would.
//
// Every tab keeps a `Log` of the message ids it has shown, so a message
// that arrives twice (a resume overlapping a relay, a new leader replaying)
// is shown once. Ids are per room and only grow, except when a server that
// keeps history in memory restarts and counts from 1 again; the leader
// checks for that after every reconnect and, when it happens, announces a
// new "epoch": every tab then forgets the old ids, so new messages are not
// mistaken for old ones. Only that announcement resets a log; a tab that
// sees another epoch tag on a message (a new leader that started with an
// empty log) just takes the tag over and keeps dropping repeats.

/** How many recent messages a leader hands to a tab that opens later. */
const RECENT = 200;
/** Ids remembered for dropping repeats; far more than a server replays. */
const SEEN = 10000;

/** The ids a tab has shown in the current epoch, and the newest message. */
class Log {
  constructor() {
    this.epoch = null;
    this.seen = new Set();
    this.recent = [];
    this.last = null;
  }

  reset(epoch) {
    this.epoch = epoch;
    this.seen = new Set();
    this.recent = [];
    this.last = null;
  }

  lastId() {
    return this.last ? this.last.id : 0;
  }

  /** Marks message `id` deleted in what a new tab is handed. */
  erase(id) {
    this.recent = this.recent.map((m) => (m.id === id ? { ...m, text: '', spans: undefined, deleted: true } : m));
    if (this.last?.id === id) this.last = { ...this.last, text: '', deleted: true };
  }

  /** True the first time a message id is seen in this epoch. */
  accept(m) {
    if (typeof m?.id !== 'number' || this.seen.has(m.id)) return false;
    this.seen.add(m.id);
    if (!this.last || m.id > this.last.id) this.last = m;
    if (this.seen.size > SEEN) {
      const floor = this.last.id - SEEN / 2;
      this.seen = new Set([...this.seen].filter((id) => id > floor));
    }
    let i = this.recent.length;
    while (i > 0 && this.recent[i - 1].id > m.id) i--;
    this.recent.splice(i, 0, m);
    if (this.recent.length > RECENT) this.recent.shift();
    return true;
  }
}

const newEpoch = () => Math.random().toString(36).slice(2, 10);

/**
 * Opens `room` as `user` (may be empty) and calls `onEvent` with:
 * `{t:'role', role}` leader | follower | direct;
 * `{t:'state', state}` connecting | live | reconnecting;
 * `{t:'presence', online, users}`; `{t:'message', m}` once per message;
 * `{t:'gap'}` when older messages are gone; `{t:'restart'}` when the
 * server's ids started over; `{t:'delete', id}` when message `id` was
 * deleted; `{t:'denied', status}` when the server refuses the stream
 * (401: sign in; 403: not allowed). Returns `{ close() }`.
 */
export function openRoom({ room, user, onEvent }) {
  const key = `smolchat:${room}:${user}`;
  const log = new Log();
  const shared = typeof BroadcastChannel === 'function';
  const channel = shared ? new BroadcastChannel(key) : null;
  let state = 'connecting';
  let presence = { online: 0, users: [] };
  let source = null;
  let leading = false;
  let closed = false;

  /** Applies an event to this tab: follows epochs, drops repeats, tells the page. */
  function apply(ev) {
    switch (ev.t) {
      case 'state':
        if (ev.state === state) return;
        state = ev.state;
        onEvent({ t: 'state', state });
        break;
      case 'presence':
        presence = { online: ev.online, users: ev.users };
        onEvent({ t: 'presence', ...presence });
        break;
      case 'epoch':
        if (ev.epoch === log.epoch) return;
        log.reset(ev.epoch);
        onEvent({ t: 'restart' });
        break;
      case 'message':
        log.epoch = ev.epoch;
        if (log.accept(ev.m)) onEvent({ t: 'message', m: ev.m });
        break;
      case 'gap':
        log.epoch = ev.epoch;
        onEvent({ t: 'gap', since: ev.since, first: ev.first });
        break;
      case 'delete':
        log.erase(ev.id);
        onEvent({ t: 'delete', id: ev.id });
        break;
      case 'denied':
        onEvent({ t: 'denied', status: ev.status });
        break;
      case 'sync':
        log.epoch = ev.epoch;
        for (const m of ev.messages) apply({ t: 'message', epoch: ev.epoch, m });
        apply({ t: 'presence', ...ev.presence });
        apply({ t: 'state', state: ev.state });
        break;
    }
  }

  /** As leader: apply here and relay to the other tabs. */
  function emit(ev) {
    apply(ev);
    if (channel && leading) channel.postMessage(ev);
  }

  function sync() {
    channel.postMessage({
      t: 'sync', epoch: log.epoch, messages: log.recent, presence, state,
    });
  }

  if (channel) {
    channel.onmessage = ({ data }) => {
      if (closed) return;
      if (data.t === 'sync?') {
        if (leading) sync();
      } else if (!leading) {
        apply(data);
      }
    };
  }

  const lead = () => {
    if (closed || leading) return;
    leading = true;
    onEvent({ t: 'role', role: shared ? 'leader' : 'direct' });
    if (log.epoch === null) log.epoch = newEpoch();
    source = streamRoom({ room, user, log, emit, everLive: state !== 'connecting' });
    if (channel) sync();
  };
  const stepDown = () => {
    leading = false;
    source?.close();
    source = null;
    onEvent({ t: 'role', role: 'follower' });
  };

  let election = null;
  if (!shared) {
    lead();
  } else {
    onEvent({ t: 'role', role: 'follower' });
    channel.postMessage({ t: 'sync?' });
    election = navigator.locks?.request
      ? lockElection(key, lead)
      : channelElection(key, lead, stepDown);
  }

  return {
    close() {
      closed = true;
      source?.close();
      source = null;
      election?.stop();
      channel?.close();
    },
  };
}

/**
 * The leader's EventSource. Resumes after the last message the tab has
 * (`?since=` on a new stream, `Last-Event-ID` on the browser's own
 * reconnects) and checks after every reconnect that the server's ids did
 * not start over.
 */
function streamRoom({ room, user, log, emit, everLive }) {
  const base = `/rooms/${encodeURIComponent(room)}/events`;
  let es = null;
  let users = new Set();
  let online = 0;
  let held = null; // events that wait while a reconnect is checked
  let retry = null;
  let backoff = 1000;
  let closed = false;

  const presence = () => emit({ t: 'presence', online, users: [...users].sort() });

  function open(since) {
    es?.close();
    clearTimeout(retry);
    const q = new URLSearchParams();
    if (user) q.set('user', user);
    if (since !== null) q.set('since', String(since));
    const mine = (es = new EventSource(q.size ? `${base}?${q}` : base));
    emit({ t: 'state', state: everLive ? 'reconnecting' : 'connecting' });
    const on = (name, fn) => mine.addEventListener(name, (e) => {
      if (es !== mine || closed) return;
      let data;
      try {
        data = JSON.parse(e.data);
      } catch {
        return;
      }
      fn(data);
    });
    on('hello', (h) => {
      everLive = true;
      backoff = 1000;
      online = h.online;
      users = new Set(h.users ?? []);
      presence();
      emit({ t: 'state', state: 'live' });
      // Anything we already showed could clash with a restarted server's ids.
      if (log.lastId() > 0) {
        held = [];
        verify(mine);
      } else {
        held = null;
      }
    });
    on('message', (m) => (held ? held.push(['message', m]) : handle('message', m)));
    on('gap', (g) => (held ? held.push(['gap', g]) : handle('gap', g)));
    on('delete', (d) => (held ? held.push(['delete', d]) : handle('delete', d)));
    on('join', (j) => {
      online = j.online;
      users.add(j.user);
      presence();
    });
    on('leave', (j) => {
      online = j.online;
      users.delete(j.user);
      presence();
    });
    // The whole state after every change (coalesced): what the page shows
    // always ends equal to the server's, whatever happened in between.
    on('presence', (p) => {
      online = p.online;
      users = new Set(p.users ?? []);
      presence();
    });
    on('shutdown', () => emit({ t: 'state', state: 'reconnecting' }));
    mine.addEventListener('error', () => {
      if (es !== mine || closed) return;
      emit({ t: 'state', state: everLive ? 'reconnecting' : 'connecting' });
      // CONNECTING: the browser retries by itself, with Last-Event-ID.
      // CLOSED: it gave up (an error status); we retry, with ?since=.
      if (mine.readyState === EventSource.CLOSED) {
        // EventSource hides the status; ask the room's history, which the
        // same rules guard, whether signing in would help.
        denied().then((status) => {
          if (es !== mine || closed) return;
          if (status) {
            emit({ t: 'denied', status });
            return;
          }
          retry = setTimeout(() => open(log.lastId() || null), backoff);
          backoff = Math.min(backoff * 2, 30000);
        });
      }
    });
  }

  /** 401 or 403 when the server refuses this room to us; else 0. */
  async function denied() {
    try {
      const res = await fetch(`/rooms/${encodeURIComponent(room)}/messages?limit=1`, { cache: 'no-store' });
      return res.status === 401 || res.status === 403 ? res.status : 0;
    } catch {
      return 0;
    }
  }

  function handle(kind, data) {
    if (kind === 'message') {
      emit({ t: 'message', epoch: log.epoch, m: data });
    } else if (kind === 'delete') {
      emit({ t: 'delete', epoch: log.epoch, id: data.id });
    } else if (data.first != null && data.first > data.since) {
      // A real hole. A gap whose `first` is not past `since` means the ids
      // went backwards; `verify` already dealt with that.
      emit({ t: 'gap', epoch: log.epoch, since: data.since, first: data.first });
    }
  }

  /**
   * Asks the server for the message with our newest id. The same message:
   * carry on. Another one, or none at all: the server restarted and counts
   * from 1 again, so start a new epoch and replay its whole history.
   */
  async function verify(mine, attempt = 0) {
    const last = log.last;
    let same;
    try {
      const res = await fetch(
        `/rooms/${encodeURIComponent(room)}/messages?since=${last.id - 1}&limit=1`,
        { cache: 'no-store' },
      );
      if (!res.ok) throw new Error(`status ${res.status}`);
      const [m] = await res.json();
      same = m !== undefined && (m.id === last.id
        ? m.time === last.time && m.user === last.user && (m.deleted || m.text === last.text)
        : m.id > last.id);
    } catch {
      if (es !== mine || closed) return;
      // The stream is up, so this is a blip; after a few tries, assume the
      // server is the one we knew rather than hold messages back for good.
      if (attempt < 3) {
        setTimeout(() => verify(mine, attempt + 1), 500 * (attempt + 1));
        return;
      }
      same = true;
    }
    if (es !== mine || closed) return;
    const queue = held ?? [];
    held = null;
    if (same) {
      for (const [kind, data] of queue) handle(kind, data);
    } else {
      emit({ t: 'epoch', epoch: newEpoch() });
      open(0);
    }
  }

  open(log.lastId() || null);
  return {
    close() {
      closed = true;
      clearTimeout(retry);
      es?.close();
    },
  };
}

/** Web Locks: the browser queues the tabs and hands the lock on when the holder goes. */
function lockElection(key, lead) {
  const abort = new AbortController();
  let release = null;
  let stopped = false;
  navigator.locks
    .request(key, { signal: abort.signal }, () => new Promise((resolve) => {
      // Granted just as the room closed: give the lock straight back.
      if (stopped) return resolve();
      release = resolve;
      lead();
    }))
    .catch(() => {}); // aborted while waiting: this tab closed the room
  return {
    stop() {
      stopped = true;
      abort.abort();
      release?.();
    },
  };
}

/**
 * Election over a BroadcastChannel, for pages without Web Locks. A tab
 * that wants to lead says `apply` and waits briefly; a leader answers
 * `tell`; among tabs applying together the smallest id wins. A leader says
 * `death` when its page goes away, and followers apply now and then so a
 * crashed leader is replaced too. If two tabs ever lead at once, the one
 * with the larger id steps down when it hears the other.
 */
function channelElection(key, lead, stepDown) {
  const ch = new BroadcastChannel(key + ':election');
  const id = Math.random();
  let leading = false;
  let applying = false;
  let stopped = false;
  let timer = null;

  const become = () => {
    if (stopped || leading) return;
    applying = false;
    leading = true;
    ch.postMessage({ t: 'tell', id });
    lead();
  };
  const apply = () => {
    if (stopped || leading) return;
    applying = true;
    ch.postMessage({ t: 'apply', id });
    clearTimeout(timer);
    timer = setTimeout(become, 150);
  };
  ch.onmessage = ({ data }) => {
    if (stopped) return;
    if (data.t === 'apply') {
      if (leading) {
        ch.postMessage({ t: 'tell', id });
      } else if (applying && data.id < id) {
        // Someone ahead of us applies: wait for their `tell`, and apply
        // again if it never comes.
        clearTimeout(timer);
        timer = setTimeout(apply, 1000);
      }
    } else if (data.t === 'tell') {
      if (!leading) {
        applying = false;
        clearTimeout(timer);
      } else if (data.id < id) {
        leading = false;
        stepDown();
      } else {
        ch.postMessage({ t: 'tell', id });
      }
    } else if (data.t === 'death' && !leading) {
      clearTimeout(timer);
      // A little jitter so the followers do not all shout at once.
      timer = setTimeout(apply, Math.random() * 30);
    }
  };
  const resign = () => {
    if (leading) ch.postMessage({ t: 'death' });
  };
  const watch = setInterval(apply, 10000);
  addEventListener('pagehide', resign);
  apply();
  return {
    stop() {
      resign();
      stopped = true;
      clearTimeout(timer);
      clearInterval(watch);
      removeEventListener('pagehide', resign);
      ch.close();
    },
  };
}
