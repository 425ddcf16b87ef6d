import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { FRAME, RippleSocket } from '../../static/js/ripple-socket.js';
import { flush } from './fake-sse.mjs';
import { useMockTimers } from './fake-websocket.mjs';
import { CLIENT_ID, ack, message, sentIds, setup, subscribed, tick, welcome } from './helpers.mjs';

const liveTimers = useMockTimers();

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
