/**
 * The room page's entry (`<main id="room">`): one RippleSocket, one room, and
 * the modules of ./room/ mounted on it: the message list (list.js, with
 * grouping.js and links.js), following new messages and the unread count
 * (follow.js), the message box (composer.js) and the page's own sends
 * (sending.js), the status line and its Retry now (status.js). Here: who
 * is here, and the wiring between them.
 *
 * Every piece of text from the network goes into the page through
 * `textContent` (or text nodes), never as HTML.
 */

import { CLOSE, RippleSocket, STATE, socketUrl } from './ripple-socket.js';
import { Composer } from './room/composer.js';
import { Follow } from './room/follow.js';
import { AUTHOR_KIND, MessageList, authorKindOf } from './room/list.js';
import { Outgoing } from './room/sending.js';
import { StatusLine } from './room/status.js';
import { closedText, mountModeration } from './room/moderation.js';
import { mountTyping } from './room/typing.js';

export { AUTHOR_KIND, authorKindOf } from './room/list.js';
export { formatTime } from './room/grouping.js';
export { describeState } from './room/status.js';

/**
 * A presence member's kind. RippleSocket keeps members as `{id, name}`; the
 * server's ids start with `u` for accounts (the same rule as its `kind` field).
 */
export function memberKind(member) {
  if (member.kind === AUTHOR_KIND.USER || member.kind === AUTHOR_KIND.GUEST) return member.kind;
  return typeof member.id === 'string' && member.id.startsWith('u') ? AUTHOR_KIND.USER : AUTHOR_KIND.GUEST;
}

/**
 * Wires the room page under `root` and returns `{socket, destroy}`.
 * `socketOptions` go to RippleSocket (tests pass fake WebSocket, window, ...).
 */
export function mountChatRoom(root, {
  document = root.ownerDocument ?? globalThis.document,
  window = globalThis.window ?? null,
  location = globalThis.location,
  socketOptions = {},
} = {}) {
  const byId = (id) => document.getElementById(id);
  const room = root.dataset.room;
  const user = root.dataset.user ?? '';
  const userKind = root.dataset.userKind ?? AUTHOR_KIND.GUEST;
  const lastSeq = Number.parseInt(root.dataset.lastSeq ?? '', 10);
  const historyNote = byId('history-note');
  const memberList = byId('members');
  const memberCount = byId('member-count');

  const socket = new RippleSocket(socketUrl(root.dataset.wsUrl, location), socketOptions);
  const list = new MessageList(byId('messages'), { document });
  const follow = new Follow({ scroller: byId('message-log') ?? byId('messages'), hint: byId('new-messages'), document, window });
  const composer = new Composer({
    form: byId('composer'), input: byId('body'), note: byId('composer-note'), onSend: (body) => outgoing.send(body),
  });
  const outgoing = new Outgoing({
    socket, room, list, document,
    whoAmI: () => ({ name: ownName(), kind: ownKind() }),
    onSent: () => follow.jump(),
    onEdit: (body) => composer.restore(body),
  });
  const cleanups = [];

  function listen(target, type, handler) {
    if (!target) return;
    target.addEventListener(type, handler);
    cleanups.push(() => target.removeEventListener(type, handler));
  }

  // --- message list -------------------------------------------------------------

  /** A message frame of the room: the page's own pending item takes it, or the list grows. */
  function showMessage(frame) {
    const mine = outgoing.take(frame);
    const { created } = list.show({
      seq: frame.seq, clientId: frame.client_id, author: frame.author, authorKind: authorKindOf(frame), sentAt: frame.sent_at, body: frame.body,
    }, mine);
    if (created) follow.incoming(1);
    else follow.changed();
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
    if (event.detail.room === room) list.markDeleted(event.detail.seqs);
  });
  // The server stopped serving this room (closed by a moderator, or access revoked). A closed
  // room's composer block, with the moderator's reason, is room/moderation.js's.
  listen(socket, 'unsubscribed', (event) => {
    if (event.detail.room !== room) return;
    const closed = event.detail.reason === 'room_closed';
    if (historyNote) {
      historyNote.hidden = false;
      historyNote.textContent = closed ? closedText(event.detail.message) : 'You no longer have access to this room.';
    }
    if (!closed) composer.block('room', 'You no longer have access to this room.');
  });
  // Signed out (4401): only a reload signs back in; sending would come back as a guest.
  listen(socket, 'statechange', (event) => {
    const { state, code } = event.detail;
    if (state === STATE.CLOSED && code === CLOSE.SESSION_ENDED) composer.block('session', 'You are signed out: reload the page to send messages.');
  });

  // Mount points: the typing indicator (room/typing.js) and moderation (room/moderation.js)
  // take the socket, the room, `composer` (block/unblock) and `list` here.
  cleanups.push(mountTyping({ socket, room, input: byId('body'), form: byId('composer'), document }));
  cleanups.push(mountModeration({ socket, room, composer, line: byId('conn-state'), button: byId('retry'), historyNote }));

  // The server renders the history in UTC and as plain text: local times, links, groups.
  list.decorate();
  follow.start();
  composer.focus();

  socket.subscribe(room, { since: Number.isInteger(lastSeq) && lastSeq >= 0 ? lastSeq : null, onMessage: showMessage });
  // The status line and its Retry now (room/status.js).
  const statusLine = new StatusLine({ socket, line: byId('conn-state'), button: byId('retry'), document });
  renderMembers(socket.members(room));
  if (socket.state !== STATE.OPEN) markMembersStale(true);

  return {
    socket,
    messageList: list,
    follow,
    composer,
    destroy() {
      statusLine.destroy();
      for (const cleanup of cleanups.splice(0)) cleanup();
      outgoing.destroy();
      composer.destroy();
      follow.destroy();
      socket.close();
    },
  };
}

const pageRoot = globalThis.document?.getElementById?.('room');
if (pageRoot) {
  const { socket } = mountChatRoom(pageRoot);
  if (globalThis.window) globalThis.window.ripple = socket;
}
