/**
 * The page's own messages on their way: shown at once as "Sending…", confirmed
 * by the server's ack (or by the room stream, whichever comes first), and,
 * when refused, marked "Not sent" in words with a way out: Retry (the same
 * client_id, so the server stores it once) or, for a message the server will
 * never take as it is, Edit (back into the box).
 */

import { CLOSE, STATE } from '../ripple-socket.js';

// Refusals that the same message would meet again: the reader has to change it.
const NEEDS_EDIT = new Set(['body_too_long', 'body_empty', 'invalid_body']);

const REASONS = {
  body_too_long: 'too long',
  body_empty: 'empty',
  invalid_body: 'not valid text',
  closed: 'disconnected',
  queue_full: 'too many messages waiting',
  forbidden: 'no access to this room',
  unsubscribed: 'no longer in this room',
  room_closed: 'the room is closed',
};

/** "Not sent — too long" for an error with `code` (and the server's `message`). */
export function failureText(error) {
  const code = error?.code ?? 'error';
  return `Not sent — ${REASONS[code] ?? error?.message ?? code}`;
}

export class Outgoing {
  #socket;
  #room;
  #list;
  #document;
  #whoAmI;
  #onSent;
  #onEdit;
  // Maps the client_id of each message sent from this page to
  // {li, body, acked, delivered}; dropped once both ack and message frame arrived.
  #own = new Map();
  #cleanups = [];

  constructor({ socket, room, list, document, whoAmI, onSent = () => {}, onEdit = () => {} }) {
    this.#socket = socket;
    this.#room = room;
    this.#list = list;
    this.#document = document;
    this.#whoAmI = whoAmI;
    this.#onSent = onSent;
    this.#onEdit = onEdit;
  }

  /** Sends `body` and shows it as sending at the end of the list. */
  send(body) {
    const { name, kind } = this.#whoAmI();
    const { clientId, acked } = this.#socket.send(this.#room, body);
    const li = this.#list.appendPending({ clientId, author: name, authorKind: kind, sentAt: new Date().toISOString(), body });
    this.#track(clientId, li, body, acked);
    this.#onSent(li);
  }

  /** The pending `<li>` for a message frame the page sent itself, or null. */
  take(frame) {
    const entry = frame.client_id ? this.#own.get(frame.client_id) : undefined;
    if (!entry) return null;
    this.#settle(frame.client_id, entry, 'delivered');
    return entry.li;
  }

  destroy() {
    for (const cleanup of this.#cleanups.splice(0)) cleanup();
    this.#own.clear();
  }

  #track(clientId, li, body, acked) {
    const entry = { li, body, acked: false, delivered: false };
    this.#own.set(clientId, entry);
    this.#mark(li, 'Sending…');
    acked.then((ack) => this.#confirm(clientId, entry, ack), (error) => this.#refuse(clientId, entry, error));
  }

  #confirm(clientId, entry, ack) {
    const { li } = entry;
    li.classList.remove('pending', 'failed');
    delete li.dataset.error;
    this.#mark(li, null);
    if (!li.dataset.seq) {
      li.dataset.seq = String(ack.seq);
      this.#list.placeBySeq(li, ack.seq);
      this.#list.regroup();
    }
    this.#settle(clientId, entry, 'acked');
  }

  #refuse(clientId, entry, error) {
    if (this.#own.get(clientId) !== entry) return;
    this.#own.delete(clientId);
    const { li, body } = entry;
    // The room stream may have shown it stored already (an ack lost with its socket).
    if (li.dataset.seq) return;
    const code = error?.code ?? 'error';
    li.classList.remove('pending');
    li.classList.add('failed');
    li.dataset.error = code;
    const button = this.#document.createElement('button');
    button.type = 'button';
    button.className = 'send-action';
    if (NEEDS_EDIT.has(code)) {
      button.textContent = 'Edit';
      this.#once(button, () => {
        li.parentNode?.removeChild(li);
        this.#list.regroup();
        this.#onEdit(body);
      });
    } else {
      button.textContent = 'Retry';
      this.#once(button, () => this.#retry(clientId, li, body));
    }
    this.#mark(li, failureText(error), button);
  }

  /** Sends a refused message again with its client_id, reconnecting first if the socket gave up. */
  #retry(clientId, li, body) {
    const { state, stateDetail } = this.#socket;
    const signedOut = state === STATE.CLOSED && stateDetail?.code === CLOSE.SESSION_ENDED;
    if (!signedOut && (state === STATE.FAILED || state === STATE.CLOSED)) this.#socket.retry();
    li.classList.remove('failed');
    li.classList.add('pending');
    delete li.dataset.error;
    const { acked } = this.#socket.send(this.#room, body, { clientId });
    this.#track(clientId, li, body, acked);
  }

  #settle(clientId, entry, key) {
    entry[key] = true;
    if (entry.acked && entry.delivered) this.#own.delete(clientId);
  }

  /** Shows `text` (and `action`) as the message's sending state, or removes it (null). */
  #mark(li, text, action = null) {
    const old = li.querySelector('.send-state');
    if (old) old.parentNode.removeChild(old);
    if (text === null) return;
    const state = this.#document.createElement('span');
    state.className = 'send-state';
    state.append(text);
    if (action) state.append(' ', action);
    li.append(state);
  }

  #once(button, handler) {
    const listener = () => {
      button.removeEventListener('click', listener);
      handler();
    };
    button.addEventListener('click', listener);
    this.#cleanups.push(() => button.removeEventListener('click', listener));
  }
}
