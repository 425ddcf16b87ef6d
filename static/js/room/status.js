/**
 * The room page's status line: what the connection is doing, in a person's
 * words ("Connected", "Connection lost. Reconnecting in 3 s", "Offline"), and
 * the "Retry now" button that skips the wait.
 *
 * Two elements, on purpose. The visible line (`#conn-state`) carries the
 * countdown and changes every second while reconnecting: it is not a live
 * region. A visually hidden `aria-live="polite"` element (`#conn-announce`,
 * created when the page has none) is told only when the state a person cares
 * about changes (connected, lost, offline, disconnected), so a screen reader
 * says "Connection lost. Reconnecting" once, not every second.
 */

import { CLOSE, STATE, TRANSPORT } from '../ripple-socket.js';

/** The announcement for each kind of state; the visible text says more. */
const ANNOUNCE = Object.freeze({
  lost: 'Connection lost. Reconnecting.',
  offline: 'Offline. Waiting for the network.',
});

/** Seconds left until `deadlineMs`, at least 1. */
function secondsLeft(deadlineMs, nowMs) {
  return Math.max(1, Math.ceil((deadlineMs - nowMs) / 1000));
}

/** "Connection lost. Reconnecting in 3 s", or "…Reconnecting…" with no countdown. */
function waiting(lead, deadlineMs, nowMs) {
  if (deadlineMs === null) return `${lead} Reconnecting…`;
  return `${lead} Reconnecting in ${secondsLeft(deadlineMs, nowMs)} s`;
}

/**
 * What the status line shows for a `statechange` detail:
 * `{dataState, text, announce, retry, retryLabel}`. `dataState` does not
 * depend on the transport (the text names the HTTP fallback); `announce` is
 * the live region's text (null: say nothing); `retry` shows the button.
 * `deadlineMs` is when the pending reconnect fires (Date.now() ms), or null
 * for no countdown.
 */
export function describeState(detail, nowMs = Date.now(), deadlineMs = null) {
  const view = (dataState, text, announce, retryLabel = null) => ({ dataState, text, announce, retry: retryLabel !== null, retryLabel });
  switch (detail.state) {
    case STATE.OPEN: {
      const text = detail.transport === TRANSPORT.SSE ? 'Connected (HTTP fallback)' : 'Connected';
      return view('open', text, text);
    }
    case STATE.CONNECTING:
      // The first connection, or an attempt after a failure (then the person can still skip ahead).
      if ((detail.attempt ?? 1) <= 1) return view('connecting', 'Connecting…', null);
      return view('connecting', 'Connection lost. Reconnecting…', ANNOUNCE.lost, 'Retry now');
    case STATE.RECONNECTING:
      if (detail.offline) return view('offline', 'Offline', ANNOUNCE.offline, 'Retry now');
      if (detail.code === CLOSE.CLIENT_TRANSPORT_SWITCH) return view('reconnecting', 'Switching to WebSocket…', null);
      if (detail.code === CLOSE.TRY_AGAIN_LATER) return view('reconnecting', waiting('Server busy.', deadlineMs, nowMs), ANNOUNCE.lost, 'Retry now');
      if ([CLOSE.DRAINING, CLOSE.SERVICE_RESTART, CLOSE.GOING_AWAY].includes(detail.code)) {
        return view('reconnecting', waiting('Server restarting.', deadlineMs, nowMs), ANNOUNCE.lost, 'Retry now');
      }
      return view('reconnecting', waiting('Connection lost.', deadlineMs, nowMs), ANNOUNCE.lost, 'Retry now');
    case STATE.FAILED:
      return view('failed', 'Disconnected', 'Disconnected.', 'Retry');
    default: {
      // Closed by the server ("do not come back"): the reader may still try again,
      // except after the session ended, when only a reload signs back in.
      if (detail.code === CLOSE.SESSION_ENDED) return view('closed', 'Signed out. Reload the page.', 'Signed out. Reload the page.');
      if (detail.code === CLOSE.TOO_MANY_CONNECTIONS) {
        const text = 'Disconnected: too many open tabs. Close some, then retry.';
        return view('closed', text, text, 'Retry');
      }
      if (detail.code === CLOSE.FLOODING) return view('closed', 'Disconnected for sending too fast.', 'Disconnected for sending too fast.', 'Retry');
      return view('closed', 'Disconnected', 'Disconnected.', detail.code !== CLOSE.NORMAL ? 'Retry' : null);
    }
  }
}

