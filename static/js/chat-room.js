/**
 * DOM wiring for the room page (`<main id="room">`): one RippleSocket, one
 * room, the message list in seq order, the composer, a status line that
 * always says what the connection is doing (and, once connected, whether it
 * runs over the HTTP fallback), and who is here.
 *
 * Every piece of text from the network goes into the page through
 * `textContent`, never as HTML.
 */

import { CLOSE, RippleSocket, STATE, TRANSPORT, socketUrl } from './ripple-socket.js';

/** `message.author_kind` values (docs/protocol.md). */
export const AUTHOR_KIND = Object.freeze({ USER: 'user', GUEST: 'guest', SYSTEM: 'system' });

/** A message frame's author kind; a frame without one claims least (guest), unless system. */
export function authorKindOf(frame) {
  if (frame.system === true) return AUTHOR_KIND.SYSTEM;
  if (frame.author_kind === AUTHOR_KIND.USER || frame.author_kind === AUTHOR_KIND.SYSTEM) return frame.author_kind;
  return AUTHOR_KIND.GUEST;
}

/**
 * A presence member's kind. RippleSocket keeps members as `{id, name}`; the
 * server's ids start with `u` for accounts (the same rule as its `kind` field).
 */
export function memberKind(member) {
  if (member.kind === AUTHOR_KIND.USER || member.kind === AUTHOR_KIND.GUEST) return member.kind;
  return typeof member.id === 'string' && member.id.startsWith('u') ? AUTHOR_KIND.USER : AUTHOR_KIND.GUEST;
}

/** `HH:MM` in the reader's time zone, or '' for a date that does not parse. */
export function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/**
 * The status line for a `statechange` detail: `{dataState, text, retry}`.
 * `dataState` is the same whatever the transport; the text names the HTTP fallback.
 */
export function describeState(detail, nowMs = Date.now(), deadlineMs = null) {
  switch (detail.state) {
    case STATE.OPEN:
      if (detail.transport === TRANSPORT.SSE) return { dataState: 'open', text: 'Connected (HTTP fallback)', retry: false };
      return { dataState: 'open', text: 'Connected', retry: false };
    case STATE.CONNECTING:
      return { dataState: 'connecting', text: 'Connecting…', retry: false };
    case STATE.RECONNECTING: {
      if (detail.offline) {
        return { dataState: 'offline', text: 'Offline — waiting for the network', retry: false };
      }
      if (detail.code === CLOSE.TRY_AGAIN_LATER) return { dataState: 'reconnecting', text: 'Server busy, reconnecting…', retry: false };
      if (detail.code === CLOSE.DRAINING) return { dataState: 'reconnecting', text: 'Server restarting, reconnecting…', retry: false };
      if (detail.code === CLOSE.CLIENT_TRANSPORT_SWITCH) return { dataState: 'reconnecting', text: 'Switching to WebSocket…', retry: false };
      const attempt = `(attempt ${detail.attempt} of ${detail.maxAttempts})`;
      if (deadlineMs === null) return { dataState: 'reconnecting', text: `Reconnecting… ${attempt}`, retry: false };
      const seconds = Math.max(1, Math.ceil((deadlineMs - nowMs) / 1000));
      return { dataState: 'reconnecting', text: `Reconnecting in ${seconds} s ${attempt}`, retry: false };
    }
    case STATE.FAILED:
      return { dataState: 'failed', text: 'Disconnected', retry: true };
    default:
      // Closed by the server ("do not come back"): the reader may still try again,
      // except after the session ended, when only a reload signs back in.
      if (detail.code === CLOSE.SESSION_ENDED) return { dataState: 'closed', text: 'Signed out. Reload the page.', retry: false };
      if (detail.code === CLOSE.TOO_MANY_CONNECTIONS) {
        return { dataState: 'closed', text: 'Disconnected: too many open tabs. Close some, then retry.', retry: true };
      }
      if (detail.code === CLOSE.FLOODING) return { dataState: 'closed', text: 'Disconnected for sending too fast.', retry: true };
      return { dataState: 'closed', text: 'Disconnected', retry: detail.code !== CLOSE.NORMAL };
  }
}

/**
 * Wires the room page under `root` and returns `{socket, destroy}`.
 * `socketOptions` go to RippleSocket (tests pass fake WebSocket, window, ...).
 */
