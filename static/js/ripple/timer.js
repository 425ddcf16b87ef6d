/**
 * Time, kept one way: a `Schedule` of named timeouts and intervals that every
 * delay of the client goes through (so one `clear()` stops them all), and a
 * `Timer` that adds backoff with full jitter to one name of a schedule.
 *
 * Timers are armed through `globalThis.setTimeout` and friends at call time,
 * so tests that mock the clock after import see every one.
 */

/**
 * Named timers, at most one per name: arming a name replaces what it held.
 * `clear(...names)` clears those names, `clear()` every one.
 */
export class Schedule {
  // Maps name to {handle, repeat, dueAt}; dueAt is the Date.now() ms a timeout fires at.
  #armed = new Map();

  /** Runs `callback` once in `delayMs`, replacing whatever `name` held. */
  after(name, delayMs, callback) {
    this.clear(name);
    const entry = { handle: null, repeat: false, dueAt: Date.now() + delayMs };
    entry.handle = globalThis.setTimeout(() => {
      if (this.#armed.get(name) === entry) this.#armed.delete(name);
      callback();
    }, delayMs);
    this.#armed.set(name, entry);
  }

  /** `after`, unless `name` is already armed to fire later than `delayMs` from now. */
  noSooner(name, delayMs, callback) {
    const armed = this.#armed.get(name);
    if (armed !== undefined && !armed.repeat && armed.dueAt >= Date.now() + delayMs) return;
    this.after(name, delayMs, callback);
  }

  /** Runs `callback` every `intervalMs`, replacing whatever `name` held. */
  every(name, intervalMs, callback) {
    this.clear(name);
    const handle = globalThis.setInterval(callback, intervalMs);
    this.#armed.set(name, { handle, repeat: true, dueAt: null });
  }

  has(name) {
    return this.#armed.has(name);
  }

  /** Clears the named timers, or every timer when no name is given. */
  clear(...names) {
    for (const name of names.length > 0 ? names : [...this.#armed.keys()]) {
      const armed = this.#armed.get(name);
      if (armed === undefined) continue;
      this.#armed.delete(name);
      if (armed.repeat) globalThis.clearInterval(armed.handle);
      else globalThis.clearTimeout(armed.handle);
    }
  }
}

/**
 * Reconnect delays with full jitter, and the single pending timeout they arm.
 *
 * `delayFor(tries)` is `random() * min(maxMs, baseMs * 2 ** tries)`, raised to
 * `floorMs` (itself never above the cap). `schedule()` always replaces the
 * pending timeout, so there is never more than one. The timeout lives under
 * `name` in `schedule` (a Schedule of its own when none is given), so an
 * owner that clears its schedule clears this timer too.
 */
export class Timer {
  #callback;
  #schedule;
  #name;

  constructor(callback, { baseMs = 500, maxMs = 30000, floorMs = 0, random = Math.random, schedule = new Schedule(), name = 'timer' } = {}) {
    this.#callback = callback;
    this.#schedule = schedule;
    this.#name = name;
    this.baseMs = baseMs;
    this.maxMs = maxMs;
    this.floorMs = floorMs;
    this.random = random;
  }

  /** Upper bound of the delay before retry number `tries` (0 for the first retry). */
  capFor(tries) {
    return Math.min(this.maxMs, this.baseMs * 2 ** Math.max(0, tries));
  }

  /** A jittered delay in [0, capFor(tries)]. */
  delayFor(tries) {
    const cap = this.capFor(tries);
    return Math.max(Math.min(this.floorMs, cap), this.random() * cap);
  }

  /** Arms the timeout for `delayMs`, replacing any pending one; returns `delayMs`. */
  schedule(delayMs) {
    this.#schedule.after(this.#name, delayMs, () => this.#callback());
    return delayMs;
  }

  cancel() {
    this.#schedule.clear(this.#name);
  }

  get pending() {
    return this.#schedule.has(this.#name);
  }
}
