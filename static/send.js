// Posting a message, and saying in plain words why a post failed.
//
// `post` never throws: it returns what happened, and `explain` turns that
// into a sentence for the person typing. The composer in app.js decides
// what to do next (clear the box, count down, retry).

/** Longest a post may take; the server itself gives up after its publish timeout. */
const TIMEOUT_MS = 20000;

/**
 * A fresh `Idempotency-Key`: the retries of one message send the same one,
 * so a retry after a 503 or a lost answer never posts it twice.
 * (crypto.getRandomValues works in plain-HTTP pages too, unlike randomUUID.)
 */
export function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * POSTs `text` to `room` as `user` (may be empty: anonymous), under the
 * idempotency `key` (see newKey).
 * Resolves to `{ ok: true, message }`, `{ ok: false, status, error, retryAfter }`
 * or `{ ok: false, status: 0, offline }` when the server could not be reached.
 */
export async function post(room, user, text, key) {
  const body = { text };
  if (user) body.user = user;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
  try {
    const res = await fetch(`/rooms/${encodeURIComponent(room)}/messages`, {
      method: 'POST',
      headers: key
        ? { 'content-type': 'application/json', 'idempotency-key': key }
        : { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: abort.signal,
    });
    let json = null;
    try {
      json = await res.json();
    } catch {
      // A proxy's HTML error page, say: the status still tells us enough.
    }
    if (res.ok) return { ok: true, message: json };
    return {
      ok: false,
      status: res.status,
      error: typeof json?.error === 'string' ? json.error : '',
      retryAfter: retryAfterSeconds(res.headers.get('retry-after')),
    };
  } catch {
    return { ok: false, status: 0, offline: navigator.onLine === false };
  } finally {
    clearTimeout(timer);
  }
}

/** `Retry-After` as whole seconds (at least 1): a number, or an HTTP date. */
export function retryAfterSeconds(value, now = Date.now()) {
  if (value == null || value === '') return 1;
  if (/^\s*\d+\s*$/.test(value)) return Math.max(1, parseInt(value, 10));
  const at = Date.parse(value);
  return Number.isNaN(at) ? 1 : Math.max(1, Math.ceil((at - now) / 1000));
}

/** The sentence for a failed post. `seconds` is what is left of a wait. */
export function explain(result, seconds = result.retryAfter) {
  const reason = sentence(result.error);
  switch (result.status) {
    case 0:
      return result.offline
        ? 'You are offline. Your message is still in the box; send it again when you are back online.'
        : 'Could not reach the server. Your message is still in the box; try again in a moment.';
    case 429:
      return `You are sending messages too fast. You can send again in ${seconds} s.`;
    case 503:
      return /shutting down/i.test(result.error)
        ? `The server is restarting, retrying in ${seconds} s…`
        : `The room is busy, retrying in ${seconds} s…`;
    case 422: {
      // The server says which transform refused, as "censor: why".
      const m = /^([a-z]+): (.+)$/.exec(String(result.error ?? '').trim());
      if (m) return `Not sent: ${sentence(m[2]).replace(/\.$/, '')} (${m[1]}).`;
      return `Not sent: ${reason || 'the server refused this message.'}`;
    }
    case 413: {
      const limit = /limit (\d+)/.exec(result.error ?? '');
      return `Not sent: this message is too long${limit ? ` (the limit is ${limit[1]} bytes)` : ''}.`;
    }
    default:
      return `Not sent: ${reason || `the server answered ${result.status}.`}`;
  }
}

/** "body too large" -> "Body too large." */
function sentence(text) {
  const t = String(text ?? '').trim();
  if (!t) return '';
  return t[0].toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? '' : '.');
}
