/**
 * One transport socket (a WebSocket or an SseSocket) with the listeners the
 * client added to it: frames out as JSON text, and one `close()` that
 * removes those listeners and closes the socket if it is still up.
 */

import { READY_STATE, canSendCloseCode } from './constants.js';

export class Connection {
  #socket;
  #handlers;

  /** `handlers` maps event type (`open`, `message`, `error`, `close`) to its listener. */
  constructor(socket, handlers) {
    this.#socket = socket;
    this.#handlers = Object.entries(handlers);
    for (const [type, handler] of this.#handlers) socket.addEventListener(type, handler);
  }

  /** Sends one frame as JSON text; false when the socket is not open or refuses it. */
  send(frame) {
    if (this.#socket.readyState !== READY_STATE.OPEN) return false;
    try {
      this.#socket.send(JSON.stringify(frame));
    } catch {
      return false;
    }
    return true;
  }

  /** Removes the listeners, then closes the socket unless it is closing or closed already. */
  close(code, reason) {
    for (const [type, handler] of this.#handlers) this.#socket.removeEventListener(type, handler);
    this.#handlers = [];
    const state = this.#socket.readyState;
    if (state !== READY_STATE.CONNECTING && state !== READY_STATE.OPEN) return;
    try {
      if (canSendCloseCode(code)) this.#socket.close(code, reason);
      else this.#socket.close();
    } catch {
      // The socket is gone either way.
    }
  }
}
