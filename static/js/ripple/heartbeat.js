/**
 * Liveness: the client's own heartbeat (a `ping` every interval, and a
 * deadline for any frame after it), and the browser signals that call for a
 * check now (online, offline, the page becoming visible).
 */

import { FRAME } from './constants.js';

// Schedule names: the ping interval, and the deadline for an answer.
const PING_TIMER = 'heartbeat';
const PONG_DEADLINE = 'pong';

/**
 * Pings every `intervalMs` once started; after a ping, no frame at all
 * within `timeoutMs` calls `onTimeout`. Both timers live in the socket's
 * schedule, so they end with it.
 */
export class Heartbeat {
  #schedule;
  #send;
  #onTimeout;
  #intervalMs;
  #timeoutMs;

  constructor({ schedule, intervalMs, timeoutMs, send, onTimeout }) {
    this.#schedule = schedule;
    this.#intervalMs = intervalMs;
    this.#timeoutMs = timeoutMs;
    this.#send = send;
    this.#onTimeout = onTimeout;
  }

  /** Takes the server's interval and timeout from `welcome`, where it names usable ones. */
  configure(welcome) {
    if (Number.isFinite(welcome.heartbeat_interval_ms) && welcome.heartbeat_interval_ms > 0) {
      this.#intervalMs = welcome.heartbeat_interval_ms;
    }
    if (Number.isFinite(welcome.heartbeat_timeout_ms) && welcome.heartbeat_timeout_ms > 0) {
      this.#timeoutMs = welcome.heartbeat_timeout_ms;
    }
  }

  /** (Re)starts the pings at the current interval. */
  start() {
    this.#schedule.every(PING_TIMER, this.#intervalMs, () => this.ping());
  }

  /** Sends a ping and, unless one is pending, arms the deadline for an answer. */
  ping() {
    if (!this.#send({ type: FRAME.PING, t: Date.now() })) return;
    if (this.#schedule.has(PONG_DEADLINE)) return;
    this.#schedule.after(PONG_DEADLINE, this.#timeoutMs, () => this.#onTimeout());
  }

  /** Any frame at all proves the socket is alive. */
  alive() {
    this.#schedule.clear(PONG_DEADLINE);
  }
}

/**
 * Adds each `[target, type, handler]` (a missing target is skipped) and
 * returns the function that removes them all.
 */
export function listenAll(bindings) {
  const added = bindings.filter(([target]) => target && typeof target.addEventListener === 'function');
  for (const [target, type, handler] of added) target.addEventListener(type, handler);
  return () => {
    for (const [target, type, handler] of added) target.removeEventListener(type, handler);
  };
}
