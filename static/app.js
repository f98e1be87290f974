// Minimal client: one EventSource on the lobby, a form that posts JSON.
// Message text is only ever inserted with textContent.
'use strict';
const $ = (id) => document.getElementById(id);
const list = $('messages');
const user = $('user');
user.value = localStorage.getItem('smolchat.user') || '';

function add(m) {
  const li = document.createElement('li');
  const who = document.createElement('b');
  who.textContent = m.user + ': ';
  li.append(who, document.createTextNode(m.text));
  list.append(li);
  li.scrollIntoView({ block: 'end' });
}

const es = new EventSource('/events');
es.addEventListener('open', () => { $('state').textContent = 'live'; });
es.addEventListener('error', () => { $('state').textContent = 'reconnecting'; });
es.addEventListener('message', (e) => add(JSON.parse(e.data)));

$('send').addEventListener('submit', async (e) => {
  e.preventDefault();
  const text = $('text');
  localStorage.setItem('smolchat.user', user.value);
  const body = { text: text.value };
  if (user.value.trim()) body.user = user.value.trim();
  try {
    const res = await fetch('/messages', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    if (res.ok) { text.value = ''; $('error').textContent = ''; }
    else { $('error').textContent = (await res.json()).error; }
  } catch (err) {
    $('error').textContent = 'network error: ' + err.message;
  }
});
