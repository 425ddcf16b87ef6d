// SseSocket, the HTTP fallback transport (static/js/sse-socket.js), against a
// fake EventSource and a fake fetch.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { SseSocket, sseUrl } from '../../static/js/sse-socket.js';
import { FakeEventSource, STREAM_TOKEN, fakeFetch, fakeSseServer, flush } from './fake-sse.mjs';
import { useMockTimers } from './fake-websocket.mjs';

const URL = 'wss://chat.example:8443/ws/chat/';
const EVENTS = ['open', 'message', 'error', 'close'];

const liveTimers = useMockTimers();

/** An SseSocket on a fake server, recording its events in order. */
function setup({ autoStatus = null, token = 'csrf-token-1', url = URL } = {}) {
  const server = fakeSseServer({ autoStatus, token });
  const socket = new server.Sse(url);
  const events = [];
  for (const type of EVENTS) {
    socket.addEventListener(type, (event) => events.push({ type, data: event.data, code: event.code, reason: event.reason, wasClean: event.wasClean }));
  }
  return {
    ...server,
    socket,
    events,
    types: () => events.map((event) => event.type),
    of: (type) => events.filter((event) => event.type === type),
  };
}

function opened(options) {
  const ctx = setup(options);
  ctx.welcome('conn-7');
  return ctx;
}

describe('sseUrl', () => {
  test('maps ws: to http: and wss: to https:, /ws/ to /sse/, keeping host and port', () => {
    assert.equal(sseUrl('ws://localhost:8000/ws/chat/'), 'http://localhost:8000/sse/chat/');
    assert.equal(sseUrl('wss://chat.example:8443/ws/chat/'), 'https://chat.example:8443/sse/chat/');
    assert.equal(sseUrl('wss://chat.example/ws/chat/'), 'https://chat.example/sse/chat/');
  });

  test('keeps an http(s) URL as is and refuses anything else', () => {
    assert.equal(sseUrl('https://chat.example/sse/chat/'), 'https://chat.example/sse/chat/');
    assert.throws(() => sseUrl('/ws/chat/'), SyntaxError);
    assert.throws(() => sseUrl('ftp://chat.example/ws/chat/'), SyntaxError);
    assert.throws(() => sseUrl('ws://chat.example/chat/'), SyntaxError);
  });
});

describe('SseSocket opening', () => {
  test('opens the stream at the mapped URL, same origin, and stays connecting until welcome', () => {
    const ctx = setup();
    assert.equal(ctx.ES.instances.length, 1);
    assert.equal(ctx.es.url, 'https://chat.example:8443/sse/chat/');
    assert.equal(ctx.es.withCredentials, false);
    assert.equal(ctx.socket.url, 'https://chat.example:8443/sse/chat/');
    assert.equal(ctx.socket.readyState, SseSocket.CONNECTING);
    ctx.es.serverOpen(); // response headers alone are not the welcome
    assert.equal(ctx.socket.readyState, ctx.socket.CONNECTING);
    assert.deepEqual(ctx.events, []);
    assert.throws(() => ctx.socket.send('{"type":"ping"}'), { name: 'InvalidStateError' });
  });

  test('welcome fires open, then arrives as the first message, unchanged', () => {
    const ctx = setup();
    const text = JSON.stringify({ type: 'welcome', protocol: 1, connection_id: 'conn-7', limits: {} });
    ctx.es.serverSend(text);
    assert.deepEqual(ctx.types(), ['open', 'message']);
    assert.equal(ctx.of('message')[0].data, text);
    assert.equal(ctx.socket.readyState, SseSocket.OPEN);
    assert.equal(ctx.socket.connectionId, 'conn-7');
  });

  test('every later frame is one message event with the frame JSON as data', () => {
    const ctx = opened();
    ctx.es.serverSend({ type: 'pong', t: 1, ref: null });
    ctx.es.serverSend('{"type":"message","room":"general","seq":4}');
    ctx.es.serverSend({ type: 'welcome', connection_id: 'other' });
    assert.deepEqual(ctx.of('message').slice(1).map((event) => JSON.parse(event.data).type), ['pong', 'message', 'welcome']);
    assert.equal(ctx.socket.connectionId, 'conn-7', 'only the first welcome names the connection');
  });

  test('a first frame that is not a welcome with a connection_id ends the connection with 1006', () => {
    for (const first of ['{"type":"pong"}', 'not json', '{"type":"welcome"}', '{"type":"welcome","connection_id":""}']) {
      const ctx = setup();
      ctx.es.serverSend(first);
      assert.deepEqual(ctx.types(), ['error', 'close'], first);
      assert.equal(ctx.of('close')[0].code, 1006);
      assert.equal(ctx.es.closeCount, 1);
      assert.equal(ctx.es.listenerCount(), 0);
    }
  });

  test('an open listener that closes the socket gets no welcome message', () => {
    const ctx = setup();
    ctx.socket.addEventListener('open', () => ctx.socket.close(1000));
    ctx.welcome();
    assert.deepEqual(ctx.types(), ['open']);
  });

  test('needs EventSource and fetch; supported() says whether a scope has them', () => {
    assert.throws(() => new SseSocket(URL, { EventSource: undefined, fetch: fakeFetch() }), TypeError);
    assert.throws(() => new SseSocket(URL, { EventSource: FakeEventSource.fresh(), fetch: null }), TypeError);
    assert.equal(SseSocket.supported({ EventSource: FakeEventSource, fetch() {} }), true);
    assert.equal(SseSocket.supported({ fetch() {} }), false);
    assert.equal(SseSocket.transport, 'sse');
  });

  test('a URL it cannot map throws in the constructor and opens no stream', () => {
    const server = fakeSseServer();
    assert.throws(() => new server.Sse('ws://chat.example/elsewhere/'), SyntaxError);
    assert.equal(server.ES.instances.length, 0);
  });
});

