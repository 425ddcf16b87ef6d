// The room page (chat-room.js) and the echo playground (echo-playground.js),
// on a small fake DOM that refuses innerHTML.
import assert from 'node:assert/strict';
import { describe, mock, test } from 'node:test';

import { formatTime, mountChatRoom } from '../../static/js/chat-room.js';
import { mountEchoPlayground } from '../../static/js/echo-playground.js';
import { CLOSE, FRAME, RippleSocket, STATE, socketUrl } from '../../static/js/ripple-socket.js';
import { fakeSseServer, fakeStorage } from './fake-sse.mjs';
import { CountingTarget, FakeWebSocket, fakeEnvironment, useMockTimers } from './fake-websocket.mjs';

// --- a fake DOM: just what the two pages use ------------------------------------

class FakeText {
  constructor(text) {
    this.data = String(text);
    this.parentNode = null;
  }

  get textContent() {
    return this.data;
  }
}

class FakeElement extends CountingTarget {
  constructor(tagName) {
    super();
    this.tagName = tagName.toUpperCase();
    this.childNodes = [];
    this.parentNode = null;
    this.dataset = {};
    this.attributes = new Map();
    this.className = '';
    this.id = '';
    this.hidden = false;
    this.title = '';
    this.value = '';
    this.disabled = false;
    // Geometry of a scroller, set by the tests that need it.
    this.scrollTop = 0;
    this.scrollHeight = 0;
    this.clientHeight = 0;
    this.focused = 0;
  }

  focus() {
    this.focused += 1;
  }

  get classList() {
    const el = this;
    const names = () => el.className.split(/\s+/).filter(Boolean);
    return {
      add: (...add) => {
        el.className = [...new Set([...names(), ...add])].join(' ');
      },
      remove: (...remove) => {
        el.className = names().filter((n) => !remove.includes(n)).join(' ');
      },
      contains: (name) => names().includes(name),
    };
  }

  get children() {
    return this.childNodes.filter((node) => node instanceof FakeElement);
  }

  get textContent() {
    return this.childNodes.map((node) => node.textContent).join('');
  }

  set textContent(value) {
    this.replaceChildren(String(value));
  }

  get innerHTML() {
    throw new Error('innerHTML is not allowed');
  }

  set innerHTML(value) {
    throw new Error('innerHTML is not allowed');
  }

  insertBefore(node, reference) {
    if (!(node instanceof FakeElement || node instanceof FakeText)) throw new TypeError('not a node');
    if (node.parentNode) node.parentNode.removeChild(node);
    const index = reference === null ? this.childNodes.length : this.childNodes.indexOf(reference);
    if (index < 0) throw new Error('NotFoundError');
    this.childNodes.splice(index, 0, node);
    node.parentNode = this;
    return node;
  }

  appendChild(node) {
    return this.insertBefore(node, null);
  }

  append(...nodes) {
    for (const node of nodes) this.appendChild(typeof node === 'string' ? new FakeText(node) : node);
  }

  replaceChildren(...nodes) {
    for (const node of this.childNodes) node.parentNode = null;
    this.childNodes = [];
    this.append(...nodes.filter((node) => node !== ''));
  }

  removeChild(node) {
    this.childNodes.splice(this.childNodes.indexOf(node), 1);
    node.parentNode = null;
    return node;
  }

  setAttribute(name, value) {
    this.attributes.set(name, String(value));
  }

  getAttribute(name) {
    return this.attributes.get(name) ?? null;
  }

  /** Only `.class` and tag-name selectors, enough for the pages and the assertions. */
  querySelector(selector) {
    const matches = selector.startsWith('.')
      ? (el) => el.classList.contains(selector.slice(1))
      : (el) => el.tagName === selector.toUpperCase();
    for (const child of this.children) {
      if (matches(child)) return child;
      const found = child.querySelector(selector);
      if (found) return found;
    }
    return null;
  }

  click() {
    this.dispatchEvent(new Event('click'));
  }
}

class FakeDocument extends CountingTarget {
  constructor() {
    super();
    this.body = new FakeElement('body');
    this.visibilityState = 'visible';
  }

  createElement(tagName) {
    return new FakeElement(tagName);
  }

  getElementById(id) {
    const walk = (el) => {
      if (el.id === id) return el;
      for (const child of el.children) {
        const found = walk(child);
        if (found) return found;
      }
      return null;
    };
    return walk(this.body);
  }
}

/** `h('li', {id, className, dataset, hidden}, ...children)` */
function h(tag, props = {}, ...children) {
  const el = new FakeElement(tag);
  const { dataset = {}, ...rest } = props;
  Object.assign(el, rest);
  Object.assign(el.dataset, dataset);
  el.append(...children);
  return el;
}

