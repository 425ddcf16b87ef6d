/**
 * When to reconnect (docs/client.md, "Reconnecting"): the failed attempts
 * since the last stable connection, the jittered delay before the next one,
 * and when to give up.
 *
 * A server that cannot be reached (the attempt closed with 1006 before it
 * opened: refused, reset, a proxy's 502) is down, not busy: a restart or a
 * deploy. Retrying it costs the server nothing, so for the first
 * `downFastForMs` of an outage those delays are capped at `downBackoffMaxMs`
 * (a tab is back within about that long after the server answers again), and
 * they never count toward `maxAttempts`. A server that answered and then
 * dropped or refused the socket (1011, 4408, 4503...) gets the full backoff,
 * up to `backoffMaxMs`.
 */

import { Timer } from './timer.js';

export class Reconnect {
  #timer;
  #settings;
  #random;
  // Failed attempts since the last stable connection: the backoff exponent.
  #failures = 0;
  // Of those, the ones that count toward maxAttempts (all but unreachable ones).
  #strikes = 0;
  // Date.now() of the first failure since a connection last opened, or null.
  #outageSince = null;

  /** `callback` runs when the scheduled delay is over; `settings` are the client's options. */
  constructor(callback, { settings, random, schedule }) {
    this.#settings = settings;
    this.#random = random;
    this.#timer = new Timer(callback, {
      baseMs: settings.backoffBaseMs,
      maxMs: settings.backoffMaxMs,
      floorMs: settings.backoffFloorMs,
      random,
      schedule,
      name: 'reconnect',
    });
  }

  /** Failed attempts since the last stable connection. */
  get failures() {
    return this.#failures;
  }

  get pending() {
    return this.#timer.pending;
  }

  /** A connection opened: the outage is over (the failure count waits for `stable()`). */
  opened() {
    this.#outageSince = null;
  }

  /** A connection stayed up `stableAfterMs`, or the page asked to start over. */
  reset() {
    this.#failures = 0;
    this.#strikes = 0;
  }

  /**
   * Counts a failed attempt; `unreachable`: it closed with 1006 before it
   * opened. Returns the delay before the next attempt, or null when
   * `maxAttempts` failures that count have come in a row.
   */
  failed({ unreachable }) {
    const now = Date.now();
    this.#outageSince ??= now;
    this.#failures += 1;
    if (!unreachable) this.#strikes += 1;
    if (this.#strikes >= this.#settings.maxAttempts) return null;
    const tries = this.#failures - 1;
    if (unreachable && now - this.#outageSince < this.#settings.downFastForMs) {
      const cap = Math.min(this.#settings.downBackoffMaxMs, this.#timer.capFor(tries));
      return Math.max(Math.min(this.#settings.backoffFloorMs, cap), this.#random() * cap);
    }
    return this.#timer.delayFor(tries);
  }

  /** Arms the reconnect for `delayMs`, replacing any pending one. */
  schedule(delayMs) {
    this.#timer.schedule(delayMs);
  }

  cancel() {
    this.#timer.cancel();
  }
}
