// Test doubles for the HTTP fallback (static/js/sse-socket.js): a scriptable
// EventSource, a fetch whose responses the test gives, a document holding the
// CSRF meta tag, a sessionStorage, and a fake server that ties them together.
import { SseSocket } from '../../static/js/sse-socket.js';
import { CountingTarget } from './fake-websocket.mjs';

/**
 * An EventSource whose server side the test drives: `serverOpen()`,
 * `serverToken(token)`, `serverSend(frame)`, `serverClose(code)`,
 * `serverEnd()`, `serverRefuse()`.
 * Use `FakeEventSource.fresh()` to get a subclass with its own `instances`.
 */
export class FakeEventSource extends CountingTarget {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 2;
  static instances = [];

  static fresh() {
    return class extends FakeEventSource {
      static instances = [];
    };
  }

  constructor(url, init = {}) {
    super();
    this.url = String(url);
    this.withCredentials = Boolean(init.withCredentials);
    this.readyState = FakeEventSource.CONNECTING;
    this.closeCount = 0;
    this.constructor.instances.push(this);
  }

  close() {
    this.closeCount += 1;
    this.readyState = FakeEventSource.CLOSED;
  }

  /** The response headers arrived (200, text/event-stream). */
  serverOpen() {
    this.readyState = FakeEventSource.OPEN;
    this.fire('open');
  }

  /** `event: stream` with `data: {"token": ...}` (data as given when not a string token). */
  serverToken(token) {
    if (this.readyState === FakeEventSource.CONNECTING) this.serverOpen();
    const data = typeof token === 'string' ? JSON.stringify({ token }) : String(token);
    this.fire('stream', { data, lastEventId: '', origin: 'http://ripple.test' });
  }

  /** One default-type event: `data: <frame JSON>`. */
  serverSend(frame) {
    if (this.readyState === FakeEventSource.CONNECTING) this.serverOpen();
    const data = typeof frame === 'string' ? frame : JSON.stringify(frame);
    this.fire('message', { data, lastEventId: '', origin: 'http://ripple.test' });
  }

  /** `event: close` with `data: {"code": N}`, then the end of the response. */
  serverClose(code, extra = {}) {
    this.fire('close', { data: JSON.stringify({ code, ...extra }) });
    this.serverEnd();
  }

  /** The response ended or the network dropped: a browser fires `error` and would reconnect. */
  serverEnd() {
    if (this.readyState === FakeEventSource.CLOSED) return;
    this.readyState = FakeEventSource.CONNECTING;
    this.fire('error');
  }

  /** The stream was refused (HTTP 403, or a wrong content type): `error` with readyState CLOSED. */
  serverRefuse() {
    this.readyState = FakeEventSource.CLOSED;
    this.fire('error');
  }
}

/**
 * A fetch that records every call and answers when the test says so:
 * `fetch.calls[i].respond(status)` or `.fail()`; with `autoStatus`, every call
 * is answered at once. An aborted call rejects with an AbortError.
 */
export function fakeFetch({ autoStatus = null } = {}) {
  const calls = [];
  function fetch(url, init = {}) {
    return new Promise((resolve, reject) => {
      const call = {
        url: String(url),
        init,
        settled: false,
        aborted: false,
        respond(status = 202) {
          if (call.settled) return;
          call.settled = true;
          resolve({ status, ok: status >= 200 && status <= 299 });
        },
        fail(error = new TypeError('Failed to fetch')) {
          if (call.settled) return;
          call.settled = true;
          reject(error);
        },
      };
      init.signal?.addEventListener('abort', () => {
        call.aborted = true;
        call.fail(new DOMException('The operation was aborted.', 'AbortError'));
      }, { once: true });
      calls.push(call);
      if (autoStatus !== null) call.respond(autoStatus);
    });
  }
  fetch.calls = calls;
  /** The frames POSTed so far, parsed. */
  fetch.frames = () => calls.map((call) => JSON.parse(call.init.body));
  fetch.framesOfType = (type) => fetch.frames().filter((frame) => frame.type === type);
  fetch.pending = () => calls.filter((call) => !call.settled);
  return fetch;
}

/** A document with `<meta name="csrf-token" content="token">` (none when token is null). */
export function metaDocument(token = 'csrf-token-1') {
  return {
    querySelector(selector) {
      if (token === null || selector !== 'meta[name="csrf-token"]') return null;
      return { getAttribute: (name) => (name === 'content' ? token : null) };
    },
  };
}

/** A sessionStorage backed by a Map; `entries()` shows what it holds. */
export function fakeStorage(initial = {}) {
  const map = new Map(Object.entries(initial));
  return {
    getItem: (key) => (map.has(key) ? map.get(key) : null),
    setItem: (key, value) => {
      map.set(key, String(value));
    },
    removeItem: (key) => {
      map.delete(key);
    },
    entries: () => Object.fromEntries(map),
  };
}

/** Lets pending promise callbacks (fetch responses, the POST queue) run; timers stay mocked. */
export function flush() {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The stream token fakeSseServer's `welcome()` sends first, unless told otherwise. */
export const STREAM_TOKEN = 'stream-token-Qx3_9z';

/**
 * One fake server for the fallback: an SseSocket subclass (`Sse`) wired to a
 * fresh FakeEventSource class, a fake fetch (answering `autoStatus` at once
 * unless null) and a document holding the CSRF token.
 */
export function fakeSseServer({ autoStatus = 202, token = 'csrf-token-1' } = {}) {
  const ES = FakeEventSource.fresh();
  const fetch = fakeFetch({ autoStatus });
  const document = metaDocument(token);
  class Sse extends SseSocket {
    static instances = [];

    constructor(url) {
      super(url, { EventSource: ES, fetch, document });
      Sse.instances.push(this);
    }
  }
  return {
    ES,
    fetch,
    document,
    Sse,
    get es() {
      return ES.instances.at(-1);
    },
    /** The stream's token (null: none), then the welcome of connection `id`, on the newest stream. */
    welcome(id = 'conn-1', extra = {}, { streamToken = STREAM_TOKEN } = {}) {
      if (streamToken !== null) ES.instances.at(-1).serverToken(streamToken);
      ES.instances.at(-1).serverSend({
        type: 'welcome',
        protocol: 1,
        connection_id: id,
        user: { name: 'alice', authenticated: true },
        heartbeat_interval_ms: 20000,
        heartbeat_timeout_ms: 10000,
        server_time: Date.now(),
        limits: {},
        ...extra,
      });
    },
  };
}
