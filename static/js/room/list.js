/**
 * The message list (`<ol id="messages">`): one `<li class="msg">` per message
 * in seq order (messages still on their way after every stored one), a day
 * separator where the day changes, and runs of one author under one name.
 *
 * Every piece of text goes in through `textContent` or text nodes; links are
 * `<a>` elements built by ./links.js.
 */

import { continues, dayKey, dayLabel, formatFullTime, formatTime } from './grouping.js';
import { linkify } from './links.js';

/** `message.author_kind` values (docs/protocol.md). */
export const AUTHOR_KIND = Object.freeze({ USER: 'user', GUEST: 'guest', SYSTEM: 'system' });

/** A message frame's author kind; a frame without one claims least (guest), unless system. */
export function authorKindOf(frame) {
  if (frame.system === true) return AUTHOR_KIND.SYSTEM;
  if (frame.author_kind === AUTHOR_KIND.USER || frame.author_kind === AUTHOR_KIND.SYSTEM) return frame.author_kind;
  return AUTHOR_KIND.GUEST;
}

/** Children of `el` as an array, for a live DOM collection or a plain array alike. */
function childrenOf(el) {
  return Array.from(el.children);
}

function isMessage(li) {
  return li.classList.contains('msg');
}

export class MessageList {
  #list;
  #document;
  #now;

  constructor(list, { document, now = () => new Date() }) {
    this.#list = list;
    this.#document = document;
    this.#now = now;
  }

  /** Every message item, in the order shown. */
  items() {
    return childrenOf(this.#list).filter(isMessage);
  }

  findBySeq(seq) {
    const items = this.items();
    for (let i = items.length - 1; i >= 0; i -= 1) {
      if (seqOf(items[i]) === seq) return items[i];
    }
    return null;
  }

  findByClientId(clientId) {
    return this.items().find((li) => li.dataset.clientId === clientId) ?? null;
  }

  /** Moves `li` to its place: after every lower seq, before higher seqs and messages still sending. */
  placeBySeq(li, seq) {
    const items = this.items();
    let before = null;
    for (let i = items.length - 1; i >= 0; i -= 1) {
      const item = items[i];
      if (item === li) continue;
      const itemSeq = seqOf(item);
      if (itemSeq !== null && itemSeq < seq) break;
      before = item;
    }
    this.#list.insertBefore(li, before);
  }

  /** A new `<li>` for a message being sent, at the end of the list. */
  appendPending(message) {
    const li = this.#document.createElement('li');
    li.className = 'msg pending';
    li.dataset.clientId = message.clientId;
    this.fill(li, message);
    this.#list.append(li);
    this.regroup();
    return li;
  }

  /**
   * Shows a stored message (`{seq, clientId, author, authorKind, sentAt, body}`)
   * in `li` (the page's own pending item), in the item with its seq, or in a new one.
   * Returns `{li, created}`: `created` is true when the list grew.
   */
  show(message, li = null) {
    let item = li ?? this.findBySeq(message.seq);
    const created = item === null;
    if (created) {
      item = this.#document.createElement('li');
      item.className = 'msg';
    }
    item.classList.remove('pending', 'failed');
    item.dataset.seq = String(message.seq);
    if (message.clientId) item.dataset.clientId = message.clientId;
    this.fill(item, message);
    this.placeBySeq(item, message.seq);
    this.regroup();
    return { li: item, created };
  }

  /**
   * Fills a message's `<li>`. The server's `author_kind` decides the marks: an
   * "Announcement" label before an operators' post, a "guest" tag after a
   * guest's name; no text a guest sends can make either.
   */
  fill(li, { author, authorKind, sentAt, body }) {
    const head = this.#span('head');
    if (authorKind === AUTHOR_KIND.SYSTEM) head.append(this.#span('author-kind', 'Announcement'), ' ');
    head.append(this.#span('author', author));
    if (authorKind === AUTHOR_KIND.GUEST) head.append(' ', this.#span('author-kind', 'guest'));
    const text = this.#span('body');
    text.append(...linkify(this.#document, body));
    li.replaceChildren(head, ' ', this.#time(sentAt), ' ', text);
    if (authorKind === AUTHOR_KIND.SYSTEM) li.classList.add('system');
    else li.classList.remove('system');
    li.dataset.author = author;
    li.dataset.sentAt = sentAt;
    if (authorKind) li.dataset.authorKind = authorKind;
    else delete li.dataset.authorKind;
  }

  /** A moderator deleted these messages: they keep their place, without author or text. */
  markDeleted(seqs) {
    for (const seq of seqs) {
      const li = this.findBySeq(seq);
      if (!li) continue;
      li.classList.add('deleted');
      li.dataset.author = '';
      const head = li.querySelector('.head');
      if (head) head.replaceChildren(this.#span('author'));
      const body = li.querySelector('.body');
      if (body) body.textContent = 'message deleted';
    }
    this.regroup();
  }

  /** The server-rendered history: times in the reader's zone, links clickable, grouped. */
  decorate() {
    for (const li of this.items()) {
      const time = li.querySelector('.time');
      const iso = time?.getAttribute('datetime');
      if (iso) {
        time.textContent = formatTime(iso) || time.textContent;
        time.title = formatFullTime(iso);
      }
      const body = li.querySelector('.body');
      if (body && !li.classList.contains('deleted')) body.replaceChildren(...linkify(this.#document, body.textContent));
    }
    this.regroup();
  }

  /**
   * Puts a day separator before the first message of each day and marks each
   * message that continues its author's run (`.continued`). Touches the DOM
   * only where the wanted order differs from what is there.
   */
  regroup() {
    const now = this.#now();
    const spare = new Map();
    for (const li of childrenOf(this.#list)) {
      if (li.classList.contains('day-separator')) spare.set(li.dataset.day, li);
    }
    const wanted = [];
    let previous = null;
    let previousDay = null;
    for (const li of this.items()) {
      const current = { author: li.dataset.author ?? '', kind: li.dataset.authorKind ?? '', sentAt: li.dataset.sentAt ?? '' };
      const day = dayKey(current.sentAt);
      if (day !== '' && day !== previousDay) {
        let separator = spare.get(day);
        spare.delete(day);
        if (!separator) {
          separator = this.#document.createElement('li');
          separator.className = 'day-separator';
          separator.dataset.day = day;
        }
        const label = dayLabel(current.sentAt, now);
        if (separator.textContent !== label) separator.textContent = label;
        wanted.push(separator);
        previousDay = day;
        previous = null;
      }
      const grouped = !li.classList.contains('deleted') && continues(previous, current);
      if (grouped) li.classList.add('continued');
      else li.classList.remove('continued');
      wanted.push(li);
      previous = li.classList.contains('deleted') ? null : current;
    }
    for (const separator of spare.values()) separator.parentNode?.removeChild(separator);
    let shown = childrenOf(this.#list);
    wanted.forEach((li, index) => {
      if (shown[index] === li) return;
      this.#list.insertBefore(li, shown[index] ?? null);
      shown = childrenOf(this.#list);
    });
  }

  #span(className, text = null) {
    const el = this.#document.createElement('span');
    el.className = className;
    if (text !== null) el.textContent = text;
    return el;
  }

  #time(iso) {
    const el = this.#document.createElement('time');
    el.className = 'time';
    el.setAttribute('datetime', iso);
    el.title = formatFullTime(iso);
    el.textContent = formatTime(iso);
    return el;
  }
}

function seqOf(li) {
  const value = li.dataset.seq;
  return value === undefined || value === '' ? null : Number(value);
}
