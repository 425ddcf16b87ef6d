// The room page (chat-room.js) and the echo playground (echo-playground.js),
// on a small fake DOM that refuses innerHTML.
import assert from 'node:assert/strict';
import { describe, mock, test } from 'node:test';

import { describeState, formatTime, mountChatRoom } from '../../static/js/chat-room.js';
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

  /** Only `.class` selectors, enough for assertions. */
  querySelector(selector) {
    const name = selector.replace(/^\./, '');
    for (const child of this.children) {
      if (child.classList.contains(name)) return child;
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

function renderedMessage(seq, author, body) {
  return h('li', { className: 'msg', dataset: { seq: String(seq), clientId: `c${seq}` } },
    h('span', { className: 'author' }, author), ' ', timeEl('2026-11-22T04:13:00+00:00', 'UTC'), ' ', h('span', { className: 'body' }, body));
}

function timeEl(datetime, text) {
  const el = h('time', {}, text);
  el.setAttribute('datetime', datetime);
  return el;
}

/** The room template, as the Django side renders it. */
function roomPage({ lastSeq = '42', messages = [renderedMessage(42, 'bob', 'hi')] } = {}) {
  const document = new FakeDocument();
  const root = h('main', { id: 'room', dataset: { room: 'general', wsUrl: '/ws/chat/', lastSeq, user: 'alice' } },
    h('p', { id: 'conn-state', dataset: { state: 'connecting' } }, 'Connecting…'),
    h('button', { id: 'retry', hidden: true }, 'Retry'),
    h('p', { id: 'history-note', hidden: true }, 'Some older messages were skipped. ', h('a', {}, 'Reload')),
    h('details', { id: 'members-box', open: true },
      h('summary', {}, 'Here now (', h('span', { id: 'member-count' }, '0'), ')'),
      h('ul', { id: 'members' })),
    h('ol', { id: 'messages' }, ...messages),
    h('form', { id: 'composer' }, h('input', { id: 'body' }), h('button', {}, 'Send')));
  document.body.append(root);
  const byId = (id) => document.getElementById(id);
  return {
    document,
    root,
    status: byId('conn-state'),
    retry: byId('retry'),
    note: byId('history-note'),
    list: byId('messages'),
    form: byId('composer'),
    input: byId('body'),
    members: byId('members'),
    memberCount: byId('member-count'),
    seqs() {
      return this.list.children.map((li) => li.dataset.seq ?? 'pending');
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

  test('describeState words every state', () => {
    const base = { attempt: 2, maxAttempts: 20, delayMs: null, offline: false, code: null };
    assert.equal(describeState({ ...base, state: STATE.OPEN }).text, 'Connected');
    assert.equal(describeState({ ...base, state: STATE.CONNECTING }).text, 'Connecting…');
    assert.equal(describeState({ ...base, state: STATE.RECONNECTING, delayMs: 3000 }, 0, 3000).text, 'Reconnecting in 3 s (attempt 2 of 20)');
    assert.deepEqual(describeState({ ...base, state: STATE.RECONNECTING, offline: true }),
      { dataState: 'offline', text: 'Offline — waiting for the network', retry: false });
    assert.deepEqual(describeState({ ...base, state: STATE.FAILED }), { dataState: 'failed', text: 'Disconnected', retry: true });
  });

  test('describeState names the HTTP fallback when connected over it, with the same data-state', () => {
    const base = { attempt: 1, maxAttempts: 20, delayMs: null, offline: false, code: null };
    assert.deepEqual(describeState({ ...base, state: STATE.OPEN, transport: 'websocket' }), { dataState: 'open', text: 'Connected', retry: false });
    assert.deepEqual(describeState({ ...base, state: STATE.OPEN, transport: 'sse' }), { dataState: 'open', text: 'Connected (HTTP fallback)', retry: false });
    assert.equal(describeState({ ...base, state: STATE.CONNECTING, transport: 'sse' }).text, 'Connecting…');
    assert.deepEqual(
      describeState({ ...base, state: STATE.RECONNECTING, transport: 'websocket', code: CLOSE.CLIENT_TRANSPORT_SWITCH, delayMs: 400 }, 0, 400),
      { dataState: 'reconnecting', text: 'Switching to WebSocket…', retry: false },
    );
  });
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
    const time = room.list.children[0].children.find((child) => child.tagName === 'TIME');
    assert.equal(time.textContent, formatTime('2026-11-22T04:13:00+00:00'));
    room.destroy();
  });

  test('new messages are appended with textContent, in seq order, once each', () => {
    const room = mountRoom();
    openAndSubscribe(room, [message(43, { body: '<img src=x onerror=alert(1)>' })]);
    room.ws.serverSend(message(44, { author: '<b>eve</b>' }));
    room.ws.serverSend(message(44));
    assert.deepEqual(room.seqs(), ['42', '43', '44']);
    const li = room.list.children[1];
    assert.equal(li.className, 'msg');
    assert.equal(li.querySelector('.body').textContent, '<img src=x onerror=alert(1)>');
    assert.equal(li.querySelector('.body').children.length, 0, 'no markup was parsed');
    assert.equal(room.list.children[2].querySelector('.author').textContent, '<b>eve</b>');
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
    const kinds = (li) => li.children.filter((el) => el.classList.contains('author-kind')).map((el) => el.textContent);
    const [, user, guest, system, unknown] = room.list.children;
    assert.deepEqual([user.className, kinds(user), user.dataset.authorKind], ['msg', [], 'user']);
    assert.deepEqual([guest.className, kinds(guest), guest.dataset.authorKind], ['msg', ['guest'], 'guest']);
    assert.deepEqual([system.className, kinds(system), system.children[0].textContent], ['msg system', ['Announcement'], 'Announcement']);
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
    const li = room.list.children.at(-1);
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
    assert.equal(room.list.children.filter((item) => item.dataset.clientId === sent.client_id).length, 1);
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
    assert.equal(room.list.children[1].classList.contains('pending'), false);
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
    const li = room.list.children.at(-1);
    assert.equal(li.className, 'msg failed');
    assert.equal(li.dataset.error, 'body_too_long');
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

  test('the status line follows every state, with a countdown, and Retry after failure', () => {
    const room = mountRoom({}, { backoffBaseMs: 3000, random: () => 0.99, maxAttempts: 3 });
    assert.equal(room.status.dataset.state, 'connecting');
    assert.equal(room.status.textContent, 'Connecting…');
    room.ws.serverOpen();
    assert.equal(room.status.dataset.state, 'open');
    assert.equal(room.status.textContent, 'Connected');
    room.ws.serverClose(1006);
    assert.equal(room.status.dataset.state, 'reconnecting');
    assert.equal(room.status.textContent, 'Reconnecting in 3 s (attempt 2 of 3)');
    mock.timers.tick(1000);
    assert.equal(room.status.textContent, 'Reconnecting in 2 s (attempt 2 of 3)');
    mock.timers.tick(1000);
    assert.equal(room.status.textContent, 'Reconnecting in 1 s (attempt 2 of 3)');
    mock.timers.tick(970);
    assert.equal(room.status.textContent, 'Connecting…');

    room.env.goOffline();
    room.ws.serverClose(1006);
    assert.equal(room.status.dataset.state, 'offline');
    assert.equal(room.status.textContent, 'Offline — waiting for the network');
    room.env.goOnline();
    assert.equal(room.status.dataset.state, 'connecting');

    room.ws.serverClose(1006);
    assert.equal(room.status.dataset.state, 'failed');
    assert.equal(room.status.textContent, 'Disconnected');
    assert.equal(room.retry.hidden, false);
    assert.equal(liveTimers().pending, 0, 'no countdown left running');

    room.retry.click();
    assert.equal(room.WS.instances.length, 4);
    assert.equal(room.status.textContent, 'Connecting…');
    assert.equal(room.retry.hidden, true);
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
    document.getElementById('start').click();
    assert.equal(WS.instances.length, 2);
    mock.timers.tick(10000);
  });

  test('Start replaces the running socket and its timers; errors are logged', () => {
    const echo = echoPage();
    echo.playground.start();
    const first = echo.ws;
    first.serverOpen();
    echo.start.click();
    assert.equal(echo.WS.instances.length, 2);
    assert.equal(first.closeCalls.length, 1);
    assert.equal(first.listenerCount(), 0);
    assert.equal(liveTimers().pending, 1, 'only the new socket’s close timer');
    echo.ws.serverError();
    assert.deepEqual(echo.lines(), ['@open', '@error', '@close: 1006']);
    assert.equal(liveTimers().pending, 0);
  });
});