/**
 * Renders `socket`'s state into `line` (the visible status), `button` (Retry
 * now) and `announcer` (the live region; created after `line` when null).
 * `destroy()` removes its listeners and its countdown.
 */
export class StatusLine {
  #socket;
  #line;
  #button;
  #announcer;
  #countdown = null;
  #lastAnnounced = null;
  #cleanups = [];

  constructor({ socket, line, button = null, announcer = null, document = line?.ownerDocument ?? globalThis.document }) {
    this.#socket = socket;
    this.#line = line;
    this.#button = button;
    this.#announcer = announcer ?? this.#createAnnouncer(document);
    // The visible line changes every second while counting down: never a live region.
    line?.removeAttribute?.('aria-live');
    line?.removeAttribute?.('role');
    this.#listen(socket, 'statechange', (event) => this.render(event.detail));
    this.#listen(socket, 'pong', (event) => {
      if (line && event.detail.rttMs !== null) line.title = `Round trip ${event.detail.rttMs} ms`;
    });
    this.#listen(button, 'click', () => socket.retry());
    this.render(socket.stateDetail);
  }

  /** The live region's element. */
  get announcer() {
    return this.#announcer;
  }

  /** Shows the state of `detail` (a `statechange` detail). */
  render(detail) {
    this.#stopCountdown();
    // A wait of a second or less gets no countdown: "in 1 s" would flash and go.
    const deadline = detail.state === STATE.RECONNECTING && !detail.offline && detail.delayMs > 1000
      ? Date.now() + detail.delayMs
      : null;
    const paint = () => {
      const view = describeState(detail, Date.now(), deadline);
      if (this.#line) {
        this.#line.dataset.state = view.dataState;
        this.#line.dataset.transport = detail.transport;
        if (this.#line.textContent !== view.text) this.#line.textContent = view.text;
      }
      if (this.#button) {
        this.#button.hidden = !view.retry;
        if (view.retry && this.#button.textContent !== view.retryLabel) this.#button.textContent = view.retryLabel;
      }
      return view;
    };
    this.#announce(paint().announce);
    if (deadline !== null) this.#countdown = globalThis.setInterval(paint, 1000);
  }

  destroy() {
    this.#stopCountdown();
    for (const cleanup of this.#cleanups.splice(0)) cleanup();
  }

  /** Tells the live region, only when what it would say changed. */
  #announce(text) {
    if (text === null || text === this.#lastAnnounced || !this.#announcer) return;
    this.#lastAnnounced = text;
    this.#announcer.textContent = text;
  }

  #createAnnouncer(document) {
    const existing = document?.getElementById?.('conn-announce');
    if (existing) return existing;
    if (!this.#line || typeof document?.createElement !== 'function') return null;
    const element = document.createElement('p');
    element.id = 'conn-announce';
    element.className = 'visually-hidden';
    element.setAttribute('role', 'status');
    element.setAttribute('aria-live', 'polite');
    this.#line.after?.(element);
    return element;
  }

  #stopCountdown() {
    if (this.#countdown !== null) {
      globalThis.clearInterval(this.#countdown);
      this.#countdown = null;
    }
  }

  #listen(target, type, handler) {
    if (!target) return;
    target.addEventListener(type, handler);
    this.#cleanups.push(() => target.removeEventListener(type, handler));
  }
}
