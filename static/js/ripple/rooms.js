/**
 * The rooms a RippleSocket is subscribed to: each room's subscribe and its
 * reply, messages delivered once in `seq` order (a gap re-subscribes from the
 * last seq seen), its member list, and the rooms the server stops serving.
 */

import { CLOSE, ERROR_CODE, FRAME } from './constants.js';
import { reportListenerError, rippleError } from './frames.js';
import { RoomMembers } from './members.js';

// Rooms are `pending` from the moment a subscribe is owed or in flight until
// its `subscribed` arrives; live messages are only accepted while `active`.
const ROOM_PENDING = 'pending';
const ROOM_ACTIVE = 'active';

// The Schedule name of the wait before subscribes refused by a rate limit go again.
const RETRY_TIMER = 'subscribe';

/** The least time between two `typing` frames for one room (the server drops closer ones). */
export const TYPING_EVERY_MS = 3000;

/**
 * @typedef {object} RoomsHost what the rooms need of their socket
 * @property {(frame: object) => boolean} sendFrame sends one frame on the current socket
 * @property {(type: string, detail: object) => void} dispatch fires a CustomEvent on the socket
 * @property {(code: number, reason: string) => void} drop abandons the socket; a reconnect follows
 * @property {(error: Error, room: string) => void} rejectSends rejects the waiting sends of a room
 * @property {() => void} pumpSends sends what waited for a room to be subscribed
 */

// Maps each frame type about a room to the Rooms method that takes it.
const ROOM_FRAMES = Object.freeze({
  [FRAME.SUBSCRIBED]: 'onSubscribed',
  [FRAME.MESSAGE]: 'onMessage',
  [FRAME.PRESENCE]: 'onPresence',
  [FRAME.UNSUBSCRIBED]: 'onUnsubscribed',
  [FRAME.DELETED]: 'onDeleted',
  [FRAME.ROOM_CLOSED]: 'onRoomClosed',
  [FRAME.ROOM_REOPENED]: 'onRoomReopened',
  [FRAME.TYPING]: 'onTyping',
});

export class Rooms {
  // Maps room slug to {since, lastSeq, onMessage, status, ref, members,
  // retrySubscribe}; `retrySubscribe` marks a subscribe refused by a rate limit.
  #rooms = new Map();
  // Rooms a moderator closed, kept (with lastSeq and onMessage) until they reopen: the
  // server sends `room_reopened`, or answers a subscribe sent after a reconnect (`ref`).
  #closed = new Map();
  #refCounter = 0;
  #schedule;
  /** @type {RoomsHost} */
  #host;

  constructor({ schedule, host }) {
    this.#schedule = schedule;
    this.#host = host;
  }

  /** Take a server frame about a room; false when its type is not one of those. */
  handle(frame) {
    const method = ROOM_FRAMES[frame.type];
    if (method === undefined) return false;
    this[method](frame);
    return true;
  }

  has(room) {
    return this.#rooms.has(room);
  }

  /** True once `room`'s subscribe was answered on the current socket. */
  isActive(room) {
    return this.#rooms.get(room)?.status === ROOM_ACTIVE;
  }

