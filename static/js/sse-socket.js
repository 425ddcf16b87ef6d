/**
 * Ripple's HTTP fallback transport, for networks where WebSocket does not get
 * through: an object with the WebSocket surface RippleSocket uses, carried by
 * Server-Sent Events from the server and one POST per frame to the server.
 *
 * - Stream: `GET /sse/chat/` (EventSource, same origin). It opens with
 *   `event: stream` / `data: {"token": "..."}`, the stream's secret. Each
 *   server frame of docs/protocol.md is one default-type event
 *   (`data: <frame JSON>`), the first being `welcome`. A server close is
 *   `event: close` with `data: {"code": N}`, then the end of the response.
 * - Frames to the server: `POST /sse/chat/send/?connection=<connection_id>`,
 *   the body one frame's JSON text, with the page's CSRF token
 *   (`<meta name="csrf-token">`) in `X-CSRFToken` and the stream's token in
 *   `X-Ripple-Stream-Token` (the connection id is no secret; the token is,
 *   and only this stream's response carries it). Replies arrive on the
 *   stream. POSTs go one at a time, each after the previous one's response,
 *   because two in flight may reach different workers and arrive out of order.
 *
 * The stream never resumes by itself: an EventSource that errs is closed at
 * once (no automatic reconnect) and reported as a close with 1006, like a
 * dropped socket, so RippleSocket's reconnect, resubscribe and re-send apply.
 *
 * No dependencies and no build step. `EventSource`, `fetch` and `document`
 * are injectable through the constructor's second argument.
 */

import { CLOSE, ERROR_CODE, FRAME, READY_STATE, canSendCloseCode } from './ripple/constants.js';

const CSRF_META_SELECTOR = 'meta[name="csrf-token"]';
const CSRF_HEADER = 'X-CSRFToken';
const STREAM_TOKEN_HEADER = 'X-Ripple-Stream-Token';

const HTTP_FORBIDDEN = 403;
const HTTP_PAYLOAD_TOO_LARGE = 413;

/**
 * The stream URL for a RippleSocket URL: `ws://host/ws/chat/` becomes
 * `http://host/sse/chat/` (`wss:` becomes `https:`). An http: or https: URL is
 * returned as is. Throws a SyntaxError for anything else, as WebSocket does.
 */
export function sseUrl(url) {
  let parsed;
  try {
    parsed = new URL(String(url));
  } catch {
    throw new SyntaxError(`not an absolute URL: ${url}`);
  }
  if (parsed.protocol === 'http:' || parsed.protocol === 'https:') return parsed.href;
  const scheme = { 'ws:': 'http:', 'wss:': 'https:' }[parsed.protocol];
  if (scheme === undefined || !parsed.pathname.startsWith('/ws/')) {
    throw new SyntaxError(`not a ws: or wss: URL under /ws/: ${url}`);
  }
  return `${scheme}//${parsed.host}/sse/${parsed.pathname.slice('/ws/'.length)}${parsed.search}`;
}

