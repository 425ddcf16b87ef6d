// Shared helpers for the RippleSocket tests: a socket on fake browser objects, and the
// server frames the tests answer with.
import assert from 'node:assert/strict';
import { mock } from 'node:test';

import { FRAME, RippleSocket } from '../../static/js/ripple-socket.js';
import { fakeFetch, fakeSseServer, fakeStorage, flush } from './fake-sse.mjs';
import { FakeWebSocket, fakeEnvironment } from './fake-websocket.mjs';

export const URL = 'ws://ripple.test/ws/chat/';
export const EVENTS = [
  'statechange', 'open', 'message', 'ack', 'error', 'subscribed', 'giveup', 'welcome', 'reset', 'pong', 'presence',
  'ratelimited', 'unsubscribed', 'deleted',
];
export const CLIENT_ID = /^[A-Za-z0-9_.:-]{1,64}$/;

export function tick(ms) {
  mock.timers.tick(ms);
}

/** A RippleSocket on a fresh fake WebSocket class and fake window/document. */
export function setup(options = {}) {
  const { env: envOptions, WS = FakeWebSocket.fresh(), ...socketOptions } = options;
  const env = fakeEnvironment(envOptions);
  const events = [];
  const socket = new RippleSocket(URL, {
    WebSocket: WS,
    window: env.window,
    document: env.document,
    navigator: env.navigator,
    random: () => 0.5,
    connectTimeoutMs: 10 ** 9,
    // The health check's fetch: null (never the network) unless a test gives one.
    fetch: null,
    ...socketOptions,
  });
  for (const type of EVENTS) {
    socket.addEventListener(type, (event) => events.push({ type, detail: event.detail }));
  }
  return {
    WS,
    env,
    socket,
    events,
    get ws() {
      return WS.instances.at(-1);
    },
    of(type) {
      return events.filter((event) => event.type === type).map((event) => event.detail);
    },
    lastState() {
      return this.of('statechange').at(-1);
    },
  };
}

export function welcome(ws, { interval = 20000, timeout = 10000, limits = {} } = {}) {
  ws.serverSend({
    type: FRAME.WELCOME,
    protocol: 1,
    connection_id: 'c1',
    user: { name: 'alice', authenticated: true },
    heartbeat_interval_ms: interval,
    heartbeat_timeout_ms: timeout,
    server_time: Date.now(),
    limits: { max_body_chars: 4000, max_frame_chars: 16384, max_subscriptions: 20, history_size: 50, resume_limit: 500, ...limits },
  });
}

export function ack(ws, clientId, seq) {
  ws.serverSend({ type: FRAME.ACK, room: 'general', client_id: clientId, seq, sent_at: 'x', duplicate: false, ref: null });
}

/** The client_ids of the message frames `ws` carried, in order. */
export function sentIds(ws) {
  return ws.framesOfType(FRAME.MESSAGE).map((frame) => frame.client_id);
}

export function message(room, seq, extra = {}) {
  return {
    type: FRAME.MESSAGE,
    room,
    seq,
    author: 'bob',
    body: `m${seq}`,
    sent_at: '2026-11-22T04:13:53.123Z',
    client_id: `bob-${seq}`,
    ...extra,
  };
}

/** Answers the last subscribe for `room` on `ws` with `messages`. */
export function subscribed(ws, room, messages = [], extra = {}) {
  const request = ws.framesOfType(FRAME.SUBSCRIBE).filter((frame) => frame.room === room).at(-1);
  assert.ok(request, `no subscribe for ${room}`);
  const lastSeq = messages.length ? messages.at(-1).seq : (request.since ?? 0);
  ws.serverSend({
    type: FRAME.SUBSCRIBED,
    room,
    messages,
    last_seq: lastSeq,
    complete: true,
    ref: request.ref,
    ...extra,
  });
}

/** Fails the current connection attempt and lets the reconnect timer fire. */
export function failAndWait(ctx, code = 1006) {
  if (code === 1006) ctx.ws.serverError();
  else ctx.ws.serverClose(code);
  const { delayMs } = ctx.lastState();
  if (delayMs !== null) tick(Math.ceil(delayMs) + 1);
}

// --- transport choice and the HTTP fallback -------------------------------------

export const FALLBACK_KEY = 'ripple.transport';

/**
 * A RippleSocket with WebSocket then the fake SSE server as transports, and a
 * fake sessionStorage; `sse` is the server (its `es` the newest stream),
 * `health` the fetch of its health checks (answering 200 at once unless given).
 */
export function setupFallback(options = {}) {
  const { sse = fakeSseServer(), storage = fakeStorage(), health = fakeFetch({ autoStatus: 200 }), ...rest } = options;
  const WS = rest.WS ?? FakeWebSocket.fresh();
  const ctx = setup({ WS, transports: [WS, sse.Sse], sessionStorage: storage, fetch: health, ...rest });
  return Object.assign(ctx, { sse, storage, health });
}

/**
 * WebSocket blocked while HTTP works: fast failures until the health check
 * answers and the attempt it brings forward fails fast too (the tab then moves).
 */
export async function blockWebSocket(ctx, failures = 3) {
  for (let n = 1; n < failures; n += 1) failAndWait(ctx);
  ctx.ws.serverError(); // the last one: the health check goes out
  await flush(); // HTTP answers: the next attempt goes out at once
  failAndWait(ctx); // and fails fast too: the next connection uses the fallback
}

/** A tab that moved to the fallback earlier (sessionStorage says so), open on it. */
export function onFallback(options = {}) {
  const ctx = setupFallback({ storage: fakeStorage({ [FALLBACK_KEY]: 'sse' }), ...options });
  ctx.sse.welcome('conn-1');
  return ctx;
}

/** Replaces globals for one test; `t.after` puts them back. */
export function withGlobals(t, values) {
  const saved = {};
  for (const name of Object.keys(values)) saved[name] = Object.getOwnPropertyDescriptor(globalThis, name);
  t.after(() => {
    for (const [name, descriptor] of Object.entries(saved)) {
      if (descriptor) Object.defineProperty(globalThis, name, descriptor);
      else delete globalThis[name];
    }
  });
  for (const [name, value] of Object.entries(values)) {
    Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
  }
}
