import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { CLOSE, FRAME, RippleSocket, STATE, TRANSPORT } from '../../static/js/ripple-socket.js';
import { fakeFetch, FakeEventSource, fakeSseServer, fakeStorage, flush, metaDocument } from './fake-sse.mjs';
import { fakeEnvironment, useMockTimers } from './fake-websocket.mjs';
import {
  FALLBACK_KEY, URL, ack, blockWebSocket, failAndWait, message, onFallback, setup, setupFallback, tick, welcome, withGlobals,
} from './helpers.mjs';

const liveTimers = useMockTimers();

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

  test('3 fast WebSocket failures ask /healthz; HTTP works and the next one fails fast too: the tab moves and remembers it', async () => {
    const ctx = setupFallback();
    assert.equal(ctx.socket.transport, TRANSPORT.WEBSOCKET);
    assert.equal(ctx.socket.stateDetail.transport, 'websocket');
    failAndWait(ctx);
    failAndWait(ctx);
    assert.equal(ctx.health.calls.length, 0);
    ctx.ws.serverError();
    assert.equal(ctx.health.calls.length, 1, 'the third fast failure asks whether HTTP gets through');
    assert.equal(ctx.health.calls[0].url, 'http://ripple.test/healthz');
    assert.equal(ctx.health.calls[0].init.cache, 'no-store');
    assert.equal(ctx.socket.transport, 'websocket', 'not before HTTP answered');
    await flush();
    assert.equal(ctx.WS.instances.length, 4, 'HTTP answered: WebSocket is tried again at once');
    assert.equal(ctx.socket.transport, 'websocket');
    assert.deepEqual(ctx.storage.entries(), {});
    ctx.ws.serverError();
    assert.equal(ctx.socket.transport, 'sse');
    assert.deepEqual(ctx.storage.entries(), { [FALLBACK_KEY]: 'sse' });
    const detail = ctx.lastState();
    assert.deepEqual([detail.state, detail.transport, detail.code, detail.attempt], [STATE.RECONNECTING, 'sse', 1006, 5]);
    tick(detail.delayMs);
    assert.equal(ctx.WS.instances.length, 4);
    assert.equal(ctx.sse.ES.instances.length, 1);
    assert.equal(ctx.sse.es.url, 'http://ripple.test/sse/chat/');
    assert.equal(ctx.lastState().transport, 'sse');
    ctx.sse.welcome();
    assert.equal(ctx.socket.state, STATE.OPEN);
    assert.equal(ctx.lastState().transport, 'sse');
    tick(60000);
    assert.equal(ctx.WS.instances.length, 5, 'the background probe runs from the move on');
    assert.equal(ctx.ws.url, URL);
    ctx.socket.close();
    assert.equal(liveTimers().pending, 0);
  });

  test('a server that is down (HTTP fails too) keeps the tab on WebSocket, retrying within downBackoffMaxMs', async () => {
    const health = fakeFetch();
    const ctx = setupFallback({ health, random: () => 0.999, downBackoffMaxMs: 2000 });
    for (let n = 0; n < 3; n += 1) failAndWait(ctx);
    assert.equal(health.calls.length, 1);
    health.calls[0].fail();
    await flush();
    for (let n = 0; n < 6; n += 1) {
      ctx.ws.serverError();
      assert.ok(ctx.lastState().delayMs <= 2000, `delay ${ctx.lastState().delayMs}`);
      tick(ctx.lastState().delayMs + 1);
      health.pending().forEach((call) => call.respond(503));
      await flush();
    }
    assert.equal(ctx.socket.transport, 'websocket');
    assert.deepEqual(ctx.storage.entries(), {});
    assert.equal(ctx.socket.state, STATE.CONNECTING, 'never given up: refused connections do not count toward maxAttempts');
    ctx.ws.serverOpen();
    welcome(ctx.ws);
    assert.equal(ctx.socket.state, STATE.OPEN);
    assert.equal(ctx.socket.transport, 'websocket');
    ctx.socket.close();
    assert.equal(liveTimers().pending, 0);
  });

  test('a health check with no answer within healthTimeoutMs counts as down, and is aborted', async () => {
    const health = fakeFetch();
    const ctx = setupFallback({ health, healthTimeoutMs: 1500, backoffBaseMs: 60000, downBackoffMaxMs: 60000 });
    for (let n = 0; n < 3; n += 1) failAndWait(ctx);
    ctx.ws.serverError();
    const call = health.calls.at(-1);
    tick(1500);
    assert.equal(call.init.signal.aborted, true);
    await flush();
    failAndWait(ctx);
    assert.equal(ctx.socket.transport, 'websocket');
    ctx.socket.close();
    assert.equal(liveTimers().pending, 0);
  });

  test('fallbackAfterFailures sets how many fast failures it takes', async () => {
    const ctx = setupFallback({ fallbackAfterFailures: 1 });
    await blockWebSocket(ctx, 1);
    assert.equal(ctx.socket.transport, 'sse');
    assert.equal(ctx.sse.ES.instances.length, 1);
    ctx.socket.close();
  });

  test('a WebSocket constructor that throws counts as a fast failure', async () => {
    let tries = 0;
    class BlockedWebSocket {
      constructor() {
        tries += 1;
        throw new Error('SecurityError: blocked');
      }
    }
    const sse = fakeSseServer();
    const health = fakeFetch({ autoStatus: 200 });
    const ctx = setup({ transports: [BlockedWebSocket, sse.Sse], sessionStorage: fakeStorage(), fetch: health });
    for (let n = 0; n < 2; n += 1) tick(Math.ceil(ctx.socket.stateDetail.delayMs ?? 0) + 1);
    assert.equal(health.calls.length, 1, 'asked after the third');
    await flush();
    assert.equal(tries, 4, 'the attempt after HTTP answered threw too');
    tick(Math.ceil(ctx.socket.stateDetail.delayMs ?? 0) + 1);
    assert.equal(ctx.socket.transport, 'sse');
    assert.equal(sse.ES.instances.length, 1);
    ctx.socket.close();
  });

  test('a slow failure, or a WebSocket that opens, starts the count over', async () => {
    const ctx = setupFallback({ maxAttempts: 100 });
    failAndWait(ctx);
    failAndWait(ctx);
    tick(3000); // the third attempt fails, but only after fastFailureMs
    failAndWait(ctx);
    failAndWait(ctx);
    assert.equal(ctx.health.calls.length, 0, 'two fast ones since the slow one');
    ctx.ws.serverOpen();
    ctx.ws.serverClose(1006);
    tick(ctx.lastState().delayMs);
    failAndWait(ctx);
    failAndWait(ctx);
    assert.equal(ctx.health.calls.length, 0, 'an open socket starts the count over');
    await blockWebSocket(ctx, 1);
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

  test('a sessionStorage that throws only means the choice is not kept', async () => {
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
    await blockWebSocket(ctx);
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
    ctx.sse.welcome('conn-1');
    ctx.sse.es.serverEnd();
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
