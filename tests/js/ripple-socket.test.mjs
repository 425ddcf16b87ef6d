import assert from 'node:assert/strict';
import { describe, mock, test } from 'node:test';

import { CLOSE, FRAME, RippleSocket, STATE, TRANSPORT, Timer } from '../../static/js/ripple-socket.js';
import { fakeFetch, FakeEventSource, fakeSseServer, fakeStorage, flush, metaDocument } from './fake-sse.mjs';
import { FakeWebSocket, fakeEnvironment, useMockTimers } from './fake-websocket.mjs';

const URL = 'ws://ripple.test/ws/chat/';
const EVENTS = [
  'statechange', 'open', 'message', 'ack', 'error', 'subscribed', 'giveup', 'welcome', 'reset', 'pong', 'presence',
  'ratelimited', 'unsubscribed', 'deleted',
];
const CLIENT_ID = /^[A-Za-z0-9_.:-]{1,64}$/;

const liveTimers = useMockTimers();

function tick(ms) {
  mock.timers.tick(ms);
}

/** A RippleSocket on a fresh fake WebSocket class and fake window/document. */
function setup(options = {}) {
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

function welcome(ws, { interval = 20000, timeout = 10000, limits = {} } = {}) {
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

function ack(ws, clientId, seq) {
  ws.serverSend({ type: FRAME.ACK, room: 'general', client_id: clientId, seq, sent_at: 'x', duplicate: false, ref: null });
}

/** The client_ids of the message frames `ws` carried, in order. */
function sentIds(ws) {
  return ws.framesOfType(FRAME.MESSAGE).map((frame) => frame.client_id);
}

function message(room, seq, extra = {}) {
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
function subscribed(ws, room, messages = [], extra = {}) {
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
function failAndWait(ctx, code = 1006) {
  if (code === 1006) ctx.ws.serverError();
  else ctx.ws.serverClose(code);
  const { delayMs } = ctx.lastState();
  if (delayMs !== null) tick(Math.ceil(delayMs) + 1);
}

describe('Timer', () => {
  test('backoff delay stays within [0, cap] for every attempt and random value', () => {
    for (const r of [0, 0.001, 0.25, 0.5, 0.75, 0.999999]) {
      const timer = new Timer(() => {}, { baseMs: 500, maxMs: 30000, random: () => r });
      for (let tries = 0; tries < 40; tries += 1) {
        const cap = Math.min(30000, 500 * 2 ** tries);
        const delay = timer.delayFor(tries);
        assert.ok(delay >= 0 && delay <= cap, `tries=${tries} r=${r}: ${delay} not in [0, ${cap}]`);
        assert.ok(delay <= 30000);
      }
    }
  });

  test('backoff is jittered: different random values give different delays', () => {
    const values = [0.1, 0.4, 0.9];
    const delays = values.map((r) => new Timer(() => {}, { random: () => r }).delayFor(3));
    assert.deepEqual(delays, [400, 1600, 3600]);
    assert.equal(new Set(delays).size, values.length);
  });

  test('cap doubles per attempt and saturates at maxMs', () => {
    const timer = new Timer(() => {}, { baseMs: 500, maxMs: 30000 });
    assert.deepEqual([0, 1, 2, 5, 6, 30].map((t) => timer.capFor(t)), [500, 1000, 2000, 16000, 30000, 30000]);
  });

  test('floor raises tiny delays but never above the cap', () => {
    const timer = new Timer(() => {}, { baseMs: 100, maxMs: 1000, floorMs: 250, random: () => 0 });
    assert.equal(timer.delayFor(0), 100);
    assert.equal(timer.delayFor(3), 250);
  });

  test('schedule replaces the pending timeout so only one ever fires', () => {
    let fired = 0;
    const timer = new Timer(() => {
      fired += 1;
    });
    timer.schedule(100);
    timer.schedule(300);
    assert.equal(timer.pending, true);
    tick(1000);
    assert.equal(fired, 1);
    assert.equal(timer.pending, false);
    assert.equal(liveTimers().pending, 0);
  });
});

describe('exported maps', () => {
  test('STATE, FRAME and CLOSE are frozen and name the protocol', () => {
    assert.ok(Object.isFrozen(STATE) && Object.isFrozen(FRAME) && Object.isFrozen(CLOSE));
    assert.deepEqual(Object.values(STATE).sort(), ['closed', 'connecting', 'failed', 'open', 'reconnecting']);
    assert.deepEqual(
      Object.values(FRAME).sort(),
      [
        'ack', 'deleted', 'error', 'message', 'ping', 'pong', 'presence', 'room_closed', 'subscribe', 'subscribed',
        'unsubscribe', 'unsubscribed', 'welcome',
      ],
    );
    assert.equal(CLOSE.HEARTBEAT_TIMEOUT, 4408);
    assert.deepEqual(
      [CLOSE.SESSION_ENDED, CLOSE.DISCONNECTED_BY_MODERATOR, CLOSE.TOO_MANY_CONNECTIONS, CLOSE.FLOODING],
      [4401, 4403, 4409, 4429],
    );
    assert.deepEqual([CLOSE.TRY_AGAIN_LATER, CLOSE.TOO_SLOW, CLOSE.DRAINING], [4503, 4509, 4512]);
  });
});

describe('RippleSocket reconnect', () => {
  test('starts connecting at once to the given URL', () => {
    const ctx = setup();
    assert.equal(ctx.WS.instances.length, 1);
    assert.equal(ctx.ws.url, URL);
    assert.equal(ctx.socket.state, STATE.CONNECTING);
    ctx.ws.serverOpen();
    assert.equal(ctx.socket.state, STATE.OPEN);
    assert.equal(ctx.of('open').length, 1);
    assert.deepEqual(ctx.lastState(), {
      state: 'open', attempt: 1, maxAttempts: 20, delayMs: null, transport: 'websocket', offline: false, code: null, reason: null,
    });
    ctx.socket.close();
  });

  test('reconnect delays are jittered and stay within the doubling cap', () => {
    const randoms = [0.9, 0.1, 0.6, 0.3, 0.99, 0.5];
    let i = 0;
    const ctx = setup({ random: () => randoms[i++ % randoms.length], backoffBaseMs: 500, backoffMaxMs: 4000 });
    const delays = [];
    for (let n = 0; n < randoms.length; n += 1) {
      failAndWait(ctx);
      delays.push(ctx.of('statechange').filter((d) => d.state === STATE.RECONNECTING).at(-1).delayMs);
    }
    const caps = [500, 1000, 2000, 4000, 4000, 4000];
    assert.deepEqual(delays, randoms.map((r, n) => r * caps[n]));
    delays.forEach((delay, n) => assert.ok(delay >= 0 && delay <= caps[n]));
    assert.equal(ctx.WS.instances.length, randoms.length + 1);
    ctx.socket.close();
  });

  test('error and close of the same socket schedule exactly one reconnect', () => {
    const ctx = setup();
    ctx.ws.serverError(); // error, then close 1006
    assert.equal(ctx.socket.state, STATE.RECONNECTING);
    assert.equal(ctx.of('statechange').filter((d) => d.state === STATE.RECONNECTING).length, 1);
    assert.equal(liveTimers().pending, 1, 'only the reconnect timer');
    tick(250);
    assert.equal(ctx.WS.instances.length, 2);
    tick(60000);
    assert.equal(ctx.WS.instances.length, 2);
    ctx.socket.close();
  });

  test('online during the reconnect wait connects at once and cancels the timer', () => {
    const ctx = setup();
    ctx.ws.serverError();
    assert.equal(ctx.lastState().delayMs, 250);
    ctx.env.goOnline();
    ctx.env.goOnline();
    assert.equal(ctx.WS.instances.length, 2);
    assert.equal(ctx.socket.state, STATE.CONNECTING);
    tick(60000);
    assert.equal(ctx.WS.instances.length, 2, 'the cancelled timer must not fire');
    ctx.socket.close();
  });

  test('retry, online and visibility while connecting never start a second attempt', () => {
    const ctx = setup();
    ctx.socket.retry();
    ctx.env.goOnline();
    ctx.env.setVisibility('visible');
    ctx.socket.retry();
    assert.equal(ctx.WS.instances.length, 1);
    ctx.ws.serverError();
    ctx.socket.retry(); // while waiting: reconnect now
    ctx.socket.retry();
    ctx.env.goOnline();
    assert.equal(ctx.WS.instances.length, 2);
    tick(60000);
    assert.equal(ctx.WS.instances.length, 2);
    ctx.socket.close();
  });

  test('maxAttempts consecutive failures end in failed and giveup, with no timer left', () => {
    const ctx = setup({ maxAttempts: 3 });
    failAndWait(ctx);
    failAndWait(ctx);
    assert.equal(ctx.lastState().attempt, 3);
    ctx.ws.serverError();
    assert.equal(ctx.socket.state, STATE.FAILED);
    assert.equal(ctx.of('giveup').length, 1);
    assert.equal(ctx.of('giveup')[0].attempt, 3);
    assert.equal(ctx.lastState().state, STATE.FAILED);
    assert.equal(liveTimers().pending, 0);
    assert.equal(ctx.env.window.listenerCount(), 0);
    tick(10 ** 7);
    ctx.env.goOnline();
    assert.equal(ctx.WS.instances.length, 3);
    assert.equal(ctx.of('giveup').length, 1);
  });

  test('retry after failed starts over with the counter reset', () => {
    const ctx = setup({ maxAttempts: 2 });
    failAndWait(ctx);
    ctx.ws.serverError();
    assert.equal(ctx.socket.state, STATE.FAILED);
    ctx.socket.retry();
    assert.equal(ctx.WS.instances.length, 3);
    assert.equal(ctx.socket.state, STATE.CONNECTING);
    assert.equal(ctx.lastState().attempt, 1);
    ctx.ws.serverError();
    assert.equal(ctx.socket.state, STATE.RECONNECTING, 'a fresh budget of attempts');
    ctx.socket.close();
  });

  test('a socket that stays open stableAfterMs resets the attempt counter', () => {
    const ctx = setup({ stableAfterMs: 5000 });
    failAndWait(ctx);
    failAndWait(ctx);
    assert.equal(ctx.lastState().attempt, 3);
    ctx.ws.serverOpen();
    tick(5000);
    ctx.ws.serverClose(1006);
    assert.equal(ctx.lastState().attempt, 2, 'one failure since the stable connection');
    assert.equal(ctx.lastState().delayMs, 250, 'first-retry cap again');
    ctx.socket.close();
  });

  test('a flapping server that accepts then drops does not reset the counter', () => {
    const ctx = setup({ stableAfterMs: 5000, maxAttempts: 4 });
    for (let n = 0; n < 3; n += 1) {
      ctx.ws.serverOpen();
      tick(4999);
      failAndWait(ctx);
    }
    ctx.ws.serverOpen();
    tick(1000);
    ctx.ws.serverClose(1006);
    assert.equal(ctx.socket.state, STATE.FAILED);
    assert.equal(ctx.of('giveup').length, 1);
  });

  test('a handshake that never completes is abandoned after connectTimeoutMs', () => {
    const ctx = setup({ connectTimeoutMs: 3000 });
    tick(2999);
    assert.equal(ctx.socket.state, STATE.CONNECTING);
    tick(1);
    assert.deepEqual(ctx.WS.instances[0].closeCalls, [{ code: CLOSE.CLIENT_CONNECT_TIMEOUT, reason: 'connect timeout' }]);
    assert.equal(ctx.socket.state, STATE.RECONNECTING);
    ctx.socket.close();
  });
});

describe('RippleSocket close codes', () => {
  for (const code of [4403, 4401, 4409, 4429, 4499, 1008]) {
    test(`server close ${code} stops reconnecting: closed, not failed`, () => {
      const ctx = setup();
      ctx.ws.serverOpen();
      ctx.ws.serverClose(code, 'go away');
      assert.equal(ctx.socket.state, STATE.CLOSED);
      assert.equal(ctx.lastState().code, code);
      assert.equal(ctx.of('giveup').length, 0);
      assert.equal(liveTimers().pending, 0);
      assert.equal(ctx.env.window.listenerCount() + ctx.env.document.listenerCount(), 0);
      ctx.env.goOnline();
      tick(10 ** 7);
      assert.equal(ctx.WS.instances.length, 1);
    });
  }

  for (const code of [1012, 1001, 4512]) {
    test(`server close ${code} reconnects quickly without counting an attempt`, () => {
      const ctx = setup({ random: () => 0.3 });
      failAndWait(ctx);
      failAndWait(ctx);
      const attemptBefore = ctx.lastState().attempt;
      ctx.ws.serverOpen();
      ctx.ws.serverClose(code);
      const detail = ctx.lastState();
      assert.equal(detail.state, STATE.RECONNECTING);
      assert.equal(detail.code, code);
      assert.equal(detail.delayMs, 300, 'random() * 1000');
      assert.equal(detail.attempt, attemptBefore);
      tick(300);
      assert.equal(ctx.WS.instances.length, 4);
      ctx.socket.close();
    });
  }

  test('4408 and 1011 reconnect with normal backoff and count as failures', () => {
    const ctx = setup({ random: () => 1 - Number.EPSILON });
    ctx.ws.serverOpen();
    ctx.ws.serverClose(4408);
    assert.equal(ctx.socket.state, STATE.RECONNECTING);
    assert.equal(ctx.lastState().attempt, 2);
    tick(500);
    ctx.ws.serverOpen();
    ctx.ws.serverClose(1011);
    assert.equal(ctx.lastState().attempt, 3);
    assert.ok(ctx.lastState().delayMs > 999 && ctx.lastState().delayMs <= 1000);
    ctx.socket.close();
  });

  test('4401 session ended: closed for good, the detail names the code, waiting sends reject', async () => {
    const ctx = setup();
    ctx.socket.subscribe('general');
    ctx.ws.serverOpen();
    subscribed(ctx.ws, 'general');
    const pending = ctx.socket.send('general', 'x');
    ctx.ws.serverClose(CLOSE.SESSION_ENDED, '');
    assert.equal(ctx.socket.state, STATE.CLOSED);
    const expected = {
      state: 'closed', attempt: 1, maxAttempts: 20, delayMs: null, transport: 'websocket', offline: false,
      code: CLOSE.SESSION_ENDED, reason: '',
    };
    assert.deepEqual(ctx.lastState(), expected);
    assert.deepEqual(ctx.socket.stateDetail, expected, 'a page that listens late sees it too');
    await assert.rejects(pending.acked, { code: 'closed', closeCode: CLOSE.SESSION_ENDED });
    assert.equal(liveTimers().pending, 0);
    tick(10 ** 7);
    assert.equal(ctx.WS.instances.length, 1);
  });

  for (const code of [CLOSE.TRY_AGAIN_LATER, CLOSE.TOO_SLOW]) {
    test(`server close ${code} reconnects with normal backoff and resumes since the last seq`, async () => {
      const ctx = setup({ random: () => 0.5 });
      ctx.socket.subscribe('general', { since: 3 });
      ctx.ws.serverOpen();
      subscribed(ctx.ws, 'general', [message('general', 4), message('general', 5)]);
      const pending = ctx.socket.send('general', 'unacked');
      ctx.ws.serverClose(code);
      const detail = ctx.lastState();
      assert.equal(detail.state, STATE.RECONNECTING);
      assert.equal(detail.code, code);
      assert.equal(detail.attempt, 2, 'counted as a failure');
      assert.equal(detail.delayMs, 250, 'random() * backoffBaseMs');
      tick(249);
      assert.equal(ctx.WS.instances.length, 1);
      tick(1);
      assert.equal(ctx.WS.instances.length, 2);
      ctx.ws.serverOpen();
      assert.deepEqual(ctx.ws.framesOfType(FRAME.SUBSCRIBE).map((f) => [f.room, f.since]), [['general', 5]]);
      subscribed(ctx.ws, 'general');
      assert.deepEqual(sentIds(ctx.ws), [pending.clientId], 'the unacknowledged message goes out again');
      ack(ctx.ws, pending.clientId, 6);
      assert.equal((await pending.acked).seq, 6);

      // A second such close backs off further: the doubling cap applies.
      ctx.ws.serverClose(code);
      assert.equal(ctx.lastState().attempt, 3);
      assert.equal(ctx.lastState().delayMs, 500);
      ctx.socket.close();
    });
  }

  test('4512 draining reconnects after a random delay below quickReconnectMs, not counted, and resumes', () => {
    const randoms = [0, 0.999];
    let i = 0;
    const ctx = setup({ quickReconnectMs: 200, random: () => randoms[i++ % randoms.length] });
    ctx.socket.subscribe('general', { since: 7 });
    ctx.ws.serverOpen();
    subscribed(ctx.ws, 'general', [message('general', 8)]);
    ctx.ws.serverClose(CLOSE.DRAINING);
    assert.equal(ctx.lastState().delayMs, 0);
    assert.equal(ctx.lastState().attempt, 1);
    tick(0);
    assert.equal(ctx.WS.instances.length, 2);
    ctx.ws.serverOpen();
    assert.equal(ctx.ws.framesOfType(FRAME.SUBSCRIBE)[0].since, 8);
    ctx.ws.serverClose(CLOSE.DRAINING);
    const { delayMs, attempt, code } = ctx.lastState();
    assert.ok(delayMs >= 0 && delayMs < 200, `${delayMs} in [0, 200)`);
    assert.equal(attempt, 1, 'a drain is never a failure');
    assert.equal(code, CLOSE.DRAINING);
    tick(Math.ceil(delayMs));
    assert.equal(ctx.WS.instances.length, 3);
    ctx.socket.close();
  });

  test('close() by the page never reconnects', () => {
    const ctx = setup();
    ctx.ws.serverOpen();
    const ws = ctx.ws;
    ctx.socket.close();
    assert.deepEqual(ws.closeCalls, [{ code: 1000, reason: 'page closed' }]);
    assert.equal(ctx.socket.state, STATE.CLOSED);
    ws.serverClose(1000);
    ctx.socket.retry();
    ctx.env.goOnline();
    tick(10 ** 7);
    assert.equal(ctx.WS.instances.length, 1);
  });
});

describe('RippleSocket heartbeat', () => {
  test('after welcome it pings every interval and records the round trip from pong.t', () => {
    const ctx = setup();
    ctx.ws.serverOpen();
    welcome(ctx.ws, { interval: 1000, timeout: 500 });
    assert.equal(ctx.of('welcome').length, 1);
    tick(999);
    assert.equal(ctx.ws.framesOfType(FRAME.PING).length, 0);
    tick(1);
    const [ping] = ctx.ws.framesOfType(FRAME.PING);
    assert.equal(ping.t, Date.now());
    tick(30);
    ctx.ws.serverSend({ type: FRAME.PONG, t: ping.t, ref: null });
    assert.equal(ctx.socket.rttMs, 30);
    assert.equal(ctx.of('pong').at(-1).rttMs, 30);
    tick(970);
    assert.equal(ctx.ws.framesOfType(FRAME.PING).length, 2);
    ctx.socket.close();
  });

  test('no frame within the timeout after a ping closes the socket and reconnects', () => {
    const ctx = setup();
    ctx.ws.serverOpen();
    welcome(ctx.ws, { interval: 1000, timeout: 500 });
    const dead = ctx.ws;
    tick(1000);
    tick(499);
    assert.equal(ctx.socket.state, STATE.OPEN);
    tick(1);
    assert.deepEqual(dead.closeCalls, [{ code: CLOSE.CLIENT_HEARTBEAT_TIMEOUT, reason: 'heartbeat timeout' }]);
    // The fake never completes the closing handshake: the client must not wait for it.
    assert.equal(ctx.socket.state, STATE.RECONNECTING);
    tick(ctx.lastState().delayMs);
    assert.equal(ctx.WS.instances.length, 2);
    ctx.socket.close();
  });

  test('any frame before the deadline keeps the socket', () => {
    const ctx = setup();
    ctx.ws.serverOpen();
    welcome(ctx.ws, { interval: 1000, timeout: 500 });
    ctx.socket.subscribe('general');
    subscribed(ctx.ws, 'general');
    tick(1000);
    tick(400);
    ctx.ws.serverSend(message('general', 1));
    tick(400);
    assert.equal(ctx.socket.state, STATE.OPEN);
    assert.equal(ctx.ws.closeCalls.length, 0);
    ctx.socket.close();
  });

  test('heartbeat runs with the default interval before welcome, then with the server values', () => {
    const ctx = setup({ heartbeatIntervalMs: 3000 });
    ctx.ws.serverOpen();
    tick(3000);
    assert.equal(ctx.ws.framesOfType(FRAME.PING).length, 1);
    ctx.ws.serverSend({ type: FRAME.PONG, t: 0 });
    welcome(ctx.ws, { interval: 100, timeout: 50 });
    tick(100);
    assert.equal(ctx.ws.framesOfType(FRAME.PING).length, 2);
    ctx.socket.close();
  });

  test('a server ping is answered with a pong carrying the same t', () => {
    const ctx = setup();
    ctx.ws.serverOpen();
    ctx.ws.serverSend({ type: FRAME.PING, t: 123456 });
    assert.deepEqual(ctx.ws.framesOfType(FRAME.PONG), [{ type: 'pong', t: 123456 }]);
    ctx.socket.close();
  });

  test('becoming visible pings at once and applies the pong deadline', () => {
    const ctx = setup();
    ctx.ws.serverOpen();
    welcome(ctx.ws, { interval: 20000, timeout: 500 });
    ctx.env.setVisibility('hidden');
    assert.equal(ctx.ws.framesOfType(FRAME.PING).length, 0);
    ctx.env.setVisibility('visible');
    assert.equal(ctx.ws.framesOfType(FRAME.PING).length, 1);
    tick(500);
    assert.equal(ctx.ws.closeCalls[0].code, CLOSE.CLIENT_HEARTBEAT_TIMEOUT);
    assert.equal(ctx.socket.state, STATE.RECONNECTING);
    ctx.socket.close();
  });
});

describe('RippleSocket browser signals', () => {
  test('while offline no attempt is scheduled; online connects at once', () => {
    const ctx = setup();
    ctx.ws.serverOpen();
    ctx.env.navigator.onLine = false;
    ctx.env.window.fire('offline');
    ctx.ws.serverClose(1006);
    const detail = ctx.lastState();
    assert.equal(detail.state, STATE.RECONNECTING);
    assert.equal(detail.offline, true);
    assert.equal(detail.delayMs, null);
    assert.equal(liveTimers().pending, 0);
    tick(10 ** 7);
    assert.equal(ctx.WS.instances.length, 1);
    ctx.env.goOnline();
    assert.equal(ctx.WS.instances.length, 2);
    assert.equal(ctx.socket.state, STATE.CONNECTING);
    ctx.socket.close();
  });

  test('an offline event during the reconnect wait cancels the pending timer', () => {
    const ctx = setup();
    ctx.ws.serverError();
    assert.equal(liveTimers().pending, 1);
    ctx.env.goOffline();
    assert.equal(liveTimers().pending, 0);
    assert.equal(ctx.lastState().offline, true);
    tick(10 ** 6);
    assert.equal(ctx.WS.instances.length, 1);
    ctx.socket.close();
  });

  test('starting with navigator.onLine false waits for the network', () => {
    const ctx = setup({ env: { onLine: false } });
    assert.equal(ctx.WS.instances.length, 0);
    assert.equal(ctx.socket.state, STATE.RECONNECTING);
    ctx.env.goOnline();
    assert.equal(ctx.WS.instances.length, 1);
    ctx.socket.close();
  });
});

describe('RippleSocket messages', () => {
  test('a message sent while offline goes out once after reconnect, with the same client_id', async () => {
    const ctx = setup();
    const received = [];
    ctx.socket.subscribe('general', { since: 10, onMessage: (frame) => received.push(frame.seq) });
    const { clientId, acked } = ctx.socket.send('general', 'hello');
    assert.match(clientId, CLIENT_ID);
    assert.equal(ctx.socket.queued, 1);

    // First connection: subscribed, the message goes out, then the socket dies before the ack.
    ctx.ws.serverOpen();
    assert.deepEqual(ctx.ws.framesOfType(FRAME.MESSAGE), [], 'messages wait for subscribed');
    assert.equal(ctx.ws.framesOfType(FRAME.SUBSCRIBE)[0].since, 10);
    subscribed(ctx.ws, 'general', [message('general', 11)]);
    assert.deepEqual(ctx.ws.framesOfType(FRAME.MESSAGE), [
      { type: 'message', room: 'general', body: 'hello', client_id: clientId },
    ]);
    ctx.ws.serverClose(1006);

    // A second message while disconnected.
    const second = ctx.socket.send('general', 'again');
    tick(ctx.lastState().delayMs);
    const ws = ctx.ws;
    ws.serverOpen();
    assert.deepEqual(ws.framesOfType(FRAME.SUBSCRIBE).map((f) => f.since), [11]);
    assert.deepEqual(ws.framesOfType(FRAME.MESSAGE), []);
    subscribed(ws, 'general', [message('general', 12, { client_id: clientId, author: 'alice', body: 'hello' })]);
    assert.deepEqual(ws.framesOfType(FRAME.MESSAGE).map((f) => f.client_id), [clientId, second.clientId]);

    ws.serverSend({ type: FRAME.ACK, room: 'general', client_id: clientId, seq: 12, sent_at: 'x', duplicate: true, ref: null });
    const ack = await acked;
    assert.equal(ack.seq, 12);
    assert.equal(ack.duplicate, true);
    ws.serverSend({ type: FRAME.ACK, room: 'general', client_id: second.clientId, seq: 13, sent_at: 'x', duplicate: false });
    assert.equal((await second.acked).seq, 13);
    assert.equal(ctx.socket.queued, 0);
    assert.deepEqual(received, [11, 12]);

    // Acknowledged messages are not sent again after another reconnect.
    ws.serverClose(1006);
    tick(ctx.lastState().delayMs);
    ctx.ws.serverOpen();
    subscribed(ctx.ws, 'general');
    assert.deepEqual(ctx.ws.framesOfType(FRAME.MESSAGE), []);
    ctx.socket.close();
  });

  test('a message sent while open and subscribed goes out immediately; ack resolves its promise', async () => {
    const ctx = setup();
    ctx.ws.serverOpen();
    ctx.socket.subscribe('general');
    subscribed(ctx.ws, 'general');
    const { clientId, acked } = ctx.socket.send('general', 'hi');
    assert.equal(ctx.ws.framesOfType(FRAME.MESSAGE).length, 1);
    const ackFrame = { type: FRAME.ACK, room: 'general', client_id: clientId, seq: 1, sent_at: 'x', duplicate: false, ref: null };
    ctx.ws.serverSend(ackFrame);
    assert.deepEqual(await acked, ackFrame);
    assert.deepEqual(ctx.of('ack'), [ackFrame]);
    ctx.socket.close();
  });

  test('an error frame with the client_id rejects the send promise', async () => {
    const ctx = setup();
    ctx.ws.serverOpen();
    ctx.socket.subscribe('general');
    subscribed(ctx.ws, 'general');
    const { clientId, acked } = ctx.socket.send('general', '   ');
    const errorFrame = { type: FRAME.ERROR, code: 'body_empty', message: 'empty', ref: null, room: 'general', client_id: clientId };
    ctx.ws.serverSend(errorFrame);
    await assert.rejects(acked, (error) => error.code === 'body_empty' && error.frame.client_id === clientId);
    assert.deepEqual(ctx.of('error'), [errorFrame]);
    assert.equal(ctx.socket.queued, 0);
    ctx.socket.close();
  });

  test('sends beyond maxQueue reject with queue_full', async () => {
    const ctx = setup({ maxQueue: 2 });
    ctx.socket.subscribe('general');
    ctx.socket.send('general', 'a');
    ctx.socket.send('general', 'b');
    const third = ctx.socket.send('general', 'c');
    await assert.rejects(third.acked, (error) => error instanceof Error && error.code === 'queue_full' && error.message === 'queue_full');
    assert.equal(ctx.socket.queued, 2);
    ctx.socket.close();
  });

  test('a send to a room that is not subscribed rejects with not_subscribed', async () => {
    const ctx = setup();
    await assert.rejects(ctx.socket.send('nowhere', 'x').acked, { code: 'not_subscribed' });
    ctx.socket.close();
  });

  test('unsubscribe rejects that room’s waiting sends and ignores its later messages', async () => {
    const ctx = setup();
    ctx.ws.serverOpen();
    const seen = [];
    ctx.socket.subscribe('general', { onMessage: (f) => seen.push(f.seq) });
    subscribed(ctx.ws, 'general');
    const pending = ctx.socket.send('general', 'x');
    ctx.socket.unsubscribe('general');
    assert.deepEqual(ctx.ws.framesOfType(FRAME.UNSUBSCRIBE), [{ type: 'unsubscribe', room: 'general' }]);
    await assert.rejects(pending.acked, { code: 'unsubscribed' });
    ctx.ws.serverSend(message('general', 1));
    assert.deepEqual(seen, []);
    assert.equal(ctx.of('message').length, 0);
    ctx.socket.close();
  });

  test('duplicate messages (seq not above the last seen) are dropped', () => {
    const ctx = setup();
    ctx.ws.serverOpen();
    const seen = [];
    ctx.socket.subscribe('general', { onMessage: (f) => seen.push(f.seq) });
    subscribed(ctx.ws, 'general', [message('general', 1), message('general', 2), message('general', 2)]);
    for (const seq of [2, 1, 3, 3, 2, 4]) ctx.ws.serverSend(message('general', seq));
    assert.deepEqual(seen, [1, 2, 3, 4]);
    assert.deepEqual(ctx.of('message').map((f) => f.seq), [1, 2, 3, 4]);
    ctx.socket.close();
  });

  test('a gap triggers unsubscribe then subscribe since the last seen seq, without delivering out of order', () => {
    const ctx = setup();
    ctx.ws.serverOpen();
    const seen = [];
    ctx.socket.subscribe('general', { since: 2, onMessage: (f) => seen.push(f.seq) });
    subscribed(ctx.ws, 'general', [message('general', 3)]);
    ctx.ws.serverSend(message('general', 5));
    ctx.ws.serverSend(message('general', 6));
    assert.deepEqual(seen, [3]);
    const types = ctx.ws.frames.filter((f) => f.type !== FRAME.PING).map((f) => `${f.type}:${f.since ?? ''}`);
    assert.deepEqual(types, ['subscribe:2', 'unsubscribe:', 'subscribe:3'], 'one resubscribe for the whole gap');
    ctx.ws.serverSend({ type: FRAME.UNSUBSCRIBED, room: 'general', ref: null });
    subscribed(ctx.ws, 'general', [message('general', 4), message('general', 5), message('general', 6)]);
    ctx.ws.serverSend(message('general', 6));
    ctx.ws.serverSend(message('general', 7));
    assert.deepEqual(seen, [3, 4, 5, 6, 7]);
    ctx.socket.close();
  });

  test('a gap resubscribe does not send an unacknowledged message twice on the same socket', () => {
    const ctx = setup();
    ctx.ws.serverOpen();
    ctx.socket.subscribe('general', { since: 1 });
    subscribed(ctx.ws, 'general');
    const first = ctx.socket.send('general', 'before the gap');
    ctx.ws.serverSend(message('general', 3));
    const second = ctx.socket.send('general', 'during the resubscribe');
    assert.deepEqual(ctx.ws.framesOfType(FRAME.MESSAGE).map((f) => f.client_id), [first.clientId]);
    subscribed(ctx.ws, 'general', [message('general', 2), message('general', 3)]);
    assert.deepEqual(ctx.ws.framesOfType(FRAME.MESSAGE).map((f) => f.client_id), [first.clientId, second.clientId]);
    ctx.socket.close();
  });

  test('after reconnect every room is re-subscribed since its last seen seq, or its initial since', () => {
    const ctx = setup();
    ctx.socket.subscribe('general', { since: 40 });
    ctx.socket.subscribe('random', { since: 7 });
    ctx.socket.subscribe('fresh');
    ctx.ws.serverOpen();
    subscribed(ctx.ws, 'general', [message('general', 41), message('general', 42)]);
    ctx.ws.serverClose(1006);
    tick(ctx.lastState().delayMs);
    ctx.ws.serverOpen();
    const subs = Object.fromEntries(ctx.ws.framesOfType(FRAME.SUBSCRIBE).map((f) => [f.room, f.since]));
    assert.deepEqual(subs, { general: 42, random: 7, fresh: undefined });
    ctx.socket.close();
  });

  test('a stale subscribed reply (older ref) is ignored', () => {
    const ctx = setup();
    ctx.ws.serverOpen();
    const seen = [];
    ctx.socket.subscribe('general', { since: 5, onMessage: (f) => seen.push(f.seq) });
    const { ref } = ctx.ws.framesOfType(FRAME.SUBSCRIBE)[0];
    ctx.ws.serverSend({ type: FRAME.SUBSCRIBED, room: 'general', messages: [message('general', 9)], last_seq: 9, complete: true, ref: 'old' });
    assert.deepEqual(seen, []);
    ctx.ws.serverSend({ type: FRAME.SUBSCRIBED, room: 'general', messages: [message('general', 6)], last_seq: 6, complete: true, ref });
    assert.deepEqual(seen, [6]);
    ctx.socket.close();
  });

  test('complete:false dispatches reset before delivering the messages', () => {
    const ctx = setup();
    ctx.ws.serverOpen();
    const order = [];
    ctx.socket.addEventListener('reset', (e) => order.push(`reset:${e.detail.room}`));
    ctx.socket.subscribe('general', { since: 3, onMessage: (f) => order.push(f.seq) });
    subscribed(ctx.ws, 'general', [message('general', 600), message('general', 601)], { complete: false });
    ctx.ws.serverSend(message('general', 602));
    assert.deepEqual(order, ['reset:general', 600, 601, 602]);
    assert.equal(ctx.of('subscribed').length, 1);
    ctx.socket.close();
  });

  test('complete:false after the server lost history accepts the new, lower seqs', () => {
    const ctx = setup();
    ctx.ws.serverOpen();
    const seen = [];
    ctx.socket.subscribe('general', { since: 90, onMessage: (f) => seen.push(f.seq) });
    subscribed(ctx.ws, 'general', [], { complete: false, last_seq: 4 });
    ctx.ws.serverSend(message('general', 5));
    assert.deepEqual(seen, [5]);
    ctx.socket.close();
  });

  test('a subscribe refused for good rejects that room’s sends', async () => {
    const ctx = setup();
    ctx.socket.subscribe('Bad Room');
    const pending = ctx.socket.send('Bad Room', 'x');
    ctx.ws.serverOpen();
    const { ref } = ctx.ws.framesOfType(FRAME.SUBSCRIBE)[0];
    ctx.ws.serverSend({ type: FRAME.ERROR, code: 'invalid_room', message: 'bad', ref, room: 'Bad Room' });
    await assert.rejects(pending.acked, { code: 'invalid_room' });
    ctx.socket.close();
  });

  test('a subscribe failing with server_error reconnects with backoff', () => {
    const ctx = setup();
    ctx.ws.serverOpen();
    ctx.socket.subscribe('general');
    const { ref } = ctx.ws.framesOfType(FRAME.SUBSCRIBE)[0];
    ctx.ws.serverSend({ type: FRAME.ERROR, code: 'server_error', message: 'db down', ref, room: 'general' });
    assert.equal(ctx.socket.state, STATE.RECONNECTING);
    assert.equal(ctx.lastState().attempt, 2);
    ctx.socket.close();
  });

  test('client ids use crypto.randomUUID, a prefix, and a random fallback, all protocol-valid', () => {
    const withCrypto = setup({ clientIdPrefix: 'tab1:' });
    withCrypto.socket.subscribe('general');
    const a = withCrypto.socket.send('general', 'x').clientId;
    assert.match(a, /^tab1:[0-9a-f-]{36}$/);
    withCrypto.socket.close();

    const fallback = setup({ crypto: null, random: Math.random });
    fallback.socket.subscribe('general');
    const ids = new Set(Array.from({ length: 50 }, () => fallback.socket.send('general', 'x').clientId));
    assert.equal(ids.size, 50);
    for (const id of ids) assert.match(id, CLIENT_ID);
    fallback.socket.close();

    assert.throws(() => setup({ clientIdPrefix: 'not valid!' }), TypeError);
  });
});

describe('RippleSocket presence', () => {
  const ALICE = { id: 'u1', name: 'alice' };
  const BOB = { id: 'u2', name: 'bob' };
  const CAROL = { id: 'g3', name: 'Carol' };
  const DAVE = { id: 'c4', name: 'dave' };

  function presence(ws, room, { joins = [], leaves = [] } = {}) {
    ws.serverSend({ type: FRAME.PRESENCE, room, joins, leaves });
  }

  /** An open socket subscribed to `general` with `members`. */
  function joined(members) {
    const ctx = setup();
    ctx.ws.serverOpen();
    ctx.socket.subscribe('general');
    subscribed(ctx.ws, 'general', [], { members });
    return ctx;
  }

  test('members come from subscribed, sorted by name then id, with one presence event after subscribed', () => {
    const ctx = setup();
    const order = [];
    ctx.socket.addEventListener('subscribed', () => order.push('subscribed'));
    ctx.socket.addEventListener('presence', (event) => order.push(`presence:${event.detail.members.length}`));
    ctx.ws.serverOpen();
    ctx.socket.subscribe('general');
    assert.deepEqual(ctx.socket.members('general'), [], 'nothing known before subscribed');
    const twin = { id: 'u0', name: 'bob' };
    subscribed(ctx.ws, 'general', [], { members: [BOB, CAROL, ALICE, twin, null, { name: 'no id' }] });
    const sorted = [ALICE, twin, BOB, CAROL];
    assert.deepEqual(ctx.socket.members('general'), sorted);
    assert.deepEqual(order, ['subscribed', 'presence:4']);
    assert.deepEqual(ctx.of('presence'), [{ room: 'general', members: sorted, joins: [], leaves: [] }]);
    assert.deepEqual(ctx.socket.members('elsewhere'), []);
    ctx.socket.close();
  });

  test('members() returns a copy the caller cannot use to change the list', () => {
    const ctx = joined([ALICE]);
    const list = ctx.socket.members('general');
    list[0].name = 'mallory';
    list.push(BOB);
    assert.deepEqual(ctx.socket.members('general'), [ALICE]);
    ctx.socket.close();
  });

  test('presence joins and leaves are set operations keyed by id', () => {
    const ctx = joined([ALICE, BOB]);
    presence(ctx.ws, 'general', { joins: [CAROL, ALICE] });
    assert.deepEqual(ctx.socket.members('general'), [ALICE, BOB, CAROL]);
    assert.deepEqual(ctx.of('presence').at(-1), { room: 'general', members: [ALICE, BOB, CAROL], joins: [CAROL], leaves: [] });

    const events = ctx.of('presence').length;
    presence(ctx.ws, 'general', { joins: [BOB] });
    presence(ctx.ws, 'general', { leaves: [DAVE] });
    presence(ctx.ws, 'general', { joins: [{ name: 'no id' }], leaves: ['u1'] });
    assert.deepEqual(ctx.socket.members('general'), [ALICE, BOB, CAROL], 'duplicate join and unknown leave change nothing');
    assert.equal(ctx.of('presence').length, events, 'and dispatch nothing');

    presence(ctx.ws, 'general', { joins: [DAVE], leaves: [BOB] });
    assert.deepEqual(ctx.of('presence').at(-1), { room: 'general', members: [ALICE, CAROL, DAVE], joins: [DAVE], leaves: [BOB] });

    presence(ctx.ws, 'general', { joins: [{ id: 'u1', name: 'Alicia' }] });
    assert.deepEqual(ctx.socket.members('general'), [{ id: 'u1', name: 'Alicia' }, CAROL, DAVE], 'a join of a listed id renames it');
    assert.deepEqual(ctx.of('presence').at(-1).joins, []);
    assert.deepEqual(ctx.of('presence').at(-1).leaves, []);

    presence(ctx.ws, 'general', { leaves: [{ id: 'g3' }] });
    assert.deepEqual(ctx.socket.members('general'), [{ id: 'u1', name: 'Alicia' }, DAVE], 'a leave by id alone removes it');
    ctx.socket.close();
  });

  test('a guest who renamed stays listed when the leave under the old name arrives', () => {
    const guest = { id: 'g9', name: 'zed' };
    const ctx = joined([ALICE, guest]);
    // Reload with a new name: the new socket joins at once, the old one leaves after the grace period.
    presence(ctx.ws, 'general', { joins: [{ id: 'g9', name: 'abe' }] });
    assert.deepEqual(ctx.socket.members('general'), [{ id: 'g9', name: 'abe' }, ALICE]);
    presence(ctx.ws, 'general', { leaves: [guest] });
    assert.deepEqual(ctx.socket.members('general'), [{ id: 'g9', name: 'abe' }, ALICE]);
    // Both in one frame, as a sync that saw the whole change gives it.
    presence(ctx.ws, 'general', { joins: [{ id: 'g9', name: 'zoe' }], leaves: [{ id: 'g9', name: 'abe' }] });
    assert.deepEqual(ctx.socket.members('general'), [ALICE, { id: 'g9', name: 'zoe' }]);
    presence(ctx.ws, 'general', { leaves: [{ id: 'g9', name: 'zoe' }] });
    assert.deepEqual(ctx.socket.members('general'), [ALICE]);
    assert.deepEqual(ctx.of('presence').at(-1).leaves, [{ id: 'g9', name: 'zoe' }]);
    ctx.socket.close();
  });

  test('presence for a room that is not subscribed, or not yet, is ignored', () => {
    const ctx = setup();
    ctx.ws.serverOpen();
    presence(ctx.ws, 'general', { joins: [ALICE] });
    ctx.socket.subscribe('general');
    presence(ctx.ws, 'general', { joins: [BOB] });
    assert.deepEqual(ctx.socket.members('general'), [], 'pending: the subscribed list will hold it');
    subscribed(ctx.ws, 'general', [], { members: [CAROL] });
    assert.deepEqual(ctx.socket.members('general'), [CAROL]);
    presence(ctx.ws, 'random', { joins: [DAVE] });
    assert.deepEqual(ctx.socket.members('random'), []);

    ctx.socket.unsubscribe('general');
    assert.deepEqual(ctx.socket.members('general'), [], 'unsubscribe forgets the members');
    presence(ctx.ws, 'general', { joins: [DAVE] });
    ctx.socket.subscribe('general');
    assert.deepEqual(ctx.socket.members('general'), []);
    assert.equal(ctx.of('presence').length, 1, 'only the one after subscribed');
    ctx.socket.close();
  });

  test('a gap resubscribe ignores presence until the new subscribed replaces the list', () => {
    const ctx = joined([ALICE, BOB]);
    ctx.ws.serverSend(message('general', 2));
    presence(ctx.ws, 'general', { leaves: [ALICE] });
    assert.deepEqual(ctx.socket.members('general'), [ALICE, BOB]);
    subscribed(ctx.ws, 'general', [message('general', 1), message('general', 2)], { members: [BOB, CAROL] });
    assert.deepEqual(ctx.socket.members('general'), [BOB, CAROL]);
    ctx.socket.close();
  });

  test('a reconnect keeps the last list while away, then the new subscribed replaces it', () => {
    const ctx = joined([ALICE, BOB]);
    presence(ctx.ws, 'general', { joins: [CAROL] });
    ctx.ws.serverClose(1006);
    assert.deepEqual(ctx.socket.members('general'), [ALICE, BOB, CAROL]);
    tick(ctx.lastState().delayMs);
    ctx.ws.serverOpen();
    presence(ctx.ws, 'general', { joins: [DAVE] });
    assert.deepEqual(ctx.socket.members('general'), [ALICE, BOB, CAROL], 'before subscribed');
    const before = ctx.of('presence').length;
    subscribed(ctx.ws, 'general', [], { members: [BOB, DAVE] });
    assert.deepEqual(ctx.socket.members('general'), [BOB, DAVE]);
    assert.deepEqual(ctx.of('presence').slice(before), [{ room: 'general', members: [BOB, DAVE], joins: [], leaves: [] }]);
    presence(ctx.ws, 'general', { leaves: [CAROL] });
    assert.equal(ctx.of('presence').length, before + 1, 'Carol is no longer known');
    ctx.socket.close();
  });

  test('a subscribed without members gives an empty list', () => {
    const ctx = joined(undefined);
    assert.deepEqual(ctx.socket.members('general'), []);
    assert.deepEqual(ctx.of('presence'), [{ room: 'general', members: [], joins: [], leaves: [] }]);
    ctx.socket.close();
  });
});

describe('RippleSocket rate limits', () => {
  function rateLimited(ws, extra) {
    ws.serverSend({ type: FRAME.ERROR, code: 'rate_limited', message: 'too many frames', ref: null, ...extra });
  }

  /** An open socket subscribed to `general`, with `limits` in its welcome. */
  function joined(limits = {}, options = {}) {
    const ctx = setup(options);
    ctx.ws.serverOpen();
    welcome(ctx.ws, { limits });
    ctx.socket.subscribe('general');
    subscribed(ctx.ws, 'general');
    return ctx;
  }

  test('a rate-limited message is kept, sent again after retry_after_ms, and later sends wait behind it', async () => {
    const ctx = joined();
    const settled = [];
    const first = ctx.socket.send('general', 'one');
    first.acked.then((frame) => settled.push(frame.seq), () => settled.push('rejected'));
    const errorFrame = { type: FRAME.ERROR, code: 'rate_limited', message: 'too many frames', ref: null, room: 'general', client_id: first.clientId, retry_after_ms: 500 };
    ctx.ws.serverSend(errorFrame);
    assert.equal(ctx.socket.queued, 1, 'not lost');
    assert.deepEqual(ctx.of('ratelimited'), [{ room: 'general', clientId: first.clientId, retryAfterMs: 500, frame: errorFrame }]);
    assert.deepEqual(ctx.of('error'), [errorFrame], 'the error event still sees every error frame');

    const later = [ctx.socket.send('general', 'two'), ctx.socket.send('general', 'three')];
    for (const [n, pending] of later.entries()) pending.acked.then((frame) => settled.push(frame.seq), () => settled.push(`rejected ${n}`));
    assert.deepEqual(sentIds(ctx.ws), [first.clientId], 'held back while the server waits');
    tick(499);
    assert.deepEqual(sentIds(ctx.ws), [first.clientId]);
    tick(1);
    const ids = [first.clientId, ...later.map((p) => p.clientId)];
    assert.deepEqual(sentIds(ctx.ws), [first.clientId, ...ids], 'the re-send, then the others in order');

    ids.forEach((id, n) => ack(ctx.ws, id, n + 1));
    await Promise.all([first.acked, ...later.map((p) => p.acked)]);
    assert.deepEqual(settled, [1, 2, 3]);
    assert.equal(ctx.socket.queued, 0);
    tick(10 ** 6);
    assert.equal(ctx.ws.framesOfType(FRAME.MESSAGE).length, 4, 'one re-send and no other duplicate');
    ctx.socket.close();
  });

  test('several rate-limited messages in flight: each is re-sent once, in order, after the longest wait', async () => {
    const ctx = joined();
    const sends = ['a', 'b', 'c'].map((body) => ctx.socket.send('general', body));
    const [a, b, c] = sends.map((p) => p.clientId);
    ack(ctx.ws, a, 1);
    rateLimited(ctx.ws, { room: 'general', client_id: b, retry_after_ms: 300 });
    rateLimited(ctx.ws, { room: 'general', client_id: c, retry_after_ms: 500 });
    const d = ctx.socket.send('general', 'd');
    tick(300);
    assert.deepEqual(sentIds(ctx.ws), [a, b, c], 'the later wait wins');
    tick(200);
    assert.deepEqual(sentIds(ctx.ws), [a, b, c, b, c, d.clientId]);
    ack(ctx.ws, b, 2);
    ack(ctx.ws, c, 3);
    ack(ctx.ws, d.clientId, 4);
    const seqs = await Promise.all([...sends, d].map((p) => p.acked.then((frame) => frame.seq)));
    assert.deepEqual(seqs, [1, 2, 3, 4]);
    const counts = {};
    for (const id of sentIds(ctx.ws)) counts[id] = (counts[id] ?? 0) + 1;
    assert.deepEqual(counts, { [a]: 1, [b]: 2, [c]: 2, [d.clientId]: 1 });
    ctx.socket.close();
  });

  test('a rate limit with no retry_after_ms waits a second', () => {
    const ctx = joined();
    const { clientId } = ctx.socket.send('general', 'x');
    rateLimited(ctx.ws, { room: 'general', client_id: clientId });
    assert.equal(ctx.of('ratelimited')[0].retryAfterMs, 1000);
    tick(999);
    assert.equal(ctx.ws.framesOfType(FRAME.MESSAGE).length, 1);
    tick(1);
    assert.equal(ctx.ws.framesOfType(FRAME.MESSAGE).length, 2);
    ctx.socket.close();
  });

  test('a reconnect during the wait sends the held message once, on the new socket', () => {
    const ctx = joined();
    const { clientId } = ctx.socket.send('general', 'x');
    rateLimited(ctx.ws, { room: 'general', client_id: clientId, retry_after_ms: 5000 });
    const old = ctx.ws;
    old.serverClose(1006);
    assert.equal(liveTimers().pending, 1, 'only the reconnect timer: the wait went with the socket');
    tick(ctx.lastState().delayMs);
    ctx.ws.serverOpen();
    subscribed(ctx.ws, 'general');
    assert.deepEqual(sentIds(ctx.ws), [clientId]);
    tick(10 ** 5);
    assert.deepEqual(sentIds(ctx.ws), [clientId]);
    assert.equal(old.framesOfType(FRAME.MESSAGE).length, 1);
    ctx.socket.close();
  });

  test('a rate-limited subscribe is sent again after retry_after_ms, then its queued sends follow', () => {
    const ctx = setup();
    ctx.socket.subscribe('general', { since: 4 });
    ctx.socket.subscribe('random');
    const queued = ctx.socket.send('general', 'x');
    ctx.ws.serverOpen();
    const [general, random] = ctx.ws.framesOfType(FRAME.SUBSCRIBE);
    rateLimited(ctx.ws, { ref: general.ref, room: 'general', retry_after_ms: 700 });
    rateLimited(ctx.ws, { ref: random.ref, room: 'random', retry_after_ms: 400 });
    assert.deepEqual(ctx.of('ratelimited').map((d) => [d.room, d.clientId, d.retryAfterMs]), [['general', null, 700], ['random', null, 400]]);
    assert.equal(ctx.socket.queued, 1);
    tick(699);
    assert.equal(ctx.ws.framesOfType(FRAME.SUBSCRIBE).length, 2);
    tick(1);
    const again = ctx.ws.framesOfType(FRAME.SUBSCRIBE).slice(2);
    assert.deepEqual(again.map((f) => [f.room, f.since]), [['general', 4], ['random', undefined]]);
    assert.notEqual(again[0].ref, general.ref);
    assert.deepEqual(sentIds(ctx.ws), []);
    subscribed(ctx.ws, 'general');
    assert.deepEqual(sentIds(ctx.ws), [queued.clientId]);
    tick(10 ** 5);
    assert.equal(ctx.ws.framesOfType(FRAME.SUBSCRIBE).length, 4);
    ctx.socket.close();
  });

  test('a rate-limit wait for a subscribe ends with its socket: the next socket re-subscribes once', () => {
    const ctx = setup();
    ctx.socket.subscribe('general');
    ctx.ws.serverOpen();
    rateLimited(ctx.ws, { ref: ctx.ws.framesOfType(FRAME.SUBSCRIBE)[0].ref, room: 'general', retry_after_ms: 5000 });
    ctx.ws.serverClose(1006);
    tick(ctx.lastState().delayMs);
    ctx.ws.serverOpen();
    subscribed(ctx.ws, 'general');
    ctx.socket.subscribe('random');
    rateLimited(ctx.ws, { ref: ctx.ws.framesOfType(FRAME.SUBSCRIBE).at(-1).ref, room: 'random', retry_after_ms: 100 });
    tick(100);
    assert.deepEqual(ctx.ws.framesOfType(FRAME.SUBSCRIBE).map((f) => f.room), ['general', 'random', 'random']);
    ctx.socket.close();
  });

  test('a room left during a subscribe’s rate-limit wait is not subscribed again', () => {
    const ctx = setup();
    ctx.socket.subscribe('general');
    ctx.ws.serverOpen();
    rateLimited(ctx.ws, { ref: ctx.ws.framesOfType(FRAME.SUBSCRIBE)[0].ref, room: 'general', retry_after_ms: 100 });
    ctx.socket.unsubscribe('general');
    tick(100);
    assert.equal(ctx.ws.framesOfType(FRAME.SUBSCRIBE).length, 1);
    ctx.socket.close();
  });

  test('after a rate limit, held messages go out at the bucket’s pace, not in a burst', () => {
    const ctx = joined({ messages_per_s: 2, messages_burst: 5 });
    const first = ctx.socket.send('general', 'one');
    rateLimited(ctx.ws, { room: 'general', client_id: first.clientId, retry_after_ms: 500 });
    const rest = [ctx.socket.send('general', 'two'), ctx.socket.send('general', 'three')];
    tick(500);
    assert.deepEqual(sentIds(ctx.ws), [first.clientId, first.clientId]);
    tick(500);
    assert.deepEqual(sentIds(ctx.ws).slice(2), [rest[0].clientId]);
    tick(500);
    assert.deepEqual(sentIds(ctx.ws).slice(2), rest.map((p) => p.clientId));
    ctx.socket.close();
  });
});

describe('RippleSocket send pace', () => {
  const LIMITS = { messages_per_s: 2, messages_burst: 3 };

  /** A socket that was welcomed with `limits`, lost its connection, and queued `count` messages meanwhile. */
  function offlineQueue(count, limits = LIMITS) {
    const ctx = setup();
    ctx.socket.subscribe('general');
    ctx.ws.serverOpen();
    welcome(ctx.ws, { limits });
    subscribed(ctx.ws, 'general');
    ctx.ws.serverClose(1006);
    const ids = Array.from({ length: count }, (_, n) => ctx.socket.send('general', `m${n}`).clientId);
    tick(ctx.lastState().delayMs);
    ctx.ws.serverOpen();
    welcome(ctx.ws, { limits });
    return { ctx, ids };
  }

  test('the offline queue goes out as the burst at once, then one per 1000 / messages_per_s ms', () => {
    const { ctx, ids } = offlineQueue(7);
    subscribed(ctx.ws, 'general');
    assert.deepEqual(sentIds(ctx.ws), ids.slice(0, 3));
    tick(499);
    assert.deepEqual(sentIds(ctx.ws), ids.slice(0, 3));
    tick(1);
    assert.deepEqual(sentIds(ctx.ws), ids.slice(0, 4));
    const live = ctx.socket.send('general', 'typed during the flush');
    assert.deepEqual(sentIds(ctx.ws), ids.slice(0, 4), 'a new message waits its turn');
    tick(1500);
    assert.deepEqual(sentIds(ctx.ws), ids);
    tick(500);
    assert.deepEqual(sentIds(ctx.ws), [...ids, live.clientId]);
    ctx.socket.close();
  });

  test('a fractional rate rounds the wait up and never sends early', () => {
    const { ctx, ids } = offlineQueue(3, { messages_per_s: 3, messages_burst: 1 });
    subscribed(ctx.ws, 'general');
    assert.deepEqual(sentIds(ctx.ws), ids.slice(0, 1));
    tick(333);
    assert.deepEqual(sentIds(ctx.ws), ids.slice(0, 1));
    tick(1);
    assert.deepEqual(sentIds(ctx.ws), ids.slice(0, 2));
    tick(334);
    assert.deepEqual(sentIds(ctx.ws), ids);
    ctx.socket.close();
  });

  test('with no messages_per_s in welcome, the queue goes out at once', () => {
    const { ctx, ids } = offlineQueue(30, {});
    subscribed(ctx.ws, 'general');
    assert.deepEqual(sentIds(ctx.ws), ids);
    ctx.socket.close();
  });

  test('close() during a paced flush clears its timer and sends nothing more', async () => {
    const { ctx, ids } = offlineQueue(6);
    subscribed(ctx.ws, 'general');
    const ws = ctx.ws;
    assert.equal(sentIds(ws).length, 3);
    ctx.socket.close();
    assert.equal(liveTimers().pending, 0);
    tick(10 ** 6);
    assert.equal(sentIds(ws).length, 3);
    assert.equal(ids.length, 6);
  });

  test('a drop during a paced flush re-sends the rest after the next subscribed, paced again', () => {
    const { ctx, ids } = offlineQueue(5);
    subscribed(ctx.ws, 'general');
    ctx.ws.serverClose(1006);
    assert.equal(liveTimers().pending, 1, 'only the reconnect timer');
    tick(ctx.lastState().delayMs);
    ctx.ws.serverOpen();
    welcome(ctx.ws, { limits: LIMITS });
    subscribed(ctx.ws, 'general');
    assert.deepEqual(sentIds(ctx.ws), ids.slice(0, 3), 'unacknowledged ones too, oldest first');
    tick(1000);
    assert.deepEqual(sentIds(ctx.ws), ids);
    ctx.socket.close();
  });
});

describe('RippleSocket rooms the server stops serving', () => {
  test('a subscribe refused with forbidden rejects its sends, forgets the room, and is not re-subscribed', async () => {
    const ctx = setup();
    ctx.socket.subscribe('secret');
    ctx.socket.subscribe('general');
    const pending = ctx.socket.send('secret', 'x');
    ctx.ws.serverOpen();
    const { ref } = ctx.ws.framesOfType(FRAME.SUBSCRIBE).find((f) => f.room === 'secret');
    ctx.ws.serverSend({ type: FRAME.ERROR, code: 'forbidden', message: 'private room', ref, room: 'secret' });
    await assert.rejects(pending.acked, { code: 'forbidden', message: 'private room' });
    assert.deepEqual(ctx.of('unsubscribed'), [{ room: 'secret', reason: 'forbidden', code: 'forbidden' }]);
    await assert.rejects(ctx.socket.send('secret', 'y').acked, { code: 'not_subscribed' });
    subscribed(ctx.ws, 'general');
    ctx.ws.serverClose(1006);
    tick(ctx.lastState().delayMs);
    ctx.ws.serverOpen();
    assert.deepEqual(ctx.ws.framesOfType(FRAME.SUBSCRIBE).map((f) => f.room), ['general']);
    ctx.socket.close();
  });

  test('an unsubscribed frame with a reason ends the subscription: sends reject with forbidden, no re-subscribe', async () => {
    const ctx = setup();
    const seen = [];
    ctx.socket.subscribe('general', { onMessage: (f) => seen.push(f.seq) });
    ctx.socket.subscribe('random');
    ctx.ws.serverOpen();
    subscribed(ctx.ws, 'general');
    subscribed(ctx.ws, 'random');
    const inFlight = ctx.socket.send('general', 'x');
    const elsewhere = ctx.socket.send('random', 'y');
    ctx.ws.serverSend({ type: FRAME.UNSUBSCRIBED, room: 'general', reason: 'access_revoked' });
    await assert.rejects(inFlight.acked, { code: 'forbidden' });
    assert.deepEqual(ctx.of('unsubscribed'), [{ room: 'general', reason: 'access_revoked', code: 'forbidden' }]);
    assert.equal(ctx.socket.queued, 1, 'other rooms keep theirs');
    assert.deepEqual(ctx.socket.members('general'), []);
    ctx.ws.serverSend(message('general', 1));
    assert.deepEqual(seen, []);
    ctx.ws.serverSend({ type: FRAME.UNSUBSCRIBED, room: 'general', reason: 'access_revoked' });
    assert.equal(ctx.of('unsubscribed').length, 1, 'once');

    ctx.ws.serverClose(1006);
    tick(ctx.lastState().delayMs);
    ctx.ws.serverOpen();
    assert.deepEqual(ctx.ws.framesOfType(FRAME.SUBSCRIBE).map((f) => f.room), ['random']);
    subscribed(ctx.ws, 'random');
    assert.deepEqual(sentIds(ctx.ws), [elsewhere.clientId]);
    ctx.socket.close();
  });

  test('room_closed ends the subscription: sends reject with room_closed, no re-subscribe', async () => {
    const ctx = setup();
    ctx.socket.subscribe('general');
    ctx.socket.subscribe('random');
    ctx.ws.serverOpen();
    subscribed(ctx.ws, 'general');
    subscribed(ctx.ws, 'random');
    const inFlight = ctx.socket.send('general', 'too late');
    ctx.ws.serverSend({ type: FRAME.ROOM_CLOSED, room: 'general', reason: 'closed for the night' });
    await assert.rejects(inFlight.acked, { code: 'room_closed', message: 'closed for the night' });
    assert.deepEqual(ctx.of('unsubscribed'), [{ room: 'general', reason: 'room_closed', code: 'room_closed' }]);
    ctx.ws.serverClose(1006);
    tick(ctx.lastState().delayMs);
    ctx.ws.serverOpen();
    assert.deepEqual(ctx.ws.framesOfType(FRAME.SUBSCRIBE).map((f) => f.room), ['random']);
    ctx.socket.close();
  });

  test('deleted is passed on for subscribed rooms only', () => {
    const ctx = setup();
    ctx.socket.subscribe('general');
    ctx.ws.serverOpen();
    subscribed(ctx.ws, 'general');
    ctx.ws.serverSend({ type: FRAME.DELETED, room: 'general', seqs: [2, 3] });
    ctx.ws.serverSend({ type: FRAME.DELETED, room: 'elsewhere', seqs: [1] });
    assert.deepEqual(ctx.of('deleted'), [{ room: 'general', seqs: [2, 3] }]);
    ctx.socket.close();
  });

  test('the reply to the client’s own unsubscribe (no reason) changes nothing', () => {
    const ctx = setup();
    const seen = [];
    ctx.socket.subscribe('general', { since: 1, onMessage: (f) => seen.push(f.seq) });
    ctx.ws.serverOpen();
    subscribed(ctx.ws, 'general');
    ctx.ws.serverSend(message('general', 3)); // a gap: unsubscribe, then subscribe again
    ctx.ws.serverSend({ type: FRAME.UNSUBSCRIBED, room: 'general', ref: null });
    subscribed(ctx.ws, 'general', [message('general', 2), message('general', 3)]);
    assert.deepEqual(seen, [2, 3]);
    assert.deepEqual(ctx.of('unsubscribed'), []);
    ctx.socket.unsubscribe('general');
    ctx.ws.serverSend({ type: FRAME.UNSUBSCRIBED, room: 'general', ref: null });
    assert.deepEqual(ctx.of('unsubscribed'), [], 'the page’s own unsubscribe dispatches nothing');
    ctx.socket.close();
  });
});

describe('RippleSocket close() leaves nothing behind', () => {
  test('no pending timer and no listener on the socket, window or document', async () => {
    const ctx = setup();
    ctx.socket.subscribe('general');
    ctx.ws.serverOpen();
    welcome(ctx.ws, { interval: 1000, timeout: 500 });
    subscribed(ctx.ws, 'general');
    tick(1000); // a ping is out: heartbeat interval, pong deadline and stable timer are all armed
    const pending = ctx.socket.send('general', 'x');
    assert.ok(liveTimers().pending >= 3);
    assert.ok(ctx.env.window.listenerCount() > 0 && ctx.env.document.listenerCount() > 0);
    const ws = ctx.ws;
    assert.equal(ws.listenerCount(), 4);

    ctx.socket.close();
    assert.equal(liveTimers().pending, 0);
    assert.equal(ctx.env.window.listenerCount(), 0);
    assert.equal(ctx.env.document.listenerCount(), 0);
    assert.equal(ws.listenerCount(), 0);
    await assert.rejects(pending.acked, { code: 'closed' });
    const sentBefore = ws.sent.length;
    tick(10 ** 7);
    assert.equal(ws.sent.length, sentBefore);
    assert.equal(ctx.WS.instances.length, 1);
  });

  test('close() during the reconnect wait cancels the timer', () => {
    const ctx = setup();
    ctx.ws.serverError();
    assert.equal(liveTimers().pending, 1);
    ctx.socket.close();
    assert.equal(liveTimers().pending, 0);
    assert.equal(ctx.env.window.listenerCount() + ctx.env.document.listenerCount(), 0);
    tick(10 ** 7);
    assert.equal(ctx.WS.instances.length, 1);
    assert.equal(ctx.socket.state, STATE.CLOSED);
  });
});

// --- transport choice and the HTTP fallback -------------------------------------

const FALLBACK_KEY = 'ripple.transport';

/**
 * A RippleSocket with WebSocket then the fake SSE server as transports, and a
 * fake sessionStorage; `sse` is the server (its `es` the newest stream).
 */
function setupFallback(options = {}) {
  const { sse = fakeSseServer(), storage = fakeStorage(), ...rest } = options;
  const WS = rest.WS ?? FakeWebSocket.fresh();
  const ctx = setup({ WS, transports: [WS, sse.Sse], sessionStorage: storage, ...rest });
  return Object.assign(ctx, { sse, storage });
}

/** A tab that moved to the fallback earlier (sessionStorage says so), open on it. */
function onFallback(options = {}) {
  const ctx = setupFallback({ storage: fakeStorage({ [FALLBACK_KEY]: 'sse' }), ...options });
  ctx.sse.welcome('conn-1');
  return ctx;
}

/** Replaces globals for one test; `t.after` puts them back. */
function withGlobals(t, values) {
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

describe('RippleSocket transport choice', () => {
  test('without a WebSocket the first connection uses the HTTP fallback at once', (t) => {
    const ES = FakeEventSource.fresh();
    const fetch = fakeFetch({ autoStatus: 202 });
    withGlobals(t, { WebSocket: undefined, EventSource: ES, fetch, document: metaDocument('page-token') });
    const env = fakeEnvironment();
    const socket = new RippleSocket(URL, { window: env.window, document: env.document, navigator: env.navigator, sessionStorage: fakeStorage() });
    assert.ok(Object.isFrozen(TRANSPORT));
    assert.equal(socket.transport, TRANSPORT.SSE);
    assert.equal(socket.stateDetail.transport, 'sse');
    assert.equal(ES.instances.length, 1);
    assert.equal(ES.instances[0].url, 'http://ripple.test/sse/chat/');
    socket.subscribe('general');
    ES.instances[0].serverSend({ type: FRAME.WELCOME, connection_id: 'c9' });
    assert.equal(socket.state, STATE.OPEN);
    assert.equal(socket.stateDetail.transport, 'sse');
    assert.equal(fetch.calls[0].url, 'http://ripple.test/sse/chat/send/?connection=c9');
    assert.equal(fetch.calls[0].init.headers['X-CSRFToken'], 'page-token');
    assert.equal(fetch.frames()[0].type, FRAME.SUBSCRIBE);
    socket.close();
    assert.equal(liveTimers().pending, 0, 'no WebSocket to probe for');
  });

  test('with neither WebSocket nor a fallback the constructor throws', (t) => {
    withGlobals(t, { WebSocket: undefined, EventSource: undefined });
    assert.throws(() => new RippleSocket(URL, { sessionStorage: null }), TypeError);
    assert.throws(() => new RippleSocket(URL, { transports: [undefined] }), TypeError);
  });

  test('where there is no EventSource there is no fallback: fast failures keep retrying WebSocket', () => {
    const ctx = setup({ sessionStorage: fakeStorage() });
    for (let n = 0; n < 5; n += 1) failAndWait(ctx);
    assert.equal(ctx.WS.instances.length, 6);
    assert.equal(ctx.socket.transport, 'websocket');
    ctx.socket.close();
  });

  test('3 WebSocket attempts in a row that fail fast move the tab to the fallback and remember it', () => {
    const ctx = setupFallback();
    assert.equal(ctx.socket.transport, TRANSPORT.WEBSOCKET);
    assert.equal(ctx.socket.stateDetail.transport, 'websocket');
    failAndWait(ctx);
    failAndWait(ctx);
    assert.equal(ctx.socket.transport, 'websocket');
    assert.deepEqual(ctx.storage.entries(), {});
    ctx.ws.serverError();
    assert.equal(ctx.socket.transport, 'sse');
    assert.deepEqual(ctx.storage.entries(), { [FALLBACK_KEY]: 'sse' });
    const detail = ctx.lastState();
    assert.deepEqual([detail.state, detail.transport, detail.code, detail.attempt], [STATE.RECONNECTING, 'sse', 1006, 4]);
    tick(detail.delayMs);
    assert.equal(ctx.WS.instances.length, 3);
    assert.equal(ctx.sse.ES.instances.length, 1);
    assert.equal(ctx.sse.es.url, 'http://ripple.test/sse/chat/');
    assert.equal(ctx.lastState().transport, 'sse');
    ctx.sse.welcome();
    assert.equal(ctx.socket.state, STATE.OPEN);
    assert.equal(ctx.lastState().transport, 'sse');
    tick(60000);
    assert.equal(ctx.WS.instances.length, 4, 'the background probe runs from the move on');
    assert.equal(ctx.ws.url, URL);
    ctx.socket.close();
  });

  test('fallbackAfterFailures sets how many fast failures it takes', () => {
    const ctx = setupFallback({ fallbackAfterFailures: 1 });
    failAndWait(ctx);
    assert.equal(ctx.socket.transport, 'sse');
    assert.equal(ctx.sse.ES.instances.length, 1);
    ctx.socket.close();
  });

  test('a WebSocket constructor that throws counts as a fast failure', () => {
    let tries = 0;
    class BlockedWebSocket {
      constructor() {
        tries += 1;
        throw new Error('SecurityError: blocked');
      }
    }
    const sse = fakeSseServer();
    const ctx = setup({ transports: [BlockedWebSocket, sse.Sse], sessionStorage: fakeStorage() });
    for (let n = 0; n < 3; n += 1) tick(Math.ceil(ctx.socket.stateDetail.delayMs ?? 0) + 1);
    assert.equal(tries, 3);
    assert.equal(ctx.socket.transport, 'sse');
    assert.equal(sse.ES.instances.length, 1);
    ctx.socket.close();
  });

  test('a slow failure, or a WebSocket that opens, starts the count over', () => {
    const ctx = setupFallback({ maxAttempts: 100 });
    failAndWait(ctx);
    failAndWait(ctx);
    tick(3000); // the third attempt fails, but only after fastFailureMs
    failAndWait(ctx);
    failAndWait(ctx);
    failAndWait(ctx);
    assert.equal(ctx.socket.transport, 'websocket', 'two fast ones since the slow one');
    ctx.ws.serverOpen();
    ctx.ws.serverClose(1006);
    tick(ctx.lastState().delayMs);
    failAndWait(ctx);
    failAndWait(ctx);
    assert.equal(ctx.socket.transport, 'websocket', 'an open socket starts the count over');
    failAndWait(ctx);
    assert.equal(ctx.socket.transport, 'sse');
    ctx.socket.close();
  });

  test('failures while the browser is offline do not count', () => {
    const ctx = setupFallback();
    for (let n = 0; n < 4; n += 1) {
      ctx.env.goOffline();
      ctx.ws.serverError();
      assert.equal(ctx.lastState().offline, true);
      ctx.env.goOnline();
    }
    assert.equal(ctx.WS.instances.length, 5);
    assert.equal(ctx.socket.transport, 'websocket');
    ctx.socket.close();
  });

  test('a tab that moved earlier starts on the fallback after a reload; an unknown stored value is ignored', () => {
    const ctx = setupFallback({ storage: fakeStorage({ [FALLBACK_KEY]: 'sse' }) });
    assert.equal(ctx.WS.instances.length, 0);
    assert.equal(ctx.sse.ES.instances.length, 1);
    assert.equal(ctx.socket.transport, 'sse');
    assert.equal(ctx.socket.stateDetail.transport, 'sse');
    ctx.socket.close();

    const other = setupFallback({ storage: fakeStorage({ [FALLBACK_KEY]: 'carrier-pigeon' }) });
    assert.equal(other.WS.instances.length, 1);
    assert.equal(other.socket.transport, 'websocket');
    other.socket.close();
  });

  test('a sessionStorage that throws only means the choice is not kept', () => {
    const throwing = {
      getItem() {
        throw new Error('SecurityError');
      },
      setItem() {
        throw new Error('QuotaExceededError');
      },
      removeItem() {
        throw new Error('SecurityError');
      },
    };
    const ctx = setupFallback({ storage: throwing });
    for (let n = 0; n < 3; n += 1) failAndWait(ctx);
    assert.equal(ctx.socket.transport, 'sse');
    assert.equal(ctx.sse.ES.instances.length, 1);
    ctx.socket.close();
  });
});

describe('RippleSocket WebSocket probe while on the fallback', () => {
  test('every wsRetryMs a WebSocket to the same URL is tried; a failed probe changes nothing', () => {
    const ctx = onFallback({ wsRetryMs: 60000 });
    tick(59999);
    assert.equal(ctx.WS.instances.length, 0);
    tick(1);
    assert.equal(ctx.WS.instances.length, 1);
    const probe = ctx.ws;
    assert.equal(probe.url, URL);
    probe.serverError();
    assert.equal(probe.listenerCount(), 0);
    assert.equal(ctx.socket.state, STATE.OPEN);
    assert.equal(ctx.socket.transport, 'sse');
    assert.equal(ctx.sse.es.closeCount, 0, 'the fallback connection is untouched');
    tick(60000);
    assert.equal(ctx.WS.instances.length, 2, 'the next probe, one interval later');
    ctx.socket.close();
  });

  test('a probe that opens but is not welcomed within connectTimeoutMs is given up', () => {
    const ctx = onFallback({ wsRetryMs: 1000, connectTimeoutMs: 5000 });
    tick(1000);
    const probe = ctx.ws;
    probe.serverOpen();
    tick(5000);
    assert.deepEqual(probe.closeCalls, [{ code: 1000, reason: 'probe done' }]);
    assert.equal(probe.listenerCount(), 0);
    assert.equal(ctx.socket.transport, 'sse');
    tick(1000);
    assert.equal(ctx.WS.instances.length, 2);
    ctx.socket.close();
  });

  test('a welcomed probe is closed at once and the tab moves back to WebSocket quickly, resuming its rooms', () => {
    const ctx = onFallback({ wsRetryMs: 60000, random: () => 0.5 });
    ctx.socket.subscribe('general', { since: 3 });
    const stream = ctx.sse.es;
    tick(60000);
    const probe = ctx.ws;
    probe.serverOpen();
    probe.serverSend({ type: FRAME.PONG, t: null, ref: null });
    assert.equal(ctx.socket.transport, 'sse', 'open is not enough: the welcome proves frames get through');
    welcome(probe);
    assert.deepEqual(probe.closeCalls, [{ code: 1000, reason: 'probe done' }]);
    assert.equal(probe.listenerCount(), 0);
    assert.deepEqual(probe.frames, [], 'the probe subscribes to nothing');
    assert.equal(stream.closeCount, 1, 'the fallback connection is closed');
    assert.equal(stream.listenerCount(), 0);
    assert.deepEqual(ctx.storage.entries(), {});
    const detail = ctx.lastState();
    assert.deepEqual(
      [detail.state, detail.transport, detail.code, detail.delayMs, detail.attempt],
      [STATE.RECONNECTING, 'websocket', CLOSE.CLIENT_TRANSPORT_SWITCH, 500, 1],
    );
    tick(500);
    assert.equal(ctx.WS.instances.length, 2);
    ctx.ws.serverOpen();
    assert.equal(ctx.socket.transport, 'websocket');
    assert.equal(ctx.lastState().transport, 'websocket');
    assert.deepEqual(ctx.ws.framesOfType(FRAME.SUBSCRIBE).map((f) => [f.room, f.since]), [['general', 3]]);
    tick(10 ** 6);
    assert.equal(ctx.WS.instances.length, 2, 'no more probes once back on WebSocket');
    assert.equal(ctx.sse.ES.instances.length, 1);
    ctx.socket.close();
  });

  test('a welcomed probe while reconnecting on the fallback brings the reconnect forward, over WebSocket', () => {
    const ctx = onFallback({ wsRetryMs: 1000, random: () => 0.5, backoffBaseMs: 60000 });
    ctx.sse.es.serverEnd();
    assert.equal(ctx.lastState().delayMs, 15000);
    tick(1000);
    welcome(ctx.ws);
    assert.equal(ctx.lastState().delayMs, 500);
    tick(500);
    assert.equal(ctx.WS.instances.length, 2);
    assert.equal(ctx.sse.ES.instances.length, 1);
    ctx.socket.close();
  });

  test('close() leaves no probe, probe timer or listener behind', () => {
    const waiting = onFallback();
    waiting.socket.close();
    assert.equal(liveTimers().pending, 0);
    tick(10 ** 7);
    assert.equal(waiting.WS.instances.length, 0);

    const probing = onFallback({ wsRetryMs: 1000 });
    tick(1000);
    const probe = probing.ws;
    probing.socket.close();
    assert.equal(liveTimers().pending, 0);
    assert.equal(probe.listenerCount(), 0);
    assert.deepEqual(probe.closeCalls, [{ code: 1000, reason: 'probe done' }]);
    assert.equal(probing.sse.es.listenerCount(), 0);
    assert.equal(probing.env.window.listenerCount() + probing.env.document.listenerCount(), 0);
    welcome(probe);
    tick(10 ** 7);
    assert.equal(probing.WS.instances.length, 1);
    assert.equal(probing.socket.state, STATE.CLOSED);
  });

  test('no probe after failed or a server close; retry() on the fallback probes again', () => {
    const ctx = setupFallback({ storage: fakeStorage({ [FALLBACK_KEY]: 'sse' }), maxAttempts: 1, wsRetryMs: 1000 });
    ctx.sse.es.serverRefuse();
    assert.equal(ctx.socket.state, STATE.FAILED);
    assert.equal(liveTimers().pending, 0);
    tick(10 ** 6);
    assert.equal(ctx.WS.instances.length, 0);
    ctx.socket.retry();
    assert.equal(ctx.sse.ES.instances.length, 2, 'still on the fallback');
    tick(1000);
    assert.equal(ctx.WS.instances.length, 1);
    ctx.sse.es.serverClose(CLOSE.SESSION_ENDED);
    assert.equal(ctx.socket.state, STATE.CLOSED);
    assert.equal(ctx.ws.listenerCount(), 0);
    assert.equal(liveTimers().pending, 0);
  });

  test('no probe is tried while the browser is offline', () => {
    const ctx = onFallback({ wsRetryMs: 1000 });
    ctx.env.goOffline();
    tick(5000);
    assert.equal(ctx.WS.instances.length, 0);
    ctx.env.goOnline();
    tick(1000);
    assert.equal(ctx.WS.instances.length, 1);
    ctx.socket.close();
  });
});

describe('RippleSocket over the HTTP fallback', () => {
  test('a chat session: subscribe, messages, ack, heartbeat, then a drop, a resume with since and the re-send', async () => {
    const sse = fakeSseServer({ autoStatus: 202 });
    const ctx = onFallback({ sse });
    const seen = [];
    ctx.socket.subscribe('general', { since: 3, onMessage: (frame) => seen.push(frame.seq) });
    await flush();
    const [subscribe] = sse.fetch.framesOfType(FRAME.SUBSCRIBE);
    assert.deepEqual([subscribe.room, subscribe.since], ['general', 3]);
    assert.ok(sse.fetch.calls.every((call) => call.url === 'http://ripple.test/sse/chat/send/?connection=conn-1'));
    sse.es.serverSend({
      type: FRAME.SUBSCRIBED, room: 'general', messages: [message('general', 4)], last_seq: 4, complete: true, members: [], ref: subscribe.ref,
    });
    sse.es.serverSend(message('general', 5));
    assert.deepEqual(seen, [4, 5]);

    const first = ctx.socket.send('general', 'hello');
    const second = ctx.socket.send('general', 'again');
    await flush();
    assert.deepEqual(sse.fetch.framesOfType(FRAME.MESSAGE).map((f) => [f.client_id, f.body]), [[first.clientId, 'hello'], [second.clientId, 'again']]);
    sse.es.serverSend({ type: FRAME.ACK, room: 'general', client_id: first.clientId, seq: 6, sent_at: 'x', duplicate: false, ref: null });
    sse.es.serverSend(message('general', 6, { client_id: first.clientId, author: 'alice', body: 'hello' }));
    assert.equal((await first.acked).seq, 6);
    assert.deepEqual(seen, [4, 5, 6]);

    tick(20000);
    await flush();
    const [ping] = sse.fetch.framesOfType(FRAME.PING);
    assert.ok(ping, 'the heartbeat goes out as a POST');
    tick(40);
    sse.es.serverSend({ type: FRAME.PONG, t: ping.t, ref: null });
    assert.equal(ctx.socket.rttMs, 40);

    // The stream drops before `second` is acknowledged.
    sse.es.serverEnd();
    assert.equal(ctx.lastState().state, STATE.RECONNECTING);
    assert.equal(ctx.lastState().code, 1006);
    assert.equal(sse.ES.instances[0].closeCount, 1, 'no EventSource auto-reconnect');
    tick(ctx.lastState().delayMs);
    assert.equal(sse.ES.instances.length, 2);
    sse.welcome('conn-2');
    await flush();
    const resumed = sse.fetch.calls.filter((call) => call.url.endsWith('connection=conn-2')).map((call) => JSON.parse(call.init.body));
    assert.deepEqual(resumed.map((f) => [f.type, f.room, f.since]), [[FRAME.SUBSCRIBE, 'general', 6]]);
    sse.es.serverSend({ type: FRAME.SUBSCRIBED, room: 'general', messages: [], last_seq: 6, complete: true, members: [], ref: resumed[0].ref });
    await flush();
    const resent = sse.fetch.calls.filter((call) => call.url.endsWith('connection=conn-2')).map((call) => JSON.parse(call.init.body)).slice(1);
    assert.deepEqual(resent.map((f) => [f.type, f.client_id]), [[FRAME.MESSAGE, second.clientId]], 'the unacknowledged message, same client_id');
    sse.es.serverSend({ type: FRAME.ACK, room: 'general', client_id: second.clientId, seq: 7, sent_at: 'x', duplicate: true, ref: null });
    assert.equal((await second.acked).seq, 7);
    assert.equal(ctx.socket.transport, 'sse');
    ctx.socket.close();
    assert.equal(sse.es.listenerCount(), 0);
  });

  test('a POST that fails drops the connection; the message goes again on the next one', async () => {
    const sse = fakeSseServer({ autoStatus: null });
    const ctx = onFallback({ sse });
    ctx.socket.subscribe('general');
    sse.fetch.calls[0].respond(202);
    sse.es.serverSend({ type: FRAME.SUBSCRIBED, room: 'general', messages: [], last_seq: 0, complete: true, members: [], ref: sse.fetch.frames()[0].ref });
    const pending = ctx.socket.send('general', 'x');
    await flush();
    sse.fetch.calls[1].fail();
    await flush();
    assert.equal(ctx.lastState().state, STATE.RECONNECTING);
    assert.equal(ctx.lastState().code, 1006);
    tick(ctx.lastState().delayMs);
    sse.welcome('conn-2');
    sse.fetch.calls[2].respond(202);
    sse.es.serverSend({ type: FRAME.SUBSCRIBED, room: 'general', messages: [], last_seq: 0, complete: true, members: [], ref: sse.fetch.frames()[2].ref });
    await flush();
    assert.deepEqual(sse.fetch.frames().slice(3).map((f) => f.client_id), [pending.clientId]);
    ctx.socket.close();
  });

  test('event: close 4401 ends the session like a socket close: closed, sends reject, no probe left', async () => {
    const ctx = onFallback();
    ctx.socket.subscribe('general');
    const pending = ctx.socket.send('general', 'x');
    ctx.sse.es.serverClose(CLOSE.SESSION_ENDED);
    assert.equal(ctx.socket.state, STATE.CLOSED);
    assert.equal(ctx.lastState().code, 4401);
    assert.equal(ctx.lastState().transport, 'sse');
    await assert.rejects(pending.acked, { code: 'closed', closeCode: 4401 });
    assert.equal(liveTimers().pending, 0);
  });

  test('a frame refused with 413 rejects its send with frame_too_large and the connection stays', async () => {
    const sse = fakeSseServer({ autoStatus: null });
    const ctx = onFallback({ sse });
    ctx.socket.subscribe('general');
    sse.fetch.calls[0].respond(202);
    sse.es.serverSend({ type: FRAME.SUBSCRIBED, room: 'general', messages: [], last_seq: 0, complete: true, members: [], ref: sse.fetch.frames()[0].ref });
    const big = ctx.socket.send('general', 'x'.repeat(70000));
    await flush();
    sse.fetch.calls[1].respond(413);
    await assert.rejects(big.acked, { code: 'frame_too_large' });
    assert.equal(ctx.socket.state, STATE.OPEN);
    ctx.socket.close();
  });
});
