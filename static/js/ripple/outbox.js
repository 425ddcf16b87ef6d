/**
 * Messages on their way to the server: the offline queue, the pace of the
 * server's message bucket, and the re-send of everything not acknowledged,
 * each message with its original `client_id` so the server stores it once.
 */

import { ERROR_CODE, FRAME } from './constants.js';
import { rippleError } from './frames.js';

const CLIENT_ID_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;
const CLIENT_ID_PREFIX_PATTERN = /^[A-Za-z0-9_.:-]{0,28}$/;
const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

// The Schedule name of the wait for a rate limit or the send pace.
const PACE_TIMER = 'outbox';

/** Throws a TypeError unless `prefix` leaves room for a generated id within the protocol's 64 characters. */
export function checkClientIdPrefix(prefix) {
  if (!CLIENT_ID_PREFIX_PATTERN.test(prefix)) {
    throw new TypeError('clientIdPrefix must be at most 28 of A-Z a-z 0-9 _ - . :');
  }
}

/**
 * @typedef {object} OutboxHost what the outbox needs of its socket
 * @property {() => boolean} isOpen true while frames may go out
 * @property {(room: string) => boolean} roomReady true once `room` is subscribed on this socket
 * @property {(frame: object) => boolean} sendFrame sends one frame; false when it could not
 */

/**
 * Every message not yet acknowledged, sent or not, in send order.
 *
 * `pump()` sends the ones not sent on the current socket whose room is
 * subscribed. While the pace timer is armed (a rate limit's wait, or the
 * pace of the message bucket) everything waits for it, so order is kept.
 */
export class Outbox {
  // Maps client_id to {frame, resolve, reject, sent}; `sent` is true once it went out on the current socket.
  #entries = new Map();
  #maxQueue;
  #clientIdPrefix;
  #crypto;
  #random;
  #schedule;
  /** @type {OutboxHost} */
  #host;
  // The per-connection message bucket from welcome.limits, as {perS, burst},
  // or null when the server named none; the client's copy of its tokens.
  #sendRate = null;
  #tokens = 0;
  #tokensAt = 0;

  constructor({ maxQueue, clientIdPrefix, crypto, random, schedule, host }) {
    this.#maxQueue = maxQueue;
    this.#clientIdPrefix = clientIdPrefix;
    this.#crypto = crypto;
    this.#random = random;
    this.#schedule = schedule;
    this.#host = host;
  }

  get size() {
    return this.#entries.size;
  }

  /**
   * Queues one message and returns `{clientId, acked}`. `refusal` ('closed',
   * 'not_subscribed' or null) is the socket's reason to refuse it at once.
   */
  send(room, body, clientId, refusal) {
    if (typeof body !== 'string') throw new TypeError('body must be a string');
    if (clientId !== null && !CLIENT_ID_PATTERN.test(clientId)) {
      throw new TypeError('clientId must be 1-64 of A-Z a-z 0-9 _ - . :');
    }
    const id = clientId ?? this.#newClientId();
    let resolve;
    let reject;
    const acked = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A page that ignores `acked` must not get an unhandled rejection on close().
    acked.catch(() => {});
    if (refusal !== null) {
      reject(rippleError(refusal));
    } else if (this.#entries.has(id)) {
      reject(rippleError('duplicate_client_id'));
    } else if (this.#entries.size >= this.#maxQueue) {
      reject(rippleError('queue_full'));
    } else {
      this.#entries.set(id, { frame: { type: FRAME.MESSAGE, room, body, client_id: id }, resolve, reject, sent: false });
      this.pump();
    }
    return { clientId: id, acked };
  }

  /** A new socket: nothing has gone out on it yet. */
  newSocket() {
    for (const entry of this.#entries.values()) entry.sent = false;
  }

  /** Sends every waiting message of the subscribed rooms, in send order, at the bucket's pace. */
  pump() {
    if (!this.#host.isOpen() || this.#schedule.has(PACE_TIMER)) return;
    for (const entry of this.#entries.values()) {
      if (entry.sent) continue;
      if (!this.#host.roomReady(entry.frame.room)) continue;
      const waitMs = this.#takeToken();
      if (waitMs > 0) {
        this.#schedule.noSooner(PACE_TIMER, waitMs, () => this.pump());
        return;
      }
      if (this.#host.sendFrame(entry.frame)) entry.sent = true;
    }
  }

  /** Takes the pace from `welcome.limits`; every socket starts with a full bucket on the server. */
  pace(limits) {
    if (Number.isFinite(limits.messages_per_s) && limits.messages_per_s > 0) {
      const burst = Number.isFinite(limits.messages_burst) ? Math.floor(limits.messages_burst) : 1;
      this.#sendRate = { perS: limits.messages_per_s, burst: Math.max(1, burst) };
    } else {
      this.#sendRate = null;
    }
    this.#tokens = this.#sendRate?.burst ?? 0;
    this.#tokensAt = Date.now();
  }

  /** An `ack` frame: its message is stored, its promise resolves. */
  ack(frame) {
    const entry = this.#entries.get(frame.client_id);
    if (!entry) return;
    this.#entries.delete(frame.client_id);
    entry.resolve(frame);
  }

  /**
   * An `error` frame naming one of these messages: a `rate_limited` one is
   * kept and sent again after `retryAfterMs`, any other rejects its send.
   * Returns false when the frame names no message waiting here.
   */
  refused(frame, retryAfterMs) {
    const entry = typeof frame.client_id === 'string' ? this.#entries.get(frame.client_id) : undefined;
    if (!entry) return false;
    if (frame.code === ERROR_CODE.RATE_LIMITED) {
      // The server stored nothing: the message goes out again after the wait,
      // every later one behind it, at the bucket's pace rather than in a burst.
      entry.sent = false;
      this.#tokens = 0;
      this.#tokensAt = Date.now();
      this.#schedule.noSooner(PACE_TIMER, retryAfterMs, () => this.pump());
    } else {
      this.#entries.delete(frame.client_id);
      entry.reject(rippleError(frame.code ?? 'error', frame.message ?? frame.code ?? 'error', { frame }));
    }
    return true;
  }

  /** Rejects with `error` the waiting messages of `room`, or every one when `room` is null. */
  reject(error, room = null) {
    for (const [clientId, entry] of this.#entries) {
      if (room !== null && entry.frame.room !== room) continue;
      this.#entries.delete(clientId);
      entry.reject(error);
    }
  }

  /** Takes a token from the client's copy of the message bucket: 0, or the ms until one is free. */
  #takeToken() {
    const rate = this.#sendRate;
    if (rate === null) return 0;
    const now = Date.now();
    this.#tokens = Math.min(rate.burst, this.#tokens + (Math.max(0, now - this.#tokensAt) * rate.perS) / 1000);
    this.#tokensAt = now;
    // The epsilon absorbs rounding in the refill, so a wait of exactly one interval suffices.
    if (this.#tokens >= 1 - 1e-9) {
      this.#tokens = Math.max(0, this.#tokens - 1);
      return 0;
    }
    return Math.ceil(((1 - this.#tokens) * 1000) / rate.perS);
  }

  #newClientId() {
    let id = null;
    try {
      id = this.#crypto?.randomUUID?.() ?? null;
    } catch {
      id = null;
    }
    if (id === null) {
      id = '';
      for (let i = 0; i < 32; i += 1) {
        id += ID_ALPHABET[Math.floor(this.#random() * ID_ALPHABET.length) % ID_ALPHABET.length];
      }
    }
    return this.#clientIdPrefix + id;
  }
}