describe('SseSocket closing', () => {
  for (const code of [4401, 4403, 4409, 4503, 4512, 1011]) {
    test(`event: close with code ${code} becomes a clean close event with that code`, () => {
      const ctx = opened();
      ctx.es.serverClose(code);
      assert.deepEqual(ctx.types(), ['open', 'message', 'close']);
      assert.deepEqual(ctx.of('close')[0], { type: 'close', data: undefined, code, reason: '', wasClean: true });
      assert.equal(ctx.socket.readyState, SseSocket.CLOSED);
      assert.equal(ctx.es.closeCount, 1, 'closed before the end of the response, so it cannot reconnect');
      assert.equal(ctx.es.listenerCount(), 0);
    });
  }

  test('event: close before welcome still reports its code', () => {
    const ctx = setup();
    ctx.es.serverClose(4409, { reason: 'too many' });
    assert.deepEqual(ctx.of('close').map((event) => [event.code, event.reason]), [[4409, 'too many']]);
    assert.equal(ctx.of('open').length, 0);
  });

  test('an unreadable close event is a 1006', () => {
    const ctx = opened();
    ctx.es.fire('close', { data: 'nope' });
    assert.deepEqual(ctx.of('close').map((event) => event.code), [1006]);
  });

  test('a refused stream (HTTP 403: error with readyState CLOSED) is error, then close 1006', () => {
    const ctx = setup();
    ctx.es.serverRefuse();
    assert.deepEqual(ctx.types(), ['error', 'close']);
    assert.deepEqual(ctx.of('close')[0], { type: 'close', data: undefined, code: 1006, reason: 'stream ended', wasClean: false });
    assert.equal(ctx.es.listenerCount(), 0);
  });

  test('a stream that ends or drops after open is a 1006, and the EventSource is closed so it never reconnects', () => {
    const ctx = opened();
    ctx.es.serverEnd();
    assert.deepEqual(ctx.types(), ['open', 'message', 'error', 'close']);
    assert.equal(ctx.of('close')[0].code, 1006);
    assert.equal(ctx.es.closeCount, 1);
    assert.equal(ctx.es.readyState, FakeEventSource.CLOSED);
    assert.equal(ctx.es.listenerCount(), 0);
    ctx.es.fire('message', { data: '{"type":"pong"}' });
    assert.equal(ctx.of('message').length, 1, 'nothing after the close');
    assert.equal(ctx.ES.instances.length, 1);
  });

  test('close(code, reason) stops the stream at once; the close event follows in a microtask', async () => {
    const ctx = opened();
    ctx.socket.close(4000, 'heartbeat timeout');
    assert.equal(ctx.socket.readyState, SseSocket.CLOSING);
    assert.equal(ctx.es.closeCount, 1);
    assert.equal(ctx.es.listenerCount(), 0);
    assert.deepEqual(ctx.types(), ['open', 'message']);
    await Promise.resolve();
    assert.equal(ctx.socket.readyState, SseSocket.CLOSED);
    assert.deepEqual(ctx.of('close'), [{ type: 'close', data: undefined, code: 4000, reason: 'heartbeat timeout', wasClean: true }]);
    ctx.socket.close(1000);
    await Promise.resolve();
    assert.equal(ctx.of('close').length, 1, 'once');
  });

  test('close() without a code reports 1005; a code WebSocket would refuse throws', async () => {
    const ctx = opened();
    assert.throws(() => ctx.socket.close(1006), { name: 'InvalidAccessError' });
    assert.throws(() => ctx.socket.close(2999), { name: 'InvalidAccessError' });
    assert.equal(ctx.socket.readyState, SseSocket.OPEN);
    ctx.socket.close();
    await Promise.resolve();
    assert.equal(ctx.of('close')[0].code, 1005);
  });

  test('close() while connecting closes the stream; no open ever fires', async () => {
    const ctx = setup();
    ctx.socket.close();
    ctx.es.fire('message', { data: '{"type":"welcome","connection_id":"c"}' });
    await Promise.resolve();
    assert.deepEqual(ctx.types(), ['close']);
    assert.equal(ctx.es.listenerCount(), 0);
  });
});