function renderedMessage(seq, author, body, sentAt = '2026-11-22T04:13:00+00:00') {
  return h('li', { className: 'msg', dataset: { seq: String(seq), clientId: `c${seq}`, author, authorKind: 'user', sentAt } },
    h('span', { className: 'head' }, h('span', { className: 'author' }, author)), ' ', timeEl(sentAt, 'UTC'), ' ', h('span', { className: 'body' }, body));
}

function timeEl(datetime, text) {
  const el = h('time', { className: 'time' }, text);
  el.setAttribute('datetime', datetime);
  return el;
}

/** The room template, as the Django side renders it. */
function roomPage({ lastSeq = '42', messages = [renderedMessage(42, 'bob', 'hi')], title = 'general – Ripple' } = {}) {
  const document = new FakeDocument();
  document.title = title;
  const root = h('main', { id: 'room', dataset: { room: 'general', wsUrl: '/ws/chat/', lastSeq, user: 'alice' } },
    h('p', { id: 'conn-state', dataset: { state: 'connecting' } }, 'Connecting…'),
    h('button', { id: 'retry', hidden: true }, 'Retry'),
    h('p', { id: 'history-note', hidden: true }, 'Some older messages were skipped. ', h('a', {}, 'Reload')),
    h('details', { id: 'members-box', open: true },
      h('summary', {}, 'Here now (', h('span', { id: 'member-count' }, '0'), ')'),
      h('ul', { id: 'members' })),
    h('div', { id: 'message-log' }, h('ol', { id: 'messages' }, ...messages)),
    h('button', { id: 'new-messages', hidden: true }),
    h('form', { id: 'composer' }, h('textarea', { id: 'body' }), h('button', {}, 'Send')),
    h('p', { id: 'composer-note', hidden: true }));
  document.body.append(root);
  const byId = (id) => document.getElementById(id);
  return {
    document,
    root,
    status: byId('conn-state'),
    retry: byId('retry'),
    note: byId('history-note'),
    list: byId('messages'),
    log: byId('message-log'),
    hint: byId('new-messages'),
    composerNote: byId('composer-note'),
    form: byId('composer'),
    input: byId('body'),
    members: byId('members'),
    memberCount: byId('member-count'),
    /** The messages shown, in order. */
    items() {
      return this.list.children.filter((li) => li.classList.contains('msg'));
    },
    seqs() {
      return this.items().map((li) => li.dataset.seq ?? 'pending');
    },
    /** The member list as shown: `name#id`, with `*` for the reader's own entry. */
    shownMembers() {
      return this.members.children.map((li) => `${li.classList.contains('me') ? '*' : ''}${li.textContent}#${li.dataset.memberId}`);
    },
  };
}

function message(seq, extra = {}) {
  return { type: FRAME.MESSAGE, room: 'general', seq, author: 'bob', body: `m${seq}`, sent_at: '2026-11-22T04:13:53.123Z', client_id: `c${seq}`, ...extra };
}

const liveTimers = useMockTimers();

function mountRoom(pageOptions, socketOptions = {}) {
  const page = roomPage(pageOptions);
  const WS = FakeWebSocket.fresh();
  const env = fakeEnvironment();
  const mounted = mountChatRoom(page.root, {
    document: page.document,
    location: { protocol: 'https:', host: 'chat.example:8443' },
    socketOptions: { WebSocket: WS, window: env.window, document: env.document, navigator: env.navigator, random: () => 0.5, ...socketOptions },
  });
  return { ...page, ...mounted, WS, env, get ws() { return WS.instances.at(-1); } };
}

function openAndSubscribe(room, messages = [], members = []) {
  room.ws.serverOpen();
  const request = room.ws.framesOfType(FRAME.SUBSCRIBE).at(-1);
  room.ws.serverSend({
    type: FRAME.SUBSCRIBED, room: 'general', messages, last_seq: messages.at(-1)?.seq ?? request.since ?? 0, complete: true, members, ref: request.ref,
  });
}

/** Lets promise callbacks (ack, refusal) run. */
async function flush() {
  for (let i = 0; i < 5; i += 1) await Promise.resolve();
}

function submit(room, text) {
  room.input.value = text;
  const event = new Event('submit', { cancelable: true });
  room.form.dispatchEvent(event);
  return event;
}

describe('helpers', () => {
  test('socketUrl builds ws: or wss: from the page location', () => {
    assert.equal(socketUrl('/ws/chat/', { protocol: 'https:', host: 'a.example' }), 'wss://a.example/ws/chat/');
    assert.equal(socketUrl('/ws/echo/', { protocol: 'http:', host: 'localhost:8000' }), 'ws://localhost:8000/ws/echo/');
    assert.equal(socketUrl('ws://elsewhere/ws/', { protocol: 'https:', host: 'x' }), 'ws://elsewhere/ws/');
  });

  test('formatTime gives HH:MM or nothing', () => {
    assert.match(formatTime('2026-11-22T04:13:53.123Z'), /^\d\d:\d\d$/);
    assert.equal(formatTime('not a date'), '');
  });

  // describeState and the status line: tests/js/status.test.mjs.
});

