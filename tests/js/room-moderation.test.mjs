import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { FRAME } from '../../static/js/ripple-socket.js';
import { closedText, mountModeration } from '../../static/js/room/moderation.js';
import { SHOW_MS, TypingNames, describeTyping, mountTyping } from '../../static/js/room/typing.js';
import { useMockTimers } from './fake-websocket.mjs';
import { message, setup, subscribed, tick, welcome } from './helpers.mjs';

const liveTimers = useMockTimers();

function opened(rooms = ['general']) {
  const ctx = setup();
  for (const room of rooms) ctx.socket.subscribe(room);
  ctx.ws.serverOpen();
  welcome(ctx.ws);
  for (const room of rooms) subscribed(ctx.ws, room);
  return ctx;
}

describe('RippleSocket typing', () => {
  test('typing sends one frame per room every 3 s at most, and none for a room not subscribed', () => {
    const ctx = opened();
    assert.equal(ctx.socket.typing('general'), true);
    assert.equal(ctx.socket.typing('general'), false);
    assert.equal(ctx.socket.typing('random'), false);
    tick(2999);
    assert.equal(ctx.socket.typing('general'), false);
    tick(1);
    assert.equal(ctx.socket.typing('general'), true);
    assert.deepEqual(ctx.ws.framesOfType(FRAME.TYPING), [{ type: 'typing', room: 'general' }, { type: 'typing', room: 'general' }]);
    ctx.socket.close();
  });

  test('a typing frame of a subscribed room becomes a typing event; of another room, nothing', () => {
    const ctx = opened();
    const seen = [];
    ctx.socket.addEventListener('typing', (event) => seen.push(event.detail));
    ctx.ws.serverSend({ type: FRAME.TYPING, room: 'general', name: 'bob', kind: 'guest' });
    ctx.ws.serverSend({ type: FRAME.TYPING, room: 'elsewhere', name: 'eve', kind: 'user' });
    assert.deepEqual(seen, [{ room: 'general', name: 'bob', kind: 'guest' }]);
    ctx.socket.close();
  });
});

describe('RippleSocket reopened rooms', () => {
  test('room_reopened subscribes again from the last seq and passes messages on', () => {
    const ctx = opened();
    const got = [];
    ctx.socket.subscribe('general', { onMessage: (frame) => got.push(frame.seq) });
    ctx.ws.serverSend(message('general', 1));
    ctx.ws.serverSend({ type: FRAME.ROOM_CLOSED, room: 'general', reason: 'cleaning up' });
    const reopened = [];
    ctx.socket.addEventListener('reopened', (event) => reopened.push(event.detail));
    ctx.ws.serverSend({ type: FRAME.ROOM_REOPENED, room: 'general' });
    assert.deepEqual(reopened, [{ room: 'general' }]);
    const again = ctx.ws.framesOfType(FRAME.SUBSCRIBE).at(-1);
    assert.deepEqual([again.room, again.since], ['general', 1]);
    subscribed(ctx.ws, 'general');
    ctx.ws.serverSend(message('general', 2));
    assert.deepEqual(got, [1, 2]);
    ctx.socket.close();
  });

  test('a room closed at subscribe waits for room_reopened; a room never closed ignores it', () => {
    const ctx = setup();
    ctx.socket.subscribe('general');
    ctx.ws.serverOpen();
    const request = ctx.ws.framesOfType(FRAME.SUBSCRIBE).at(-1);
    ctx.ws.serverSend({ type: FRAME.ERROR, code: 'room_closed', message: 'general was closed', ref: request.ref, room: 'general' });
    assert.deepEqual(ctx.of('unsubscribed').map((d) => d.reason), ['room_closed']);
    ctx.ws.serverSend({ type: FRAME.ROOM_REOPENED, room: 'other' });
    ctx.ws.serverSend({ type: FRAME.ROOM_REOPENED, room: 'general' });
    assert.equal(ctx.ws.framesOfType(FRAME.SUBSCRIBE).length, 2);
    ctx.socket.close();
  });

  test('after a reconnect, a closed room that reopened meanwhile answers its probe and is live again', () => {
    const ctx = opened();
    ctx.ws.serverSend({ type: FRAME.ROOM_CLOSED, room: 'general', reason: '' });
    ctx.ws.serverClose(1006);
    tick(ctx.lastState().delayMs);
    ctx.ws.serverOpen();
    const reopened = [];
    ctx.socket.addEventListener('reopened', (event) => reopened.push(event.detail.room));
    subscribed(ctx.ws, 'general', [message('general', 1)]);
    assert.deepEqual(reopened, ['general']);
    assert.equal(ctx.of('subscribed').at(-1).room, 'general');
    ctx.socket.close();
  });
});