describe('SseSocket sending', () => {
  test('each frame is one POST to send/?connection=<id> with the body as is, the CSRF header and same-origin credentials', () => {
    const ctx = opened();
    const text = '{"type":"ping","t":1}';
    ctx.socket.send(text);
    assert.equal(ctx.fetch.calls.length, 1);
    const [{ url, init }] = ctx.fetch.calls;
    assert.equal(url, 'https://chat.example:8443/sse/chat/send/?connection=conn-7');
    assert.equal(init.method, 'POST');
    assert.equal(init.body, text);
    assert.equal(init.credentials, 'same-origin');
    assert.equal(init.redirect, 'error');
    assert.deepEqual(init.headers, {
      'Content-Type': 'text/plain;charset=UTF-8',
      'X-CSRFToken': 'csrf-token-1',
      'X-Ripple-Stream-Token': STREAM_TOKEN,
    });
  });

  test('the connection id is URL-encoded', () => {
    const ctx = setup();
    ctx.welcome('a b&c=d');
    ctx.socket.send('{}');
    assert.equal(ctx.fetch.calls[0].url, 'https://chat.example:8443/sse/chat/send/?connection=a+b%26c%3Dd');
  });

  test('POSTs go one at a time, in send order, each after the previous response', async () => {
    const ctx = opened();
    ctx.socket.send('{"n":1}');
    ctx.socket.send('{"n":2}');
    ctx.socket.send('{"n":3}');
    await flush();
    assert.deepEqual(ctx.fetch.frames(), [{ n: 1 }], 'the second waits for the first response');
    ctx.fetch.calls[0].respond(202);
    await flush();
    assert.deepEqual(ctx.fetch.frames(), [{ n: 1 }, { n: 2 }]);
    ctx.socket.send('{"n":4}');
    ctx.fetch.calls[1].respond(202);
    await flush();
    ctx.fetch.calls[2].respond(202);
    await flush();
    ctx.fetch.calls[3].respond(202);
    await flush();
    assert.deepEqual(ctx.fetch.frames(), [{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }]);
    assert.equal(ctx.fetch.pending().length, 0);
    assert.equal(ctx.socket.readyState, SseSocket.OPEN);
    ctx.socket.send('{"n":5}');
    assert.equal(ctx.fetch.calls.length, 5, 'an idle queue posts at once');
  });

  test('the token is read from the page at each POST; without one no header is sent', async () => {
    const ctx = opened({ autoStatus: 202, token: null });
    ctx.socket.send('{}');
    await flush();
    assert.deepEqual(ctx.fetch.calls[0].init.headers, { 'Content-Type': 'text/plain;charset=UTF-8', 'X-Ripple-Stream-Token': STREAM_TOKEN });
  });

  test('a POST that fails on the network is error, then close 1006; later frames are dropped', async () => {
    const ctx = opened();
    ctx.socket.send('{"n":1}');
    ctx.socket.send('{"n":2}');
    ctx.fetch.calls[0].fail();
    await flush();
    assert.deepEqual(ctx.types(), ['open', 'message', 'error', 'close']);
    assert.deepEqual(ctx.of('close')[0], { type: 'close', data: undefined, code: 1006, reason: 'send failed', wasClean: false });
    assert.equal(ctx.fetch.calls.length, 1);
    assert.equal(ctx.es.closeCount, 1);
    assert.equal(ctx.es.listenerCount(), 0);
    ctx.socket.send('{"n":3}');
    await flush();
    assert.equal(ctx.fetch.calls.length, 1, 'send after close does nothing');
  });

  for (const status of [404, 410, 500, 502, 503]) {
    test(`a POST answered ${status} is a connection loss (1006)`, async () => {
      const ctx = opened();
      ctx.socket.send('{}');
      ctx.fetch.calls[0].respond(status);
      await flush();
      assert.deepEqual(ctx.of('close').map((event) => [event.code, event.reason]), [[1006, `send failed (HTTP ${status})`]]);
    });
  }

  test('a POST refused with 403 (CSRF or origin) closes with 1008, which no reconnect fixes', async () => {
    const ctx = opened();
    ctx.socket.send('{}');
    ctx.socket.send('{}');
    ctx.fetch.calls[0].respond(403);
    await flush();
    assert.deepEqual(ctx.types(), ['open', 'message', 'close']);
    assert.equal(ctx.of('close')[0].code, 1008);
    assert.equal(ctx.fetch.calls.length, 1);
    assert.equal(ctx.es.listenerCount(), 0);
  });

  test('a POST refused with 413 is answered by a local frame_too_large error naming the frame; the next frame still goes', async () => {
    const ctx = opened();
    ctx.socket.send(JSON.stringify({ type: 'message', room: 'general', body: 'x'.repeat(10), client_id: 'big-1', ref: 'r1' }));
    ctx.socket.send('{"type":"ping"}');
    ctx.fetch.calls[0].respond(413);
    await flush();
    const reply = JSON.parse(ctx.of('message').at(-1).data);
    assert.deepEqual(reply, {
      type: 'error', code: 'frame_too_large', message: 'the frame is larger than the server accepts', ref: 'r1', room: 'general', client_id: 'big-1',
    });
    assert.equal(ctx.socket.readyState, SseSocket.OPEN);
    assert.deepEqual(ctx.fetch.frames().map((frame) => frame.type), ['message', 'ping']);
  });

  test('close() aborts the POST in flight and drops the queued frames', async () => {
    const ctx = opened();
    ctx.socket.send('{"n":1}');
    ctx.socket.send('{"n":2}');
    const [inFlight] = ctx.fetch.calls;
    ctx.socket.close(1000);
    assert.equal(inFlight.init.signal.aborted, true);
    await flush();
    assert.equal(inFlight.aborted, true);
    assert.equal(ctx.fetch.calls.length, 1);
    assert.deepEqual(ctx.types(), ['open', 'message', 'close']);
    assert.equal(ctx.of('close')[0].code, 1000, 'the abort is not a second close');
  });

  test('a stream close while a POST is out ends the POST too; its late answer changes nothing', async () => {
    const ctx = opened();
    ctx.socket.send('{}');
    ctx.es.serverClose(4401);
    assert.equal(ctx.fetch.calls[0].init.signal.aborted, true);
    await flush();
    assert.deepEqual(ctx.of('close').map((event) => event.code), [4401]);
  });
});