describe('chat-room.js', () => {
  test('subscribes to its room since data-last-seq over wss built from the https location', () => {
    const room = mountRoom();
    assert.equal(room.ws.url, 'wss://chat.example:8443/ws/chat/');
    room.ws.serverOpen();
    assert.deepEqual(room.ws.framesOfType(FRAME.SUBSCRIBE).map(({ room: r, since }) => ({ r, since })), [{ r: 'general', since: 42 }]);
    room.destroy();
  });

  test('server-rendered times are shown in the reader’s time zone', () => {
    const room = mountRoom();
    const time = room.items()[0].querySelector('.time');
    assert.equal(time.textContent, formatTime('2026-11-22T04:13:00+00:00'));
    assert.match(time.title, /2026/, 'the full date on hover');
    room.destroy();
  });

  test('new messages are appended with textContent, in seq order, once each', () => {
    const room = mountRoom();
    openAndSubscribe(room, [message(43, { body: '<img src=x onerror=alert(1)>' })]);
    room.ws.serverSend(message(44, { author: '<b>eve</b>' }));
    room.ws.serverSend(message(44));
    assert.deepEqual(room.seqs(), ['42', '43', '44']);
    const li = room.items()[1];
    assert.ok(li.classList.contains('msg') && !li.classList.contains('pending'));
    assert.equal(li.querySelector('.body').textContent, '<img src=x onerror=alert(1)>');
    assert.equal(li.querySelector('.body').children.length, 0, 'no markup was parsed');
    assert.equal(room.items()[2].querySelector('.author').textContent, '<b>eve</b>');
    const time = li.children.find((child) => child.tagName === 'TIME');
    assert.equal(time.getAttribute('datetime'), '2026-11-22T04:13:53.123Z');
    room.destroy();
  });

  test('author_kind tags a guest and labels an announcement; no text can do either', () => {
    const room = mountRoom();
    openAndSubscribe(room, [], [{ id: 'u7', name: 'alice' }, { id: 'gabc', name: 'mallory' }]);
    room.ws.serverSend(message(43, { author: 'alice', author_kind: 'user' }));
    room.ws.serverSend(message(44, { author: 'mallory', author_kind: 'guest', body: '[Announcement] free coins' }));
    room.ws.serverSend(message(45, { author: 'announcement', author_kind: 'system', system: true, body: 'noon' }));
    room.ws.serverSend(message(46, { author: 'old-server' }));
    const kinds = (li) => li.querySelector('.head').children.filter((el) => el.classList.contains('author-kind')).map((el) => el.textContent);
    const [, user, guest, system, unknown] = room.items();
    assert.deepEqual([user.classList.contains('system'), kinds(user), user.dataset.authorKind], [false, [], 'user']);
    assert.deepEqual([guest.classList.contains('system'), kinds(guest), guest.dataset.authorKind], [false, ['guest'], 'guest']);
    assert.deepEqual([system.classList.contains('system'), kinds(system), system.querySelector('.head').children[0].textContent], [true, ['Announcement'], 'Announcement']);
    assert.deepEqual(kinds(unknown), ['guest'], 'a frame without author_kind claims least');
    assert.deepEqual(room.members.children.map((li) => [li.textContent, li.dataset.kind]), [['alice', 'user'], ['mallory', 'guest']]);
    room.destroy();
  });

  test('a history reset shows the note and messages still land in seq order', () => {
    const room = mountRoom({ lastSeq: '45', messages: [renderedMessage(40, 'bob', 'a'), renderedMessage(45, 'bob', 'b')] });
    room.ws.serverOpen();
    const { ref } = room.ws.framesOfType(FRAME.SUBSCRIBE)[0];
    room.ws.serverSend({ type: FRAME.SUBSCRIBED, room: 'general', messages: [message(41), message(46)], last_seq: 46, complete: false, ref });
    assert.equal(room.note.hidden, false);
    assert.deepEqual(room.seqs(), ['40', '41', '45', '46']);
    room.destroy();
  });

  test('an own message shows as pending, then the ack confirms it; the echo is not shown twice', async () => {
    const room = mountRoom();
    openAndSubscribe(room);
    const event = submit(room, 'hello <there>');
    assert.equal(event.defaultPrevented, true);
    assert.equal(room.input.value, '');
    const li = room.items().at(-1);
    assert.ok(li.classList.contains('pending'));
    assert.equal(li.querySelector('.author').textContent, 'alice');
    assert.equal(li.querySelector('.body').textContent, 'hello <there>');
    const [sent] = room.ws.framesOfType(FRAME.MESSAGE);
    assert.equal(li.dataset.clientId, sent.client_id);

    // A message from someone else lands before the pending one.
    room.ws.serverSend(message(43));
    assert.deepEqual(room.seqs(), ['42', '43', 'pending']);

    room.ws.serverSend({ type: FRAME.ACK, room: 'general', client_id: sent.client_id, seq: 44, sent_at: '2026-11-22T04:14:00.000Z', duplicate: false });
    await Promise.resolve();
    assert.equal(li.classList.contains('pending'), false);
    assert.equal(li.dataset.seq, '44');
    room.ws.serverSend(message(44, { client_id: sent.client_id, author: 'alice', body: 'hello <there>' }));
    assert.deepEqual(room.seqs(), ['42', '43', '44']);
    assert.equal(room.items().filter((item) => item.dataset.clientId === sent.client_id).length, 1);
    room.destroy();
  });

  test('when the room stream beats the ack, the pending item is reused, not duplicated', async () => {
    const room = mountRoom();
    openAndSubscribe(room);
    submit(room, 'first');
    const [sent] = room.ws.framesOfType(FRAME.MESSAGE);
    room.ws.serverSend(message(43, { client_id: sent.client_id, author: 'alice', body: 'first' }));
    assert.deepEqual(room.seqs(), ['42', '43']);
    room.ws.serverSend({ type: FRAME.ACK, room: 'general', client_id: sent.client_id, seq: 43, sent_at: 'x', duplicate: false });
    await Promise.resolve();
    assert.deepEqual(room.seqs(), ['42', '43']);
    assert.equal(room.items()[1].classList.contains('pending'), false);
    room.destroy();
  });

  test('a refused message is marked failed', async () => {
    const room = mountRoom();
    openAndSubscribe(room);
    submit(room, 'x');
    const [sent] = room.ws.framesOfType(FRAME.MESSAGE);
    room.ws.serverSend({ type: FRAME.ERROR, code: 'body_too_long', message: 'too long', ref: null, client_id: sent.client_id });
    await Promise.resolve();
    await Promise.resolve();
    const li = room.items().at(-1);
    assert.ok(li.classList.contains('failed'));
    assert.equal(li.classList.contains('pending'), false);
    assert.equal(li.dataset.error, 'body_too_long');
    room.destroy();
  });

  test('a refused message says so in words; Retry sends it again with the same client_id', async () => {
    const room = mountRoom();
    openAndSubscribe(room);
    submit(room, 'hello');
    const li = room.items().at(-1);
    assert.equal(li.querySelector('.send-state').textContent, 'Sending…');
    const [sent] = room.ws.framesOfType(FRAME.MESSAGE);
    room.ws.serverSend({ type: FRAME.ERROR, code: 'server_error', message: 'try again', ref: null, client_id: sent.client_id });
    await flush();
    assert.equal(li.querySelector('.send-state').textContent, 'Not sent — try again Retry');
    li.querySelector('.send-state').querySelector('button').click();
    assert.ok(li.classList.contains('pending'));
    assert.equal(li.querySelector('.send-state').textContent, 'Sending…');
    const again = room.ws.framesOfType(FRAME.MESSAGE).at(-1);
    assert.deepEqual([again.client_id, again.body], [sent.client_id, 'hello']);
    room.ws.serverSend({ type: FRAME.ACK, room: 'general', client_id: sent.client_id, seq: 43, sent_at: '2026-11-22T04:14:00.000Z', duplicate: true });
    await flush();
    assert.equal(li.querySelector('.send-state'), null);
    assert.deepEqual(room.seqs(), ['42', '43']);
    room.destroy();
  });

  test('a message sent while the socket is closed fails; Retry reconnects and sends it', async () => {
    const room = mountRoom();
    openAndSubscribe(room);
    room.ws.serverClose(CLOSE.TOO_MANY_CONNECTIONS);
    submit(room, 'anyone?');
    await flush();
    const li = room.items().at(-1);
    assert.equal(li.querySelector('.send-state').textContent, 'Not sent — disconnected Retry');
    li.querySelector('.send-state').querySelector('button').click();
    assert.equal(room.WS.instances.length, 2, 'the socket starts over');
    openAndSubscribe(room);
    const [frame] = room.ws.framesOfType(FRAME.MESSAGE);
    assert.equal(frame.client_id, li.dataset.clientId);
    room.destroy();
  });

  test('a message the server will never take offers Edit, which puts it back in the box', async () => {
    const room = mountRoom();
    openAndSubscribe(room);
    submit(room, 'far too long');
    const [sent] = room.ws.framesOfType(FRAME.MESSAGE);
    room.ws.serverSend({ type: FRAME.ERROR, code: 'body_too_long', message: 'too long', ref: null, client_id: sent.client_id });
    await flush();
    const li = room.items().at(-1);
    assert.equal(li.querySelector('.send-state').textContent, 'Not sent — too long Edit');
    li.querySelector('.send-state').querySelector('button').click();
    assert.equal(room.input.value, 'far too long');
    assert.deepEqual(room.seqs(), ['42']);
    room.destroy();
  });

  test('Enter sends, Shift+Enter does not; the box keeps the focus', () => {
    const room = mountRoom();
    assert.equal(room.input.focused, 1, 'focused on entry');
    openAndSubscribe(room);
    const key = (shiftKey) => {
      const event = Object.assign(new Event('keydown', { cancelable: true }), { key: 'Enter', shiftKey });
      room.input.dispatchEvent(event);
      return event;
    };
    room.input.value = 'line one\nline two';
    assert.equal(key(true).defaultPrevented, false, 'Shift+Enter is left to the textarea');
    assert.equal(room.ws.framesOfType(FRAME.MESSAGE).length, 0);
    assert.equal(key(false).defaultPrevented, true);
    assert.deepEqual(room.ws.framesOfType(FRAME.MESSAGE).map((f) => f.body), ['line one\nline two']);
    assert.equal(room.input.value, '');
    assert.equal(room.input.focused, 2, 'focused again after the send');
    room.input.value = '   ';
    key(false);
    assert.equal(room.ws.framesOfType(FRAME.MESSAGE).length, 1, 'blank is not sent');
    room.destroy();
  });

  test('signed out (4401): the box is disabled and says why', () => {
    const room = mountRoom();
    openAndSubscribe(room);
    room.ws.serverClose(CLOSE.SESSION_ENDED);
    assert.equal(room.input.disabled, true);
    assert.equal(room.form.querySelector('button').disabled, true);
    assert.equal(room.composerNote.hidden, false);
    assert.match(room.composerNote.textContent, /signed out/);
    room.destroy();
  });

  test('the list follows new messages; scrolled up, a hint counts them and jumps down', () => {
    const room = mountRoom();
    const log = room.log;
    Object.assign(log, { scrollHeight: 1000, clientHeight: 400 });
    openAndSubscribe(room);
    log.scrollHeight = 1100;
    room.ws.serverSend(message(43));
    assert.equal(log.scrollTop, 1100, 'follows');

    log.scrollTop = 100;
    log.dispatchEvent(new Event('scroll'));
    room.ws.serverSend(message(44));
    room.ws.serverSend(message(45));
    assert.equal(log.scrollTop, 100, 'stays where the reader is');
    assert.deepEqual([room.hint.hidden, room.hint.textContent], [false, '2 new messages ↓']);
    room.hint.click();
    assert.deepEqual([log.scrollTop, room.hint.hidden], [1100, true]);

    log.scrollTop = 0;
    log.dispatchEvent(new Event('scroll'));
    log.scrollHeight = 1200;
    submit(room, 'mine');
    assert.equal(log.scrollTop, 1200, 'an own message brings the reader down');
    room.destroy();
  });

  test('while the tab is hidden the title counts unread messages', () => {
    const room = mountRoom({ title: 'General – Ripple' });
    openAndSubscribe(room);
    room.ws.serverSend(message(43));
    assert.equal(room.document.title, 'General – Ripple');
    room.document.visibilityState = 'hidden';
    room.document.dispatchEvent(new Event('visibilitychange'));
    room.ws.serverSend(message(44));
    room.ws.serverSend(message(45));
    assert.equal(room.document.title, '(2) General – Ripple');
    room.document.visibilityState = 'visible';
    room.document.dispatchEvent(new Event('visibilitychange'));
    assert.equal(room.document.title, 'General – Ripple');
    room.destroy();
    assert.equal(room.document.listenerCount(), 0);
  });

  test('links become <a> elements, in the history and in new messages; other schemes stay text', () => {
    const room = mountRoom({ messages: [renderedMessage(42, 'bob', 'docs at https://ripple.example/docs. javascript:alert(1)')] });
    openAndSubscribe(room, [message(43, { body: 'and http://x.example/?a=1&b=2' })]);
    const links = room.items().map((li) => li.querySelector('.body').children.map((a) => [a.tagName, a.getAttribute('href'), a.getAttribute('rel'), a.getAttribute('target'), a.textContent]));
    assert.deepEqual(links, [
      [['A', 'https://ripple.example/docs', 'noopener noreferrer', '_blank', 'https://ripple.example/docs']],
      [['A', 'http://x.example/?a=1&b=2', 'noopener noreferrer', '_blank', 'http://x.example/?a=1&b=2']],
    ]);
    assert.equal(room.items()[0].querySelector('.body').textContent, 'docs at https://ripple.example/docs. javascript:alert(1)');
    room.destroy();
  });

  test('a day separator before each day; one author’s run shows the name once', () => {
    const room = mountRoom({
      lastSeq: '3',
      messages: [
        renderedMessage(1, 'bob', 'a', '2026-11-20T12:00:00Z'),
        renderedMessage(2, 'bob', 'b', '2026-11-22T12:00:00Z'),
        renderedMessage(3, 'bob', 'c', '2026-11-22T12:03:00Z'),
      ],
    });
    const kinds = () => room.list.children.map((li) => (li.classList.contains('day-separator') ? 'day' : li.classList.contains('continued') ? 'more' : 'msg'));
    assert.deepEqual(kinds(), ['day', 'msg', 'day', 'msg', 'more']);
    openAndSubscribe(room, [message(4, { author: 'bob', author_kind: 'user', sent_at: '2026-11-22T12:04:00Z' }), message(5, { author: 'cleo', sent_at: '2026-11-22T12:05:00Z' })]);
    assert.deepEqual(kinds(), ['day', 'msg', 'day', 'msg', 'more', 'more', 'msg']);
    room.ws.serverSend({ type: FRAME.DELETED, room: 'general', seqs: [3] });
    assert.deepEqual(kinds(), ['day', 'msg', 'day', 'msg', 'msg', 'msg', 'msg'], 'a deleted message breaks the run');
    room.destroy();
  });

  test('the members from subscribed are listed with textContent, sorted, counted, with the reader marked', () => {
    const room = mountRoom();
    assert.equal(room.memberCount.textContent, '0');
    assert.deepEqual(room.shownMembers(), []);
    openAndSubscribe(room, [], [{ id: 'u2', name: 'bob' }, { id: 'g7', name: '<b>x</b>' }, { id: 'u1', name: 'alice' }]);
    assert.deepEqual(room.shownMembers(), ['<b>x</b>#g7', '*alice#u1', 'bob#u2']);
    assert.equal(room.memberCount.textContent, '3');
    const markup = room.members.children[0];
    assert.equal(markup.tagName, 'LI');
    assert.equal(markup.children.length, 0, 'no markup was parsed');
    assert.equal(markup.className, '');
    room.destroy();
  });

  test('presence frames add, rename and remove members and keep the count', () => {
    const room = mountRoom();
    openAndSubscribe(room, [], [{ id: 'u1', name: 'alice' }]);
    room.ws.serverSend({ type: FRAME.PRESENCE, room: 'general', joins: [{ id: 'u3', name: 'carol' }, { id: 'u2', name: 'bob' }], leaves: [] });
    assert.deepEqual(room.shownMembers(), ['*alice#u1', 'bob#u2', 'carol#u3']);
    assert.equal(room.memberCount.textContent, '3');
    room.ws.serverSend({ type: FRAME.PRESENCE, room: 'general', joins: [{ id: 'u1', name: 'alice' }], leaves: [{ id: 'u9', name: 'zed' }] });
    room.ws.serverSend({ type: FRAME.PRESENCE, room: 'random', joins: [{ id: 'u9', name: 'zed' }], leaves: [] });
    assert.deepEqual(room.shownMembers(), ['*alice#u1', 'bob#u2', 'carol#u3']);
    room.ws.serverSend({ type: FRAME.PRESENCE, room: 'general', joins: [{ id: 'u3', name: 'Aaron' }], leaves: [{ id: 'u2', name: 'bob' }] });
    assert.deepEqual(room.shownMembers(), ['Aaron#u3', '*alice#u1']);
    assert.equal(room.memberCount.textContent, '2');
    room.destroy();
  });

  test('the reader is the name in welcome once it arrives, data-user before', () => {
    const room = mountRoom();
    room.ws.serverOpen();
    room.ws.serverSend({ type: FRAME.WELCOME, user: { name: 'guest-1a2b', authenticated: false } });
    const { ref } = room.ws.framesOfType(FRAME.SUBSCRIBE)[0];
    room.ws.serverSend({
      type: FRAME.SUBSCRIBED, room: 'general', messages: [], last_seq: 42, complete: true, ref,
      members: [{ id: 'u1', name: 'alice' }, { id: 'c5', name: 'guest-1a2b' }],
    });
    assert.deepEqual(room.shownMembers(), ['alice#u1', '*guest-1a2b#c5']);
    room.destroy();
  });

  test('across a disconnect the last list stays, marked stale until the next subscribed replaces it', () => {
    const room = mountRoom();
    assert.ok(room.members.classList.contains('stale'), 'nothing live before the first subscribed');
    openAndSubscribe(room, [], [{ id: 'u1', name: 'alice' }, { id: 'u2', name: 'bob' }]);
    assert.equal(room.members.classList.contains('stale'), false);

    room.ws.serverClose(1006);
    assert.ok(room.members.classList.contains('stale'));
    assert.deepEqual(room.shownMembers(), ['*alice#u1', 'bob#u2']);
    assert.equal(room.memberCount.textContent, '2');

    mock.timers.tick(room.socket.stateDetail.delayMs);
    room.ws.serverOpen();
    room.ws.serverSend({ type: FRAME.PRESENCE, room: 'general', joins: [{ id: 'u4', name: 'dora' }], leaves: [] });
    assert.ok(room.members.classList.contains('stale'), 'open, but not yet subscribed');
    assert.deepEqual(room.shownMembers(), ['*alice#u1', 'bob#u2']);

    const { ref } = room.ws.framesOfType(FRAME.SUBSCRIBE)[0];
    room.ws.serverSend({
      type: FRAME.SUBSCRIBED, room: 'general', messages: [], last_seq: 42, complete: true, ref,
      members: [{ id: 'u1', name: 'alice' }, { id: 'u3', name: 'carol' }],
    });
    assert.equal(room.members.classList.contains('stale'), false);
    assert.deepEqual(room.shownMembers(), ['*alice#u1', 'carol#u3']);
    assert.equal(room.memberCount.textContent, '2');
    room.destroy();
  });

  test('the status line says which transport is in use: data-transport, and the fallback named when connected', () => {
    const room = mountRoom();
    assert.equal(room.status.dataset.transport, 'websocket');
    room.ws.serverOpen();
    assert.deepEqual([room.status.dataset.state, room.status.dataset.transport, room.status.textContent], ['open', 'websocket', 'Connected']);
    room.destroy();

    const sse = fakeSseServer();
    const WS = FakeWebSocket.fresh();
    const onFallback = mountRoom({}, {
      WebSocket: WS, transports: [WS, sse.Sse], sessionStorage: fakeStorage({ 'ripple.transport': 'sse' }), wsRetryMs: 60000,
    });
    assert.deepEqual([onFallback.status.dataset.state, onFallback.status.dataset.transport], ['connecting', 'sse']);
    assert.equal(sse.es.url, 'https://chat.example:8443/sse/chat/');
    sse.welcome();
    assert.deepEqual(
      [onFallback.status.dataset.state, onFallback.status.dataset.transport, onFallback.status.textContent],
      ['open', 'sse', 'Connected (HTTP fallback)'],
    );

    // WebSocket gets through again: the background probe moves the page back.
    mock.timers.tick(60000);
    const probe = WS.instances.at(-1);
    assert.equal(probe.url, 'wss://chat.example:8443/ws/chat/');
    probe.serverOpen();
    probe.serverSend({ type: FRAME.WELCOME, connection_id: 'p1' });
    assert.deepEqual([onFallback.status.dataset.state, onFallback.status.textContent], ['reconnecting', 'Switching to WebSocket…']);
    mock.timers.tick(1000);
    WS.instances.at(-1).serverOpen();
    assert.deepEqual(
      [onFallback.status.dataset.state, onFallback.status.dataset.transport, onFallback.status.textContent],
      ['open', 'websocket', 'Connected'],
    );
    onFallback.destroy();
    assert.equal(liveTimers().pending, 0);
  });

  test('the heartbeat round trip shows in the status title', () => {
    const room = mountRoom();
    room.ws.serverOpen();
    room.ws.serverSend({ type: FRAME.WELCOME, heartbeat_interval_ms: 1000, heartbeat_timeout_ms: 500 });
    mock.timers.tick(1000);
    const [ping] = room.ws.framesOfType(FRAME.PING);
    mock.timers.tick(12);
    room.ws.serverSend({ type: FRAME.PONG, t: ping.t });
    assert.equal(room.status.title, 'Round trip 12 ms');
    room.destroy();
  });

  test('destroy() closes the socket and leaves no timer or listener', () => {
    const room = mountRoom();
    room.ws.serverOpen();
    room.ws.serverClose(1006);
    room.destroy();
    assert.equal(liveTimers().pending, 0);
    assert.equal(room.form.listenerCount() + room.retry.listenerCount(), 0);
    assert.equal(room.env.window.listenerCount() + room.env.document.listenerCount(), 0);
  });

  test('loaded on a page, it mounts itself and exposes window.ripple', async (t) => {
    const page = roomPage();
    const WS = FakeWebSocket.fresh();
    const saved = {};
    for (const name of ['document', 'window', 'location', 'WebSocket']) saved[name] = Object.getOwnPropertyDescriptor(globalThis, name);
    t.after(() => {
      for (const [name, descriptor] of Object.entries(saved)) {
        if (descriptor) Object.defineProperty(globalThis, name, descriptor);
        else delete globalThis[name];
      }
    });
    const window = new CountingTarget();
    Object.assign(globalThis, { document: page.document, window, location: { protocol: 'http:', host: 'localhost:8000' }, WebSocket: WS });
    await import(`../../static/js/chat-room.js?page=autorun`);
    assert.ok(window.ripple instanceof RippleSocket);
    assert.equal(WS.instances[0].url, 'ws://localhost:8000/ws/chat/');
    window.ripple.close();
  });
});

