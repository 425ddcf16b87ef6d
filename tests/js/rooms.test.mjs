import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { FRAME, RippleSocket, STATE } from '../../static/js/ripple-socket.js';
import { useMockTimers } from './fake-websocket.mjs';
import { message, sentIds, setup, subscribed, tick } from './helpers.mjs';

const liveTimers = useMockTimers();

describe('RippleSocket messages in seq order', () => {
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
    assert.deepEqual(ctx.of('unsubscribed'), [{ room: 'general', reason: 'room_closed', code: 'room_closed', message: 'closed for the night' }]);
    ctx.ws.serverClose(1006);
    tick(ctx.lastState().delayMs);
    ctx.ws.serverOpen();
    // The closed room is only asked about (has it reopened meanwhile?), after the live ones.
    assert.deepEqual(ctx.ws.framesOfType(FRAME.SUBSCRIBE).map((f) => f.room), ['random', 'general']);
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