function parseJson(text) {
  if (typeof text !== 'string') return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function isObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function domException(message, name) {
  return typeof globalThis.DOMException === 'function' ? new globalThis.DOMException(message, name) : Object.assign(new Error(message), { name });
}

/** A plain Event carrying WebSocket-style fields (`data`, `code`, `reason`, `wasClean`). */
function socketEvent(type, fields = {}) {
  return Object.assign(new Event(type), fields);
}

/**
 * A WebSocket look-alike over SSE and POST: `new SseSocket(url, {EventSource,
 * fetch, document})`, `url` being the ws:/wss: URL RippleSocket would open.
 *
 * Surface: the CONNECTING/OPEN/CLOSING/CLOSED constants (static and on the
 * instance), `readyState`, `url` (the stream URL), `connectionId` (from
 * `welcome`, null before), `send(text)`, `close(code, reason)`, and the
 * events `open`, `message` (`data`: one frame's JSON text), `error` and
 * `close` (`code`, `reason`, `wasClean`).
 *
 * - `open` fires when `welcome` arrives; the welcome itself follows as the
 *   first `message`. A first frame that is not a `welcome` with a
 *   `connection_id` ends the connection with 1006.
 * - The token of `event: stream` (before `welcome`; a later one is ignored)
 *   goes with every POST. A stream that sent none (a server from before the
 *   token) gets POSTs without it.
 * - `event: close` from the server becomes a `close` event with its code.
 * - A stream that fails or ends, and a POST that fails (network error, or an
 *   HTTP status other than 2xx, 403 and 413), end the connection: `error`,
 *   then `close` with 1006.
 * - A POST refused with 403 (CSRF token or origin) ends it with 1008: the
 *   token in the page is not accepted, and sending again will not change that.
 * - A POST refused with 413 loses that frame only: it is answered locally by
 *   an `error` frame `frame_too_large` (with the frame's `ref`, `room` and
 *   `client_id` when it had them), delivered as a `message`, and the next
 *   frame goes out.
 * - `send()` throws while connecting and does nothing once closing or closed,
 *   as WebSocket does. `close()` stops the stream, aborts the POST in flight,
 *   drops the unsent frames and removes every listener it added; its `close`
 *   event (`code` as given, 1005 without one) follows in a microtask. The
 *   server learns of it when the stream ends; the code is not sent.
 */
export class SseSocket extends EventTarget {
  static CONNECTING = READY_STATE.CONNECTING;
  static OPEN = READY_STATE.OPEN;
  static CLOSING = READY_STATE.CLOSING;
  static CLOSED = READY_STATE.CLOSED;

  /** The name RippleSocket reports for this transport (`transport`). */
  static transport = 'sse';

  /** True when `scope` has what this transport needs (EventSource and fetch). */
  static supported(scope = globalThis) {
    return typeof scope?.EventSource === 'function' && typeof scope?.fetch === 'function';
  }

  #url;
  #sendUrl;
  #fetch;
  #document;
  #source = null;
  #detachSource = null;
  #readyState = SseSocket.CONNECTING;
  #connectionId = null;
  // The stream's secret from `event: stream`: proves each POST comes from this stream's client.
  #streamToken = null;
  // Frames waiting for their POST, oldest first; the head is the one in flight.
  #queue = [];
  #posting = false;
  // Aborts the POST in flight, if any.
  #abort = null;

  constructor(url, { EventSource = globalThis.EventSource, fetch = globalThis.fetch, document = globalThis.document ?? null } = {}) {
    super();
    if (typeof EventSource !== 'function' || typeof fetch !== 'function') {
      throw new TypeError('SseSocket needs EventSource and fetch');
    }
    this.#url = sseUrl(url);
    this.#sendUrl = new URL('send/', this.#url);
    this.#fetch = fetch;
    this.#document = document;
    const source = new EventSource(this.#url);
    this.#source = source;
    const handlers = {
      stream: (event) => this.#onStreamToken(event),
      message: (event) => this.#onStreamMessage(event),
      close: (event) => this.#onStreamClose(event),
      error: () => this.#fail(CLOSE.ABNORMAL, 'stream ended'),
    };
    for (const [type, handler] of Object.entries(handlers)) source.addEventListener(type, handler);
    this.#detachSource = () => {
      for (const [type, handler] of Object.entries(handlers)) source.removeEventListener(type, handler);
    };
  }

  get CONNECTING() {
    return SseSocket.CONNECTING;
  }

  get OPEN() {
    return SseSocket.OPEN;
  }

  get CLOSING() {
    return SseSocket.CLOSING;
  }

  get CLOSED() {
    return SseSocket.CLOSED;
  }

  get readyState() {
    return this.#readyState;
  }

  /** The stream URL (http: or https:). */
  get url() {
    return this.#url;
  }

  /** The server's id for this connection, from `welcome`; null before it. */
  get connectionId() {
    return this.#connectionId;
  }

  /** Queues one frame's text for its POST; frames go out one at a time, in order. */
  send(text) {
    if (this.#readyState === SseSocket.CONNECTING) throw domException('SseSocket is still connecting', 'InvalidStateError');
    if (this.#readyState !== SseSocket.OPEN) return;
    this.#queue.push(String(text));
    this.#pump();
  }

  close(code, reason) {
    if (code !== undefined && !(Number.isInteger(code) && canSendCloseCode(code))) {
      throw domException(`close code ${code} is neither 1000 nor in 3000-4999`, 'InvalidAccessError');
    }
    if (this.#readyState === SseSocket.CLOSING || this.#readyState === SseSocket.CLOSED) return;
    this.#shutdown();
    this.#readyState = SseSocket.CLOSING;
    queueMicrotask(() => {
      this.#readyState = SseSocket.CLOSED;
      this.dispatchEvent(socketEvent('close', { code: code ?? CLOSE.NO_STATUS, reason: reason ?? '', wasClean: true }));
    });
  }

  // --- stream -----------------------------------------------------------------

  #onStreamMessage(event) {
    if (this.#readyState === SseSocket.OPEN) {
      this.dispatchEvent(socketEvent('message', { data: event.data }));
      return;
    }
    if (this.#readyState !== SseSocket.CONNECTING) return;
    const frame = parseJson(event.data);
    const id = frame?.connection_id;
    const validId = (typeof id === 'string' && id !== '') || Number.isInteger(id);
    if (!isObject(frame) || frame.type !== FRAME.WELCOME || !validId) {
      this.#fail(CLOSE.ABNORMAL, 'no welcome');
      return;
    }
    this.#connectionId = String(id);
    this.#sendUrl.searchParams.set('connection', this.#connectionId);
    this.#readyState = SseSocket.OPEN;
    this.dispatchEvent(socketEvent('open'));
    // An `open` listener may have closed this socket already.
    if (this.#readyState === SseSocket.OPEN) this.dispatchEvent(socketEvent('message', { data: event.data }));
  }

  #onStreamToken(event) {
    if (this.#readyState !== SseSocket.CONNECTING || this.#streamToken !== null) return;
    const token = parseJson(event.data)?.token;
    if (typeof token === 'string' && token !== '') this.#streamToken = token;
  }

  #onStreamClose(event) {
    const payload = parseJson(event.data);
    if (!isObject(payload) || !Number.isInteger(payload.code)) {
      this.#fail(CLOSE.ABNORMAL, 'unreadable close');
      return;
    }
    this.#end(payload.code, typeof payload.reason === 'string' ? payload.reason : '', { error: false });
  }

  // --- frames to the server ---------------------------------------------------

  /** Sends the queued frames one POST at a time; a POST starts after the previous response. */
  async #pump() {
    if (this.#posting) return;
    this.#posting = true;
    try {
      while (this.#queue.length > 0 && this.#readyState === SseSocket.OPEN) {
        const text = this.#queue[0];
        const status = await this.#post(text);
        if (this.#readyState !== SseSocket.OPEN) return;
        this.#queue.shift();
        if (status === null) {
          this.#fail(CLOSE.ABNORMAL, 'send failed');
        } else if (status === HTTP_PAYLOAD_TOO_LARGE) {
          this.#answerTooLarge(text);
        } else if (status === HTTP_FORBIDDEN) {
          this.#end(CLOSE.POLICY_VIOLATION, 'send refused (HTTP 403)', { error: false });
        } else if (status < 200 || status > 299) {
          this.#fail(CLOSE.ABNORMAL, `send failed (HTTP ${status})`);
        }
      }
    } finally {
      this.#posting = false;
    }
  }

  /** One POST; its HTTP status, or null when it never got a response. */
  async #post(text) {
    const controller = typeof globalThis.AbortController === 'function' ? new globalThis.AbortController() : null;
    this.#abort = controller;
    const headers = { 'Content-Type': 'text/plain;charset=UTF-8' };
    const token = this.#csrfToken();
    if (token !== null) headers[CSRF_HEADER] = token;
    if (this.#streamToken !== null) headers[STREAM_TOKEN_HEADER] = this.#streamToken;
    // Called unbound: a browser's fetch refuses any `this` but the global one.
    const fetch = this.#fetch;
    try {
      const response = await fetch(this.#sendUrl.href, {
        method: 'POST',
        body: text,
        headers,
        credentials: 'same-origin',
        // A redirect (to a login page, say) would turn the POST into a GET that "succeeds".
        redirect: 'error',
        signal: controller?.signal,
      });
      return Number.isInteger(response?.status) ? response.status : null;
    } catch {
      return null;
    } finally {
      if (this.#abort === controller) this.#abort = null;
    }
  }

  #csrfToken() {
    try {
      const token = this.#document?.querySelector?.(CSRF_META_SELECTOR)?.getAttribute?.('content');
      return typeof token === 'string' && token !== '' ? token : null;
    } catch {
      return null;
    }
  }

  /** The server never read a frame it refused with 413: answer it as a `frame_too_large` error. */
  #answerTooLarge(text) {
    const frame = parseJson(text);
    const reply = { type: FRAME.ERROR, code: ERROR_CODE.FRAME_TOO_LARGE, message: 'the frame is larger than the server accepts', ref: null };
    if (isObject(frame)) {
      if (typeof frame.ref === 'string' || Number.isInteger(frame.ref)) reply.ref = frame.ref;
      if (typeof frame.room === 'string') reply.room = frame.room;
      if (typeof frame.client_id === 'string') reply.client_id = frame.client_id;
    }
    this.dispatchEvent(socketEvent('message', { data: JSON.stringify(reply) }));
  }

  // --- teardown ---------------------------------------------------------------

  /** The connection is lost: `error`, then `close` with `code`. */
  #fail(code, reason) {
    this.#end(code, reason, { error: true });
  }

  #end(code, reason, { error }) {
    if (this.#readyState === SseSocket.CLOSING || this.#readyState === SseSocket.CLOSED) return;
    this.#shutdown();
    this.#readyState = SseSocket.CLOSED;
    if (error) this.dispatchEvent(socketEvent('error'));
    this.dispatchEvent(socketEvent('close', { code, reason, wasClean: !error }));
  }

  /** Stops the stream (no automatic reconnect), aborts the POST in flight, drops unsent frames. */
  #shutdown() {
    this.#queue = [];
    if (this.#detachSource) {
      this.#detachSource();
      this.#detachSource = null;
    }
    if (this.#source) {
      try {
        this.#source.close();
      } catch {
        // Closed either way.
      }
      this.#source = null;
    }
    if (this.#abort) {
      const controller = this.#abort;
      this.#abort = null;
      controller.abort();
    }
  }
}
