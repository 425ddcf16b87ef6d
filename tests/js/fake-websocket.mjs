import { afterEach, beforeEach, mock } from 'node:test';
// Test doubles for the browser objects RippleSocket and the pages use: a
// scriptable WebSocket, EventTargets that count their listeners (window,
// document), and a wrapper that counts live timers.

/** An EventTarget that knows how many listeners are attached. */
export class CountingTarget extends EventTarget {
  // Maps event type to the set of listeners currently attached.
  #listeners = new Map();

  addEventListener(type, listener, options) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(listener);
    super.addEventListener(type, listener, options);
  }

  removeEventListener(type, listener, options) {
    this.#listeners.get(type)?.delete(listener);
    super.removeEventListener(type, listener, options);
  }

  listenerCount(type) {
    if (type !== undefined) return this.#listeners.get(type)?.size ?? 0;
    let total = 0;
    for (const set of this.#listeners.values()) total += set.size;
    return total;
  }

  fire(type, props = {}) {
    this.dispatchEvent(Object.assign(new Event(type), props));
  }
}

/**
 * A WebSocket whose server side the test drives: `serverOpen()`,
 * `serverSend(frame)`, `serverClose(code)`, `serverError()`.
 * Use `FakeWebSocket.fresh()` to get a subclass with its own `instances`.
 */
export class FakeWebSocket extends CountingTarget {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;
  static instances = [];

  static fresh() {
    return class extends FakeWebSocket {
      static instances = [];
    };
  }

  constructor(url) {
    super();
    this.url = url;
    this.readyState = FakeWebSocket.CONNECTING;
    this.sent = [];
    this.closeCalls = [];
    this.constructor.instances.push(this);
  }

  get CONNECTING() {
    return 0;
  }

  get OPEN() {
    return 1;
  }

  get CLOSING() {
    return 2;
  }

  get CLOSED() {
    return 3;
  }

  /** The JSON frames this client sent, parsed. */
  get frames() {
    return this.sent.map((text) => JSON.parse(text));
  }

  framesOfType(type) {
    return this.frames.filter((frame) => frame.type === type);
  }

  send(data) {
    if (this.readyState !== FakeWebSocket.OPEN) throw new Error('InvalidStateError: socket is not open');
    this.sent.push(data);
  }

  // The closing handshake never completes by itself: the client must not
  // depend on a close event arriving.
  close(code, reason) {
    this.closeCalls.push({ code, reason });
    if (this.readyState < FakeWebSocket.CLOSING) this.readyState = FakeWebSocket.CLOSING;
  }

  serverOpen() {
    this.readyState = FakeWebSocket.OPEN;
    this.fire('open');
  }

  serverSend(frame) {
    const data = typeof frame === 'string' ? frame : JSON.stringify(frame);
    this.fire('message', { data });
  }

  serverClose(code = 1006, reason = '') {
    this.readyState = FakeWebSocket.CLOSED;
    this.fire('close', { code, reason, wasClean: code !== 1006 });
  }

  /** What a browser does when a connection fails: `error`, then `close` 1006. */
  serverError() {
    this.readyState = FakeWebSocket.CLOSED;
    this.fire('error');
    this.fire('close', { code: 1006, reason: '', wasClean: false });
  }
}

/**
 * Wraps the (mocked) global timer functions to count timers that are armed
 * and have neither fired nor been cleared. Call after mock.timers.enable().
 */
/**
 * Mocked timers (setTimeout, setInterval, Date) with a live-timer count, for every test of
 * the calling file. Returns a getter: `timers().pending` is the number of armed timers.
 */
export function useMockTimers() {
  let timers;
  beforeEach(() => {
    mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'] });
    timers = trackTimers();
  });
  afterEach(() => {
    timers.restore();
    mock.timers.reset();
  });
  return () => timers;
}

export function trackTimers() {
  const original = {
    setTimeout: globalThis.setTimeout,
    clearTimeout: globalThis.clearTimeout,
    setInterval: globalThis.setInterval,
    clearInterval: globalThis.clearInterval,
  };
  const live = new Set();
  globalThis.setTimeout = (callback, delay, ...args) => {
    const handle = original.setTimeout((...callArgs) => {
      live.delete(handle);
      callback(...callArgs);
    }, delay, ...args);
    live.add(handle);
    return handle;
  };
  globalThis.setInterval = (callback, delay, ...args) => {
    const handle = original.setInterval(callback, delay, ...args);
    live.add(handle);
    return handle;
  };
  globalThis.clearTimeout = (handle) => {
    live.delete(handle);
    original.clearTimeout(handle);
  };
  globalThis.clearInterval = (handle) => {
    live.delete(handle);
    original.clearInterval(handle);
  };
  return {
    get pending() {
      return live.size;
    },
    restore() {
      Object.assign(globalThis, original);
    },
  };
}

/** A `window` with online/offline events, and a `document` with visibilitychange. */
export function fakeEnvironment({ onLine = true } = {}) {
  const window = new CountingTarget();
  const document = new CountingTarget();
  document.visibilityState = 'visible';
  const navigator = { onLine };
  return {
    window,
    document,
    navigator,
    goOffline() {
      navigator.onLine = false;
      window.fire('offline');
    },
    goOnline() {
      navigator.onLine = true;
      window.fire('online');
    },
    setVisibility(state) {
      document.visibilityState = state;
      document.fire('visibilitychange');
    },
  };
}
