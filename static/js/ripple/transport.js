/**
 * Which transport a RippleSocket uses: WebSocket first, and the HTTP fallback
 * (`SseSocket`, ../sse-socket.js) when there is no WebSocket, or when
 * WebSocket attempts keep failing fast while HTTP to the same server works
 * (./health.js): refused connections with HTTP failing too mean the server is
 * down, and the tab stays on WebSocket. The choice is kept for the tab in
 * sessionStorage; while on the fallback, a background probe of WebSocket
 * moves the tab back as soon as one gets its `welcome`.
 */

import { SseSocket } from '../sse-socket.js';
import { Connection } from './connection.js';
import { CLOSE, FRAME, TRANSPORT } from './constants.js';
import { parseFrame } from './frames.js';
import { HealthCheck, healthUrl } from './health.js';

// The sessionStorage key that keeps the tab's transport across reloads.
const TRANSPORT_STORAGE_KEY = 'ripple.transport';

// Schedule names: the wait before the next probe, and the probe's own deadline.
const PROBE_TIMER = 'probe';
const PROBE_DEADLINE = 'probeDeadline';

/**
 * A WebSocket URL for `path` (e.g. `/ws/chat/`) on the page's own host:
 * `wss:` under https, `ws:` otherwise. A ws:/wss: URL is returned as is.
 * `location` is passed in (window.location in a page) to keep this module DOM-free.
 */
