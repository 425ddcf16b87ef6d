/**
 * The typing indicator: "Ann is typing…" under the message list while others
 * type, and this page's own `typing` frames while its person types.
 *
 * Typing is ephemeral (docs/protocol.md, `typing`): the server never stores it
 * and never sends it back to the typist. The page sends at most one frame per
 * 3 s while the box has text (RippleSocket#typing keeps the pace), shows a name
 * for SHOW_MS after that person's last frame, and drops it at once when their
 * message arrives. Names go in through `textContent` only.
 */

import { STATE } from '../ripple-socket.js';

/** How long a name stays after its last `typing` frame (the sender repeats every 3 s). */
export const SHOW_MS = 5000;

/** The indicator's text for the names typing now, oldest first; '' for none. */
export function describeTyping(names) {
  if (names.length === 0) return '';
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return 'Several people are typing…';
}

/** Who is typing in one room, each until an expiry time. */
export class TypingNames {
  // Maps a name to the Date.now() ms at which it stops showing; insertion order is arrival order.
  #until = new Map();

  /** `name` typed at `nowMs`. */
  add(name, nowMs) {
    this.#until.delete(name);
    this.#until.set(name, nowMs + SHOW_MS);
  }

  /** `name`'s message arrived: no longer typing. True when it was shown. */
  remove(name) {
    return this.#until.delete(name);
  }

  /** The names still typing at `nowMs` (expired ones dropped). */
  current(nowMs) {
    for (const [name, until] of this.#until) {
      if (until <= nowMs) this.#until.delete(name);
    }
    return [...this.#until.keys()];
  }

  /** The earliest expiry, or null when nobody is typing. */
  nextExpiry() {
    let next = null;
    for (const until of this.#until.values()) next = next === null ? until : Math.min(next, until);
    return next;
  }
}

/**
 * Mounts the indicator for `room` and returns its `destroy()`. The element
 * (`#typing`) is created before `form` when the page has none; `input` is the
 * message box whose typing is announced.
 */
export function mountTyping({
  socket, room, input = null, form = null, document = globalThis.document,
  now = () => Date.now(), timers = globalThis,
}) {
  const names = new TypingNames();
  let element = document?.getElementById?.('typing') ?? null;
  if (!element && form && typeof document?.createElement === 'function') {
    element = document.createElement('p');
    element.id = 'typing';
    element.className = 'typing';
    form.before?.(element);
  }
  let timer = null;
  const cleanups = [];

  function listen(target, type, handler) {
    if (!target) return;
    target.addEventListener(type, handler);
    cleanups.push(() => target.removeEventListener(type, handler));
  }

  function render() {
    if (timer !== null) {
      timers.clearTimeout(timer);
      timer = null;
    }
    const text = describeTyping(names.current(now()));
    if (element && element.textContent !== text) element.textContent = text;
    if (element) element.dataset.active = text === '' ? 'false' : 'true';
    const next = names.nextExpiry();
    if (next !== null) timer = timers.setTimeout(render, Math.max(0, next - now()) + 10);
  }

  listen(socket, 'typing', (event) => {
    const { room: where, name } = event.detail;
    if (where !== room || typeof name !== 'string' || name === '') return;
    // The same person in another tab of this browser is not "someone" typing.
    if (name === socket.welcome?.user?.name) return;
    names.add(name, now());
    render();
  });
  listen(socket, 'message', (event) => {
    const frame = event.detail;
    if (frame?.room === room && typeof frame.author === 'string' && names.remove(frame.author)) render();
  });
  // Gone from the room (closed, revoked) or from the server: nobody is known to type.
  const clear = () => {
    for (const name of names.current(now())) names.remove(name);
    render();
  };
  listen(socket, 'unsubscribed', (event) => {
    if (event.detail.room === room) clear();
  });
  listen(socket, 'statechange', (event) => {
    if (event.detail.state !== STATE.OPEN) clear();
  });
  listen(input, 'input', () => {
    if (input.value.trim() !== '') socket.typing(room);
  });
  render();

  return function destroy() {
    if (timer !== null) timers.clearTimeout(timer);
    timer = null;
    for (const cleanup of cleanups.splice(0)) cleanup();
  };
}