export function mountChatRoom(root, {
  document = root.ownerDocument ?? globalThis.document,
  location = globalThis.location,
  socketOptions = {},
} = {}) {
  const byId = (id) => document.getElementById(id);
  const room = root.dataset.room;
  const user = root.dataset.user ?? '';
  const userKind = root.dataset.userKind ?? AUTHOR_KIND.GUEST;
  const lastSeq = Number.parseInt(root.dataset.lastSeq ?? '', 10);
  const status = byId('conn-state');
  const retryButton = byId('retry');
  const historyNote = byId('history-note');
  const list = byId('messages');
  const form = byId('composer');
  const input = byId('body');
  const memberList = byId('members');
  const memberCount = byId('member-count');

  const socket = new RippleSocket(socketUrl(root.dataset.wsUrl, location), socketOptions);
  // Maps the client_id of each message sent from this page to its <li> and
  // which of ack and message frame have arrived; dropped once both have.
  const own = new Map();
  let countdown = null;
  const cleanups = [];

  function listen(target, type, handler) {
    if (!target) return;
    target.addEventListener(type, handler);
    cleanups.push(() => target.removeEventListener(type, handler));
  }

  // --- status line ------------------------------------------------------------

  function stopCountdown() {
    if (countdown !== null) {
      globalThis.clearInterval(countdown);
      countdown = null;
    }
  }

  function renderState(detail) {
    stopCountdown();
    const deadline = detail.state === STATE.RECONNECTING && !detail.offline && detail.delayMs !== null
      ? Date.now() + detail.delayMs
      : null;
    const paint = () => {
      const view = describeState(detail, Date.now(), deadline);
      if (status) {
        status.dataset.state = view.dataState;
        status.dataset.transport = detail.transport;
        status.textContent = view.text;
      }
      if (retryButton) retryButton.hidden = !view.retry;
    };
    paint();
    if (deadline !== null && detail.delayMs > 1000) countdown = globalThis.setInterval(paint, 1000);
  }

  // --- message list -------------------------------------------------------------

  function seqOf(li) {
    const value = li.dataset.seq;
    return value === undefined || value === '' ? null : Number(value);
  }

  function findBySeq(seq) {
    const items = list.children;
    for (let i = items.length - 1; i >= 0; i -= 1) {
      if (seqOf(items[i]) === seq) return items[i];
    }
    return null;
  }

  /** Moves `li` to its place: after every lower seq, before higher seqs and pending sends. */
  function placeBySeq(li, seq) {
    const items = list.children;
    let before = null;
    for (let i = items.length - 1; i >= 0; i -= 1) {
      const item = items[i];
      if (item === li) continue;
      const itemSeq = seqOf(item);
      if (itemSeq !== null && itemSeq < seq) break;
      before = item;
    }
    list.insertBefore(li, before);
  }

  function span(className, text) {
    const el = document.createElement('span');
    el.className = className;
    el.textContent = text;
    return el;
  }

  function timeElement(iso) {
    const el = document.createElement('time');
    el.setAttribute('datetime', iso);
    el.textContent = formatTime(iso);
    return el;
  }

  /**
   * Fills a message's `<li>`. The server's `author_kind` decides the marks: an
   * "Announcement" label before an operators' post, a "guest" tag after a
   * guest's name; no text a guest sends can make either.
   */
  function fill(li, { author, authorKind, sentAt, body }) {
    const parts = [];
    if (authorKind === AUTHOR_KIND.SYSTEM) parts.push(span('author-kind', 'Announcement'), ' ');
    parts.push(span('author', author));
    if (authorKind === AUTHOR_KIND.GUEST) parts.push(' ', span('author-kind', 'guest'));
    parts.push(' ', timeElement(sentAt), ' ', span('body', body));
    li.replaceChildren(...parts);
    if (authorKind === AUTHOR_KIND.SYSTEM) li.classList.add('system');
    else li.classList.remove('system');
    if (authorKind) li.dataset.authorKind = authorKind;
    else delete li.dataset.authorKind;
  }

  function settle(clientId, entry, key) {
    entry[key] = true;
    if (entry.acked && entry.delivered) own.delete(clientId);
  }

  function showMessage(frame) {
    const mine = frame.client_id ? own.get(frame.client_id) : undefined;
    let li = mine?.li ?? findBySeq(frame.seq);
    if (!li) {
      li = document.createElement('li');
      li.className = 'msg';
    }
    li.classList.remove('pending');
    li.dataset.seq = String(frame.seq);
    if (frame.client_id) li.dataset.clientId = frame.client_id;
    fill(li, { author: frame.author, authorKind: authorKindOf(frame), sentAt: frame.sent_at, body: frame.body });
    placeBySeq(li, frame.seq);
    if (mine) settle(frame.client_id, mine, 'delivered');
  }

  function confirm(clientId, ack) {
    const entry = own.get(clientId);
    if (!entry) return;
    const { li } = entry;
    li.classList.remove('pending');
    li.dataset.seq = String(ack.seq);
    placeBySeq(li, ack.seq);
    settle(clientId, entry, 'acked');
  }

  function refuse(clientId, error) {
    const entry = own.get(clientId);
    if (!entry) return;
    own.delete(clientId);
    entry.li.classList.remove('pending');
    entry.li.classList.add('failed');
    entry.li.dataset.error = error?.code ?? 'error';
    entry.li.title = `Not sent: ${error?.message ?? 'error'}`;
  }

  function submit(event) {
    event.preventDefault();
    const body = input.value;
    if (body.trim() === '') return;
    const { clientId, acked } = socket.send(room, body);
    const li = document.createElement('li');
    li.className = 'msg pending';
    li.dataset.clientId = clientId;
    fill(li, { author: ownName(), authorKind: ownKind(), sentAt: new Date().toISOString(), body });
    list.append(li);
    own.set(clientId, { li, acked: false, delivered: false });
    input.value = '';
    acked.then((ack) => confirm(clientId, ack), (error) => refuse(clientId, error));
  }

  // --- who is here ---------------------------------------------------------------

  /** The name this tab posts under: the server's word once welcomed. */
  function ownName() {
    const name = socket.welcome?.user?.name;
    return typeof name === 'string' ? name : user;
  }

  /** The kind this tab posts as: the server's word once welcomed. */
  function ownKind() {
    const authenticated = socket.welcome?.user?.authenticated;
    if (typeof authenticated !== 'boolean') return userKind;
    return authenticated ? AUTHOR_KIND.USER : AUTHOR_KIND.GUEST;
  }

  function renderMembers(members) {
    if (memberCount) memberCount.textContent = String(members.length);
    if (!memberList) return;
    const me = ownName();
    memberList.replaceChildren(...members.map((member) => {
      const li = document.createElement('li');
      li.dataset.memberId = member.id;
      // The stylesheet tags guests; the text stays the bare name.
      li.dataset.kind = memberKind(member);
      if (member.name === me) li.className = 'me';
      li.textContent = member.name;
      return li;
    }));
  }

  /** A list kept from before a disconnect stays visible, marked as possibly out of date. */
  function markMembersStale(stale) {
    if (!memberList) return;
    if (stale) memberList.classList.add('stale');
    else memberList.classList.remove('stale');
  }

  // --- wiring -------------------------------------------------------------------

  listen(socket, 'statechange', (event) => {
    renderState(event.detail);
    if (event.detail.state !== STATE.OPEN) markMembersStale(true);
  });
  listen(socket, 'welcome', () => renderMembers(socket.members(room)));
  listen(socket, 'subscribed', (event) => {
    if (event.detail.room === room) markMembersStale(false);
  });
  listen(socket, 'presence', (event) => {
    if (event.detail.room === room) renderMembers(event.detail.members);
  });
  listen(socket, 'reset', () => {
    if (historyNote) historyNote.hidden = false;
  });
  // A moderator deleted messages: they keep their place, without author or text.
  listen(socket, 'deleted', (event) => {
    if (event.detail.room !== room) return;
    for (const seq of event.detail.seqs) {
      const li = findBySeq(seq);
      if (!li) continue;
      li.classList.add('deleted');
      const author = li.querySelector('.author');
      const body = li.querySelector('.body');
      if (author) author.textContent = '';
      if (body) body.textContent = 'message deleted';
      for (const child of Array.from(li.children)) {
        if (child.classList.contains('author-kind')) li.removeChild(child);
      }
    }
  });
  // The server stopped serving this room (closed by a moderator, or access revoked).
  listen(socket, 'unsubscribed', (event) => {
    if (event.detail.room !== room) return;
    if (historyNote) {
      historyNote.hidden = false;
      historyNote.textContent = event.detail.reason === 'room_closed'
        ? 'This room was closed by a moderator.'
        : 'You no longer have access to this room.';
    }
    if (input) input.disabled = true;
    const button = form?.querySelector('button');
    if (button) button.disabled = true;
  });
  listen(socket, 'pong', (event) => {
    if (status && event.detail.rttMs !== null) status.title = `Round trip ${event.detail.rttMs} ms`;
  });
  listen(retryButton, 'click', () => socket.retry());
  listen(form, 'submit', submit);

  // The server renders times in UTC; show every time in the reader's zone.
  for (const li of Array.from(list.children)) {
    for (const child of Array.from(li.children)) {
      if (child.tagName === 'TIME' && child.getAttribute('datetime')) {
        child.textContent = formatTime(child.getAttribute('datetime')) || child.textContent;
      }
    }
  }

  socket.subscribe(room, { since: Number.isInteger(lastSeq) && lastSeq >= 0 ? lastSeq : null, onMessage: showMessage });
  renderState(socket.stateDetail);
  renderMembers(socket.members(room));
  if (socket.state !== STATE.OPEN) markMembersStale(true);

  return {
    socket,
    destroy() {
      stopCountdown();
      for (const cleanup of cleanups.splice(0)) cleanup();
      socket.close();
    },
  };
}

const pageRoot = globalThis.document?.getElementById?.('room');
if (pageRoot) {
  const { socket } = mountChatRoom(pageRoot);
  if (globalThis.window) globalThis.window.ripple = socket;
}