export function socketUrl(path, location) {
  if (/^wss?:\/\//i.test(path)) return path;
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${path.startsWith('/') ? '' : '/'}${path}`;
}

/** A transport constructor's name: its static `transport` (SseSocket: 'sse'), else 'websocket'. */
function transportName(Socket) {
  return typeof Socket.transport === 'string' ? Socket.transport : TRANSPORT.WEBSOCKET;
}

/**
 * The transports to try, in order of preference, as `{name, Socket}`: the
 * `transports` option, or WebSocket then SseSocket where the environment has
 * them. Entries that are not constructors (a missing `WebSocket`) are left out.
 */
export function pickTransports(options) {
  let list = options.transports;
  if (list === undefined || list === null) {
    list = [options.WebSocket ?? globalThis.WebSocket];
    if (SseSocket.supported(globalThis)) list.push(SseSocket);
  } else if (!Array.isArray(list)) {
    throw new TypeError('transports must be an array of constructors');
  }
  const picked = list.filter((Socket) => typeof Socket === 'function').map((Socket) => ({ name: transportName(Socket), Socket }));
  if (picked.length === 0) throw new TypeError('RippleSocket needs a WebSocket constructor (or a fallback transport)');
  return picked;
}

/** The browser's sessionStorage, or null where it is missing or refused (privacy settings). */
export function defaultSessionStorage() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null;
  }
}

/**
 * The transport in use and the moves between transports.
 *
 * `settings` holds `fallbackAfterFailures`, `fastFailureMs`, `wsRetryMs`,
 * `connectTimeoutMs`, `healthPath` and `healthTimeoutMs`; `isClosed()` says
 * the page closed the socket (no probe then); `onBack()` runs when a probe got
 * through and the tab moved back to the first transport; `onHttpOk()` when
 * the server answered HTTP after fast failures (time to try the first
 * transport again: if it fails fast once more, the tab moves).
 */
export class TransportChoice {
  // The transports to use, in order of preference, as {name, Socket}.
  #transports;
  // Index in #transports of the one in use (or next to be used).
  #index = 0;
  #url;
  #storage;
  #navigator;
  #schedule;
  #settings;
  #isClosed;
  #onBack;
  #onHttpOk;
  // Asks whether the server answers HTTP, after fast failures of the first transport.
  #health;
  // Connection attempts so far (the number of the current one), and that
  // number when the server last said "HTTP works" since the count started (or null).
  #attempts = 0;
  #httpOkAt = null;
  // When the current connection attempt started (Date.now() ms), and how many
  // attempts of the first transport in a row failed fast.
  #attemptStartedAt = 0;
  #fastFailures = 0;
  // The background Connection that checks whether the first transport gets
  // through again, while one is out.
  #probe = null;

  constructor(url, { transports, storage, navigator, schedule, settings, isClosed, onBack, onHttpOk, fetch }) {
    this.#url = url;
    this.#transports = transports;
    this.#storage = storage;
    this.#navigator = navigator;
    this.#schedule = schedule;
    this.#settings = settings;
    this.#isClosed = isClosed;
    this.#onBack = onBack;
    this.#onHttpOk = onHttpOk;
    this.#health = new HealthCheck({ fetch, url: healthUrl(url, settings.healthPath), schedule, timeoutMs: settings.healthTimeoutMs });
    this.#index = this.#remembered();
  }

  /** The transport in use, or about to be: a TRANSPORT value. */
  get name() {
    return this.#transports[this.#index].name;
  }

  /** A new connection with the transport in use; throws what its constructor throws. */
  open() {
    this.#attemptStartedAt = Date.now();
    this.#attempts += 1;
    return new this.#transports[this.#index].Socket(this.#url);
  }

  /**
   * Counts an attempt of the first transport that closed before it opened,
   * soon after it started. After `fallbackAfterFailures` in a row, each one
   * asks whether the server answers HTTP; the tab moves to the next transport
   * only on a fast failure of an attempt that started after such a "yes".
   * `beforeOpen`: the connection never opened (or its constructor threw).
   */
  countFailure(beforeOpen, offline) {
    if (this.#index !== 0 || this.#transports.length < 2) return;
    // With the network down, every transport fails: that says nothing about this one.
    if (offline || this.#navigator?.onLine === false) return;
    const fast = beforeOpen && Date.now() - this.#attemptStartedAt < this.#settings.fastFailureMs;
    if (!fast) {
      this.#startOver();
      return;
    }
    this.#fastFailures += 1;
    if (this.#httpOkAt !== null && this.#attempts > this.#httpOkAt) {
      // HTTP to this server works, WebSocket to it does not: the network blocks WebSocket.
      this.#use(1);
      this.armProbe();
      return;
    }
    if (this.#fastFailures < this.#settings.fallbackAfterFailures) return;
    this.#health.start((ok) => {
      if (this.#index !== 0 || this.#isClosed()) return;
      // No answer: the server is down (a restart, a deploy), not the transport blocked.
      this.#httpOkAt = ok ? this.#attempts : null;
      if (ok) this.#onHttpOk();
    });
  }

  /** An attempt opened, or failed slowly: the first transport is not blocked; forget the count. */
  #startOver() {
    this.#fastFailures = 0;
    this.#httpOkAt = null;
    this.#health.cancel();
  }

  /** While on a fallback, schedules the next probe of the first transport (unless one is due or out). */
  armProbe() {
    if (this.#index === 0 || this.#isClosed() || this.#probe !== null || this.#schedule.has(PROBE_TIMER)) return;
    this.#schedule.after(PROBE_TIMER, this.#settings.wsRetryMs, () => this.#startProbe());
  }

  /** Ends the probe out, if any (listeners off, deadline cleared, socket closed), and the wait for the next. */
  stopProbe() {
    this.#health.cancel();
    this.#schedule.clear(PROBE_TIMER, PROBE_DEADLINE);
    const probe = this.#probe;
    if (probe === null) return;
    this.#probe = null;
    probe.close(CLOSE.NORMAL, 'probe done');
  }

  /** The index of the transport this tab moved to earlier (sessionStorage), else 0. */
  #remembered() {
    let name = null;
    try {
      name = this.#storage?.getItem(TRANSPORT_STORAGE_KEY) ?? null;
    } catch {
      name = null;
    }
    const index = this.#transports.findIndex((transport) => transport.name === name);
    return index > 0 ? index : 0;
  }

  /** Uses transport `index` from the next connection on, and keeps the choice for the tab. */
  #use(index) {
    this.#index = index;
    this.#startOver();
    try {
      if (index === 0) this.#storage?.removeItem(TRANSPORT_STORAGE_KEY);
      else this.#storage?.setItem(TRANSPORT_STORAGE_KEY, this.#transports[index].name);
    } catch {
      // Storage full or refused: the choice lasts as long as this object.
    }
  }

  /**
   * Opens a background connection with the first transport, to the same URL.
   * Its `welcome` proves the transport gets through: it is closed at once and
   * the tab moves back. Anything else (an error, a close, no welcome within
   * `connectTimeoutMs`) waits for the next probe.
   */
  #startProbe() {
    if (this.#index === 0 || this.#isClosed() || this.#probe !== null) return;
    if (this.#navigator?.onLine === false) {
      this.armProbe();
      return;
    }
    let socket;
    try {
      socket = new this.#transports[0].Socket(this.#url);
    } catch {
      this.armProbe();
      return;
    }
    const finish = (welcomed) => {
      if (this.#probe !== probe) return;
      this.stopProbe();
      if (!welcomed) {
        this.armProbe();
        return;
      }
      this.#use(0);
      this.#onBack();
    };
    const probe = new Connection(socket, {
      message: (event) => {
        const frame = typeof event.data === 'string' ? parseFrame(event.data) : null;
        if (frame?.type === FRAME.WELCOME) finish(true);
      },
      error: () => finish(false),
      close: () => finish(false),
    });
    this.#schedule.after(PROBE_DEADLINE, this.#settings.connectTimeoutMs, () => finish(false));
    this.#probe = probe;
  }
}
