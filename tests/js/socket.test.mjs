import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { CLOSE, ERROR_CODE, FRAME, RippleSocket, STATE, isNoRetryClose, isQuickReconnectClose } from '../../static/js/ripple-socket.js';
import { useMockTimers } from './fake-websocket.mjs';
import { URL, ack, failAndWait, message, sentIds, setup, subscribed, tick, welcome } from './helpers.mjs';

const liveTimers = useMockTimers();

describe('exported maps', () => {
  test('STATE, FRAME and CLOSE are frozen and name the protocol', () => {
    assert.ok(Object.isFrozen(STATE) && Object.isFrozen(FRAME) && Object.isFrozen(CLOSE));
    assert.deepEqual(Object.values(STATE).sort(), ['closed', 'connecting', 'failed', 'open', 'reconnecting']);
    assert.deepEqual(
      Object.values(FRAME).sort(),
      [
        'ack', 'deleted', 'error', 'message', 'ping', 'pong', 'presence', 'room_closed', 'room_reopened', 'subscribe',
        'subscribed', 'typing', 'unsubscribe', 'unsubscribed', 'welcome',
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
    const ctx = setup({ random: () => randoms[i++ % randoms.length], backoffBaseMs: 500, backoffMaxMs: 4000, downBackoffMaxMs: 4000 });
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

  test('while the server cannot be reached, retries stay within downBackoffMaxMs for downFastForMs, and never give up', () => {
    const ctx = setup({ random: () => 0.999, backoffBaseMs: 500, backoffMaxMs: 30000, downBackoffMaxMs: 2000, downFastForMs: 60000, maxAttempts: 3 });
    ctx.ws.serverOpen();
    ctx.ws.serverError(); // the server died under an open socket
    let waited = ctx.lastState().delayMs;
    assert.ok(waited <= 500);
    tick(waited + 1);
    const delays = [];
    while (waited < 60000) {
      ctx.ws.serverError(); // refused: closed with 1006 before it opened
      delays.push(ctx.lastState().delayMs);
      waited += ctx.lastState().delayMs + 1;
      tick(ctx.lastState().delayMs + 1);
    }
    assert.ok(delays.every((delay) => delay <= 2000), 'capped while the outage is young');
    assert.ok(delays.length > 30);
    ctx.ws.serverError();
    assert.ok(ctx.lastState().delayMs > 20000, 'a long outage gets the full backoff');
    assert.equal(ctx.socket.state, STATE.RECONNECTING, 'refused connections never count toward maxAttempts');
    ctx.socket.retry();
    assert.equal(ctx.socket.state, STATE.CONNECTING, 'Retry now skips the wait');
    ctx.ws.serverOpen();
    ctx.ws.serverClose(1011); // the server answered, then dropped: full backoff
    assert.equal(ctx.lastState().delayMs, 0.999 * 30000);
    ctx.socket.close();
    assert.equal(liveTimers().pending, 0);
  });

  test('retry() skips the wait, and its attempt fails like any other', () => {
    const ctx = setup({ backoffBaseMs: 60000 });
    ctx.ws.serverOpen();
    ctx.ws.serverClose(1011);
    assert.equal(ctx.lastState().delayMs, 15000);
    ctx.socket.retry();
    assert.equal(ctx.WS.instances.length, 2);
    assert.equal(liveTimers().pending, 1, 'the reconnect timer is gone; only the connect deadline');
    ctx.ws.serverOpen();
    welcome(ctx.ws);
    assert.equal(ctx.socket.state, STATE.OPEN);
    ctx.socket.close();
    assert.equal(liveTimers().pending, 0);
  });

  test('maxAttempts consecutive failures end in failed and giveup, with no timer left', () => {
    const ctx = setup({ maxAttempts: 3 });
    const dropAfterOpen = () => {
      ctx.ws.serverOpen();
      failAndWait(ctx);
    };
    dropAfterOpen();
    dropAfterOpen();
    assert.equal(ctx.lastState().attempt, 3);
    ctx.ws.serverOpen();
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
    failAndWait(ctx, 1011);
    ctx.ws.serverClose(1011);
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

describe('close-code policy', () => {
  test('every close code maps to exactly one of: stay away, quick reconnect, backoff', () => {
    const stay = [CLOSE.POLICY_VIOLATION, CLOSE.SESSION_ENDED, CLOSE.DISCONNECTED_BY_MODERATOR, CLOSE.TOO_MANY_CONNECTIONS, CLOSE.FRAME_TOO_LARGE, CLOSE.FLOODING, 4400, 4499];
    const quick = [CLOSE.GOING_AWAY, CLOSE.SERVICE_RESTART, CLOSE.DRAINING];
    const backoff = [CLOSE.NORMAL, CLOSE.ABNORMAL, CLOSE.INTERNAL_ERROR, CLOSE.HEARTBEAT_TIMEOUT, CLOSE.TRY_AGAIN_LATER, CLOSE.TOO_SLOW, 4399, 4500];
    for (const code of stay) assert.deepEqual([isNoRetryClose(code), isQuickReconnectClose(code)], [true, false], String(code));
    for (const code of quick) assert.deepEqual([isNoRetryClose(code), isQuickReconnectClose(code)], [false, true], String(code));
    for (const code of backoff) assert.deepEqual([isNoRetryClose(code), isQuickReconnectClose(code)], [false, false], String(code));
  });

  test('the fallback transport shares the client’s ready states; ERROR_CODE keys name their values', async () => {
    const { SseSocket } = await import('../../static/js/sse-socket.js');
    assert.deepEqual([SseSocket.CONNECTING, SseSocket.OPEN, SseSocket.CLOSING, SseSocket.CLOSED], [0, 1, 2, 3]);
    assert.equal(CLOSE.NO_STATUS, 1005);
    assert.ok(Object.isFrozen(ERROR_CODE));
    for (const [key, value] of Object.entries(ERROR_CODE)) assert.equal(key.toLowerCase(), value);
  });
});