describe('echo-playground.js', () => {
  function echoPage() {
    const document = new FakeDocument();
    const root = h('main', { id: 'echo', dataset: { wsUrl: '/ws/echo/' } },
      h('ol', { id: 'log' }), h('p', { id: 'ready-state' }), h('p', { id: 'rtt' }), h('button', { id: 'start' }, 'Start'));
    document.body.append(root);
    const WS = FakeWebSocket.fresh();
    const playground = mountEchoPlayground(root, {
      document, location: { protocol: 'http:', host: 'localhost:8000' }, WebSocket: WS, now: () => Date.now(),
    });
    const byId = (id) => document.getElementById(id);
    return {
      WS,
      playground,
      start: byId('start'),
      readyState: byId('ready-state'),
      rtt: byId('rtt'),
      lines: () => byId('log').children.map((li) => li.textContent),
      get ws() {
        return WS.instances.at(-1);
      },
    };
  }

  test('logs events, says hello every 2 s, shows the round trip and closes after 10 s', () => {
    const echo = echoPage();
    echo.playground.start();
    assert.equal(echo.ws.url, 'ws://localhost:8000/ws/echo/');
    assert.equal(echo.readyState.textContent, 'readyState 0 (CONNECTING)');
    echo.ws.serverOpen();
    assert.equal(echo.readyState.textContent, 'readyState 1 (OPEN)');
    echo.ws.serverSend('Hello Client');
    mock.timers.tick(2000);
    assert.deepEqual(echo.ws.sent, ['Hello Server 1']);
    mock.timers.tick(3);
    echo.ws.serverSend('received: Hello Server 1(From Server)');
    assert.equal(echo.rtt.textContent, 'RTT 3 ms');
    echo.ws.serverSend('<script>alert(1)</script>');
    mock.timers.tick(7997);
    assert.deepEqual(echo.ws.sent, ['Hello Server 1', 'Hello Server 2', 'Hello Server 3', 'Hello Server 4']);
    assert.deepEqual(echo.ws.closeCalls, [{ code: 1000, reason: undefined }]);
    assert.equal(echo.readyState.textContent, 'readyState 2 (CLOSING)');
    echo.ws.serverClose(1000);
    assert.equal(echo.readyState.textContent, 'readyState 3 (CLOSED)');
    assert.deepEqual(echo.lines(), [
      '@open',
      '@message: Hello Client',
      '@message: received: Hello Server 1(From Server)',
      '@message: <script>alert(1)</script>',
      '@close: 1000',
    ]);
    assert.equal(liveTimers().pending, 0);
    mock.timers.tick(60000);
    assert.equal(echo.ws.sent.length, 4);
  });

  test('loaded on a page, it starts at once against the echo URL', async (t) => {
    const document = new FakeDocument();
    document.body.append(h('main', { id: 'echo', dataset: { wsUrl: '/ws/echo/' } },
      h('ol', { id: 'log' }), h('p', { id: 'ready-state' }), h('p', { id: 'rtt' }), h('button', { id: 'start' }, 'Start')));
    const WS = FakeWebSocket.fresh();
    const saved = {};
    for (const name of ['document', 'location', 'WebSocket']) saved[name] = Object.getOwnPropertyDescriptor(globalThis, name);
    t.after(() => {
      for (const [name, descriptor] of Object.entries(saved)) {
        if (descriptor) Object.defineProperty(globalThis, name, descriptor);
        else delete globalThis[name];
      }
    });
    Object.assign(globalThis, { document, location: { protocol: 'https:', host: 'ripple.example' }, WebSocket: WS });
    await import('../../static/js/echo-playground.js?page=autorun');
    assert.equal(WS.instances.length, 1);
    assert.equal(WS.instances[0].url, 'wss://ripple.example/ws/echo/');
    assert.equal(document.getElementById('ready-state').textContent, 'readyState 0 (CONNECTING)');
    const button = document.getElementById('start');
    assert.equal(button.textContent, 'Stop');
    button.click();
    assert.equal(button.textContent, 'Start');
    button.click();
    assert.equal(WS.instances.length, 2);
    mock.timers.tick(10000);
  });

  test('the button reads Stop while a socket runs and stops it; Start opens a new one; errors are logged', () => {
    const echo = echoPage();
    assert.equal(echo.start.textContent, 'Start');
    echo.start.click();
    const first = echo.ws;
    assert.equal(echo.start.textContent, 'Stop');
    first.serverOpen();
    assert.equal(echo.start.textContent, 'Stop');
    echo.start.click();
    assert.equal(echo.start.textContent, 'Start');
    assert.equal(first.closeCalls.length, 1);
    assert.equal(first.listenerCount(), 0);
    assert.equal(liveTimers().pending, 0, 'no timer of the stopped socket');
    echo.start.click();
    assert.equal(echo.WS.instances.length, 2);
    assert.equal(liveTimers().pending, 1, 'only the new socket’s close timer');
    echo.ws.serverError();
    assert.equal(echo.start.textContent, 'Start');
    assert.deepEqual(echo.lines(), ['@open', '@stopped', '@error', '@close: 1006']);
    assert.equal(liveTimers().pending, 0);
  });
});