describe('SseSocket stream token', () => {
  test('the token of event: stream, before welcome, goes in X-Ripple-Stream-Token on every POST, never in a URL', async () => {
    const ctx = setup({ autoStatus: 202 });
    ctx.es.serverToken('tok-A1_b2');
    assert.deepEqual(ctx.events, [], 'the token event is not a frame');
    assert.equal(ctx.socket.readyState, SseSocket.CONNECTING);
    ctx.welcome('conn-7', {}, { streamToken: null });
    for (const n of [1, 2, 3]) ctx.socket.send(`{"n":${n}}`);
    await flush();
    await flush();
    assert.equal(ctx.fetch.calls.length, 3);
    for (const call of ctx.fetch.calls) {
      assert.equal(call.init.headers['X-Ripple-Stream-Token'], 'tok-A1_b2');
      assert.ok(!call.url.includes('tok-A1_b2'));
      assert.ok(!call.init.body.includes('tok-A1_b2'));
    }
    assert.ok(!ctx.es.url.includes('tok-A1_b2'));
  });

  test('the token is not part of any message the page sees', () => {
    const ctx = opened();
    assert.deepEqual(ctx.types(), ['open', 'message']);
    assert.ok(ctx.events.every((event) => !String(event.data ?? '').includes(STREAM_TOKEN)));
  });

  test('only the first token before welcome counts; one after welcome is ignored', async () => {
    const ctx = setup({ autoStatus: 202 });
    ctx.es.serverToken('first');
    ctx.es.serverToken('second');
    ctx.welcome('conn-7', {}, { streamToken: null });
    ctx.es.serverToken('late');
    ctx.socket.send('{}');
    await flush();
    assert.equal(ctx.fetch.calls[0].init.headers['X-Ripple-Stream-Token'], 'first');
    assert.equal(ctx.socket.readyState, SseSocket.OPEN);
  });

  test('a stream without a token (or an unreadable one) gets POSTs without the header, and stays open', async () => {
    for (const token of [null, 'not json', '{"token": 7}', '{"token": ""}', '[]']) {
      const ctx = setup({ autoStatus: 202 });
      if (token !== null) ctx.es.fire('stream', { data: token });
      ctx.welcome('conn-7', {}, { streamToken: null });
      ctx.socket.send('{}');
      await flush();
      assert.deepEqual(ctx.fetch.calls[0].init.headers, { 'Content-Type': 'text/plain;charset=UTF-8', 'X-CSRFToken': 'csrf-token-1' }, String(token));
      assert.deepEqual(ctx.types(), ['open', 'message'], String(token));
    }
  });

  test('a new connection (a new SseSocket) uses its own stream\'s token, not the last one', async () => {
    const server = fakeSseServer({ autoStatus: 202 });
    const first = new server.Sse(URL);
    server.welcome('conn-1', {}, { streamToken: 'token-one' });
    first.close();
    const second = new server.Sse(URL);
    server.welcome('conn-2', {}, { streamToken: 'token-two' });
    second.send('{}');
    await flush();
    assert.equal(server.fetch.calls.length, 1);
    assert.equal(server.fetch.calls[0].init.headers['X-Ripple-Stream-Token'], 'token-two');
    assert.ok(server.fetch.calls[0].url.endsWith('connection=conn-2'));
  });
});

describe('SseSocket cleanup', () => {
  test('after any ending no listener is left on the EventSource and no timer runs', async () => {
    const endings = {
      close: (ctx) => ctx.socket.close(),
      serverClose: (ctx) => ctx.es.serverClose(4401),
      streamEnd: (ctx) => ctx.es.serverEnd(),
      postFailure: (ctx) => {
        ctx.socket.send('{}');
        ctx.fetch.calls[0].fail();
      },
    };
    for (const [name, end] of Object.entries(endings)) {
      const ctx = opened();
      assert.equal(ctx.es.listenerCount(), 4, name);
      end(ctx);
      await flush();
      assert.equal(ctx.es.listenerCount(), 0, name);
      assert.equal(ctx.es.closeCount, 1, name);
      assert.equal(ctx.of('close').length, 1, name);
      assert.equal(liveTimers().pending, 0, name);
    }
  });

  test('the page document is only read for the token, which stays in the header, never in the URL', async () => {
    const ctx = opened({ autoStatus: 202, token: 'secret-token' });
    ctx.socket.send('{}');
    await flush();
    assert.ok(!ctx.fetch.calls[0].url.includes('secret-token'));
    assert.ok(!ctx.es.url.includes('secret-token'));
  });
});