  /** Adds `room` and returns true; for a room already there, only replaces `onMessage` and returns false. */
  add(room, since, onMessage) {
    const existing = this.#rooms.get(room);
    if (existing) {
      if (onMessage) existing.onMessage = onMessage;
      return false;
    }
    this.#rooms.set(room, {
      since,
      lastSeq: since,
      onMessage,
      status: ROOM_PENDING,
      ref: null,
      members: new RoomMembers(),
      retrySubscribe: false,
    });
    return true;
  }

  /** Forgets `room`; false when it was not there (or only waited for a reopen). */
  delete(room) {
    this.#closed.delete(room);
    return this.#rooms.delete(room);
  }

  clear() {
    this.#rooms.clear();
    this.#closed.clear();
  }

  /** `room`'s members as `{id, name}`, sorted; empty for a room not subscribed. */
  members(room) {
    return this.#rooms.get(room)?.members.list() ?? [];
  }

  /** Sends the subscribe of `room`, since its last seq seen. */
  subscribe(room) {
    const entry = this.#rooms.get(room);
    if (entry) this.#sendSubscribe(room, entry);
  }

  subscribeAll() {
    for (const [room, entry] of this.#rooms) this.#sendSubscribe(room, entry);
    // A closed room may have reopened while this client was away: ask (a refusal changes nothing,
    // and makes the server tell this socket of the reopen).
    for (const [room, entry] of this.#closed) {
      entry.ref = `s${++this.#refCounter}`;
      const frame = { type: FRAME.SUBSCRIBE, room, ref: entry.ref };
      if (entry.lastSeq !== null) frame.since = entry.lastSeq;
      this.#host.sendFrame(frame);
    }
  }

  /** Sends `typing` for an active room, at most once every TYPING_EVERY_MS; true when sent. */
  typing(room, nowMs = Date.now()) {
    const entry = this.#rooms.get(room);
    if (!entry || entry.status !== ROOM_ACTIVE) return false;
    if (entry.typingAt !== undefined && nowMs - entry.typingAt < TYPING_EVERY_MS) return false;
    entry.typingAt = nowMs;
    return this.#host.sendFrame({ type: FRAME.TYPING, room });
  }

  onTyping(frame) {
    if (!this.isActive(frame.room) || typeof frame.name !== 'string') return;
    this.#host.dispatch('typing', { room: frame.room, name: frame.name, kind: frame.kind });
  }

  /** A closed room reopened: subscribe again from the last seq seen (`ref`: a probe's answer). */
  #reopen(room, ref = null) {
    const entry = this.#closed.get(room);
    if (!entry) return false;
    this.#closed.delete(room);
    this.#rooms.set(room, entry);
    entry.status = ROOM_PENDING;
    entry.retrySubscribe = false;
    this.#host.dispatch('reopened', { room });
    if (ref === null) this.#sendSubscribe(room, entry);
    else entry.ref = ref;
    return true;
  }

  onRoomReopened(frame) {
    if (!this.#rooms.has(frame.room)) this.#reopen(frame.room);
  }

  /** The socket is gone: every room waits for a subscribe on the next one. */
  release() {
    for (const entry of this.#rooms.values()) {
      entry.status = ROOM_PENDING;
      entry.ref = null;
      entry.retrySubscribe = false;
    }
  }

  #sendSubscribe(room, entry) {
    entry.status = ROOM_PENDING;
    entry.ref = `s${++this.#refCounter}`;
    const frame = { type: FRAME.SUBSCRIBE, room, ref: entry.ref };
    if (entry.lastSeq !== null) frame.since = entry.lastSeq;
    this.#host.sendFrame(frame);
  }

  /** A gap in seq: subscribe again from the last seq seen; the reply fills the gap. */
  #resubscribe(room, entry) {
    this.#host.sendFrame({ type: FRAME.UNSUBSCRIBE, room });
    this.#sendSubscribe(room, entry);
  }

  onSubscribed(frame) {
    const room = frame.room;
    const probe = this.#closed.get(room);
    if (probe && frame.ref !== undefined && frame.ref !== null && frame.ref === probe.ref) this.#reopen(room, frame.ref);
    const entry = this.#rooms.get(room);
    if (!entry || entry.status !== ROOM_PENDING) return;
    // A stale reply (to a subscribe made before an unsubscribe) carries an older ref.
    if (frame.ref !== undefined && frame.ref !== null && frame.ref !== entry.ref) return;
    entry.status = ROOM_ACTIVE;
    // A fresh list on every (re)subscribe: changes missed meanwhile are in it.
    entry.members = new RoomMembers(frame.members);
    if (frame.complete === false) {
      entry.lastSeq = null;
      this.#host.dispatch('reset', { room });
    }
    const current = () => this.#rooms.get(room) === entry && entry.status === ROOM_ACTIVE;
    for (const message of Array.isArray(frame.messages) ? frame.messages : []) {
      if (!current()) return;
      if (!Number.isInteger(message?.seq)) continue;
      if (entry.lastSeq !== null && message.seq <= entry.lastSeq) continue;
      entry.lastSeq = message.seq;
      this.#deliver(entry, message);
    }
    if (this.#rooms.get(room) !== entry) return;
    if (Number.isInteger(frame.last_seq) && (entry.lastSeq === null || frame.last_seq > entry.lastSeq)) {
      entry.lastSeq = frame.last_seq;
    }
    this.#host.dispatch('subscribed', frame);
    if (current()) this.#dispatchPresence(room, entry, [], []);
    if (current()) this.#host.pumpSends();
  }

  onMessage(frame) {
    const entry = this.#rooms.get(frame.room);
    if (!entry || entry.status !== ROOM_ACTIVE || !Number.isInteger(frame.seq)) return;
    if (entry.lastSeq !== null) {
      if (frame.seq <= entry.lastSeq) return;
      if (frame.seq > entry.lastSeq + 1) {
        this.#resubscribe(frame.room, entry);
        return;
      }
    }
    entry.lastSeq = frame.seq;
    this.#deliver(entry, frame);
  }

  #deliver(entry, frame) {
    if (typeof entry.onMessage === 'function') {
      try {
        entry.onMessage(frame);
      } catch (error) {
        reportListenerError(error);
      }
    }
    this.#host.dispatch('message', frame);
  }

  onPresence(frame) {
    const entry = this.#rooms.get(frame.room);
    // Before `subscribed` the changes are already in the list it brings.
    if (!entry || entry.status !== ROOM_ACTIVE) return;
    const change = entry.members.apply(frame.joins, frame.leaves);
    if (change.changed) this.#dispatchPresence(frame.room, entry, change.joins, change.leaves);
  }

  #dispatchPresence(room, entry, joins, leaves) {
    this.#host.dispatch('presence', { room, members: entry.members.list(), joins, leaves });
  }

  onDeleted(frame) {
    if (this.#rooms.has(frame.room) && Array.isArray(frame.seqs)) {
      this.#host.dispatch('deleted', { room: frame.room, seqs: frame.seqs });
    }
  }

  /**
   * An `error` frame answering a subscribe still in flight (matched by `ref`).
   * Returns false when it answers none.
   */
  subscribeRefused(frame, retryAfterMs) {
    if (frame.ref === undefined || frame.ref === null) return false;
    for (const [room, entry] of this.#closed) {
      if (entry.ref !== frame.ref) continue;
      // Still closed (the socket now waits for `room_reopened`), or gone for good.
      entry.ref = null;
      if (frame.code !== ERROR_CODE.ROOM_CLOSED) this.#closed.delete(room);
      return true;
    }
    for (const [room, entry] of this.#rooms) {
      if (entry.ref !== frame.ref || entry.status !== ROOM_PENDING) continue;
      this.#onSubscribeError(room, entry, frame, retryAfterMs);
      return true;
    }
    return false;
  }

  #onSubscribeError(room, entry, frame, retryAfterMs) {
    if (frame.code === ERROR_CODE.ALREADY_SUBSCRIBED) {
      // The server still holds the old subscription: leave it and join again.
      this.#resubscribe(room, entry);
    } else if (frame.code === ERROR_CODE.SERVER_ERROR) {
      // Transient (e.g. database down): reconnecting with backoff retries every room.
      this.#host.drop(CLOSE.CLIENT_SUBSCRIBE_FAILED, 'subscribe failed');
    } else if (frame.code === ERROR_CODE.RATE_LIMITED) {
      entry.retrySubscribe = true;
      this.#schedule.noSooner(RETRY_TIMER, retryAfterMs, () => this.#retrySubscribes());
    } else {
      // Refused for good (`forbidden`, `room_closed`, `invalid_room`, ...).
      const code = frame.code ?? 'error';
      this.#endRoom(room, rippleError(code, frame.message ?? 'subscribe failed', { frame }), code);
    }
  }

  #retrySubscribes() {
    for (const [room, entry] of this.#rooms) {
      if (!entry.retrySubscribe) continue;
      entry.retrySubscribe = false;
      this.#sendSubscribe(room, entry);
    }
  }

  /**
   * The server ended a subscription on its own (membership revoked). A reply
   * to this client's own `unsubscribe` carries no `reason` and needs no action.
   */
  onUnsubscribed(frame) {
    if (typeof frame.reason !== 'string' || frame.reason === '' || !this.#rooms.has(frame.room)) return;
    const error = rippleError(ERROR_CODE.FORBIDDEN, `unsubscribed by the server: ${frame.reason}`, { frame });
    this.#endRoom(frame.room, error, frame.reason);
  }

  /** A moderator closed the room: no longer subscribed, and not re-subscribed after a reconnect. */
  onRoomClosed(frame) {
    if (!this.#rooms.has(frame.room)) return;
    const error = rippleError(ERROR_CODE.ROOM_CLOSED, frame.reason || 'the room was closed', { frame });
    this.#endRoom(frame.room, error, 'room_closed', typeof frame.reason === 'string' ? frame.reason : '');
  }

  /**
   * Forgets a room the server will not serve (no re-subscribe); its waiting sends reject with
   * `error`. A closed room waits in #closed for a reopen; `message` is the moderator's reason.
   */
  #endRoom(room, error, reason, message = '') {
    const entry = this.#rooms.get(room);
    this.#rooms.delete(room);
    if (entry && error.code === ERROR_CODE.ROOM_CLOSED) {
      entry.ref = null;
      this.#closed.set(room, entry);
    }
    this.#host.rejectSends(error, room);
    const detail = { room, reason, code: error.code };
    if (error.code === ERROR_CODE.ROOM_CLOSED) detail.message = message;
    this.#host.dispatch('unsubscribed', detail);
  }
}