describe('typing indicator', () => {
  test('describeTyping words one, two and several names', () => {
    assert.equal(describeTyping([]), '');
    assert.equal(describeTyping(['Ann']), 'Ann is typing…');
    assert.equal(describeTyping(['Ann', 'Bob']), 'Ann and Bob are typing…');
    assert.equal(describeTyping(['Ann', 'Bob', 'Cy']), 'Several people are typing…');
  });

  test('names expire SHOW_MS after their last frame', () => {
    const names = new TypingNames();
    names.add('Ann', 0);
    names.add('Bob', 1000);
    assert.deepEqual(names.current(SHOW_MS - 1), ['Ann', 'Bob']);
    assert.deepEqual(names.current(SHOW_MS), ['Bob']);
    assert.equal(names.nextExpiry(), 1000 + SHOW_MS);
  });

  test('the page shows who types, drops them when their message arrives or after 5 s, and arms no timer after', () => {
    const ctx = opened();
    const element = { textContent: '', dataset: {} };
    const document = { getElementById: (id) => (id === 'typing' ? element : null) };
    const input = new EventTarget();
    input.value = '';
    const destroy = mountTyping({ socket: ctx.socket, room: 'general', input, document });
    ctx.ws.serverSend({ type: FRAME.TYPING, room: 'general', name: 'Ann', kind: 'guest' });
    ctx.ws.serverSend({ type: FRAME.TYPING, room: 'general', name: 'Bob', kind: 'user' });
    assert.equal(element.textContent, 'Ann and Bob are typing…');
    ctx.ws.serverSend(message('general', 1, { author: 'Ann' }));
    assert.equal(element.textContent, 'Bob is typing…');
    tick(SHOW_MS + 20);
    assert.equal(element.textContent, '');
    // The page's own typing: frames only while the box has text.
    input.dispatchEvent(new Event('input'));
    input.value = 'hel';
    input.dispatchEvent(new Event('input'));
    assert.equal(ctx.ws.framesOfType(FRAME.TYPING).length, 1);
    destroy();
    ctx.socket.close();
    assert.equal(liveTimers().pending, 0);
  });
});

describe('moderation on the page', () => {
  function page(ctx) {
    const blocks = new Map();
    const composer = { block: (key, text) => blocks.set(key, text), unblock: (key) => blocks.delete(key) };
    const line = { textContent: 'Connected', dataset: { state: 'open' } };
    const button = { hidden: true };
    const destroy = mountModeration({ socket: ctx.socket, room: 'general', composer, line, button, defer: (fn) => fn() });
    return { blocks, line, button, destroy };
  }

  test('the close reason is shown, the box blocked, the status not Connected; a reopen undoes all three', () => {
    const ctx = opened();
    const view = page(ctx);
    ctx.ws.serverSend({ type: FRAME.ROOM_CLOSED, room: 'general', reason: 'spring cleaning' });
    assert.equal(view.blocks.get('moderation'), 'This room was closed by a moderator: spring cleaning');
    assert.deepEqual([view.line.textContent, view.line.dataset.state], ['Room closed', 'closed']);
    ctx.ws.serverSend({ type: FRAME.ROOM_REOPENED, room: 'general' });
    assert.equal(view.blocks.size, 0);
    assert.deepEqual([view.line.textContent, view.line.dataset.state], ['Connected', 'open']);
    view.destroy();
    ctx.socket.close();
  });

  test('closed with 4403: the removal is said, no retry offered', () => {
    const ctx = opened();
    const view = page(ctx);
    ctx.ws.serverClose(4403);
    assert.equal(view.blocks.get('moderation'), 'A moderator removed you from this chat.');
    assert.deepEqual([view.line.textContent, view.button.hidden], ['Removed by a moderator', true]);
    view.destroy();
    ctx.socket.close();
  });

  test('closedText without a reason', () => {
    assert.equal(closedText(''), 'This room was closed by a moderator.');
    assert.equal(closedText(undefined), 'This room was closed by a moderator.');
  });
});
