// The room page's status line (static/js/room/status.js): the words, the
// countdown outside the live region, announcements on state changes only, and
// Retry now.
import assert from 'node:assert/strict';
import { describe, mock, test } from 'node:test';

import { CLOSE, STATE } from '../../static/js/ripple-socket.js';
import { StatusLine, describeState } from '../../static/js/room/status.js';
import { CountingTarget, useMockTimers } from './fake-websocket.mjs';
import { setup } from './helpers.mjs';

const liveTimers = useMockTimers();

/** Just what StatusLine touches: text, dataset, attributes, hidden, click, `after`. */
class FakeElement extends CountingTarget {
  constructor(id = '') {
    super();
    this.id = id;
    this.dataset = {};
    this.attributes = new Map();
    this.textContent = '';
    this.hidden = false;
    this.title = '';
    this.className = '';
    this.next = null;
    this.writes = [];
  }

  setAttribute(name, value) {
    this.attributes.set(name, String(value));
  }

  removeAttribute(name) {
    this.attributes.delete(name);
  }

  after(element) {
    this.next = element;
  }

  click() {
    this.fire('click');
  }
}

/** An element whose every textContent write is recorded (what a screen reader would hear). */
function recording(id) {
  const element = new FakeElement(id);
  let text = '';
  Object.defineProperty(element, 'textContent', {
    get: () => text,
    set: (value) => {
      text = value;
      element.writes.push(value);
    },
  });
  return element;
}

function fakeDocument() {
  return { getElementById: () => null, createElement: () => recording('') };
}

function mountStatus(socketOptions = {}) {
  const ctx = setup(socketOptions);
  const line = recording('conn-state');
  line.setAttribute('role', 'status');
  line.setAttribute('aria-live', 'polite');
  const button = new FakeElement('retry');
  button.hidden = true;
  const status = new StatusLine({ socket: ctx.socket, line, button, document: fakeDocument() });
  return Object.assign(ctx, { line, button, status, announcer: status.announcer });
}

describe('describeState', () => {
  const base = { attempt: 1, maxAttempts: 20, delayMs: null, offline: false, code: null, transport: 'websocket' };

  test('words every state as a person would, with no attempt counter', () => {
    assert.equal(describeState({ ...base, state: STATE.OPEN }).text, 'Connected');
    assert.equal(describeState({ ...base, state: STATE.OPEN, transport: 'sse' }).text, 'Connected (HTTP fallback)');
    assert.equal(describeState({ ...base, state: STATE.OPEN, transport: 'sse' }).dataState, 'open');
    assert.deepEqual(describeState({ ...base, state: STATE.CONNECTING }), {
      dataState: 'connecting', text: 'Connecting…', announce: null, retry: false, retryLabel: null,
    });
    const lost = describeState({ ...base, attempt: 9, state: STATE.RECONNECTING, delayMs: 3000 }, 0, 3000);
    assert.deepEqual(lost, {
      dataState: 'reconnecting', text: 'Connection lost. Reconnecting in 3 s', announce: 'Connection lost. Reconnecting.', retry: true, retryLabel: 'Retry now',
    });
    assert.equal(describeState({ ...base, state: STATE.RECONNECTING, delayMs: 400 }).text, 'Connection lost. Reconnecting…');
    assert.equal(describeState({ ...base, attempt: 3, state: STATE.CONNECTING }).text, 'Connection lost. Reconnecting…');
    assert.equal(describeState({ ...base, attempt: 3, state: STATE.CONNECTING }).retry, true);
    assert.equal(describeState({ ...base, state: STATE.RECONNECTING, offline: true }).text, 'Offline');
    assert.equal(describeState({ ...base, state: STATE.RECONNECTING, code: CLOSE.DRAINING, delayMs: 300 }).text, 'Server restarting. Reconnecting…');
    assert.equal(describeState({ ...base, state: STATE.RECONNECTING, code: CLOSE.TRY_AGAIN_LATER, delayMs: 9000 }, 0, 9000).text, 'Server busy. Reconnecting in 9 s');
    assert.equal(describeState({ ...base, state: STATE.RECONNECTING, code: CLOSE.CLIENT_TRANSPORT_SWITCH, delayMs: 400 }, 0, 400).text, 'Switching to WebSocket…');
    assert.deepEqual(describeState({ ...base, state: STATE.FAILED }).text, 'Disconnected');
    assert.equal(describeState({ ...base, state: STATE.FAILED }).retryLabel, 'Retry');
    assert.equal(describeState({ ...base, state: STATE.CLOSED, code: CLOSE.SESSION_ENDED }).retry, false);
    for (const state of Object.values(STATE)) {
      assert.doesNotMatch(describeState({ ...base, attempt: 9, state }, 0, 5000).text, /attempt|of 20/);
    }
  });
});

describe('StatusLine', () => {
  test('the visible line is not a live region; a separate live element is created for announcements', () => {
    const ctx = mountStatus();
    assert.equal(ctx.line.attributes.has('aria-live'), false);
    assert.equal(ctx.line.attributes.has('role'), false);
    assert.equal(ctx.line.next, ctx.announcer);
    assert.equal(ctx.announcer.attributes.get('aria-live'), 'polite');
    assert.equal(ctx.announcer.className, 'visually-hidden');
    ctx.status.destroy();
    ctx.socket.close();
  });

  test('counts down every second in the line, while the live region hears each state once', () => {
    const ctx = mountStatus({ backoffBaseMs: 3000, random: () => 0.99 });
    assert.equal(ctx.line.textContent, 'Connecting…');
    ctx.ws.serverOpen();
    assert.deepEqual([ctx.line.dataset.state, ctx.line.dataset.transport, ctx.line.textContent], ['open', 'websocket', 'Connected']);
    assert.equal(ctx.button.hidden, true);
    ctx.ws.serverClose(1011);
    assert.equal(ctx.line.dataset.state, 'reconnecting');
    assert.equal(ctx.line.textContent, 'Connection lost. Reconnecting in 3 s');
    assert.deepEqual([ctx.button.hidden, ctx.button.textContent], [false, 'Retry now']);
    mock.timers.tick(1000);
    assert.equal(ctx.line.textContent, 'Connection lost. Reconnecting in 2 s');
    mock.timers.tick(1000);
    assert.equal(ctx.line.textContent, 'Connection lost. Reconnecting in 1 s');
    mock.timers.tick(970);
    assert.equal(ctx.line.textContent, 'Connection lost. Reconnecting…', 'the attempt is out');
    assert.equal(ctx.button.hidden, false, 'no flicker between the wait and the attempt');
    ctx.ws.serverError(); // refused
    mock.timers.tick(5000);
    ctx.ws.serverOpen();
    assert.equal(ctx.line.textContent, 'Connected');
    assert.deepEqual(ctx.announcer.writes, ['Connected', 'Connection lost. Reconnecting.', 'Connected']);
    assert.ok(ctx.line.writes.length > 5);
    ctx.status.destroy();
    ctx.socket.close();
    assert.equal(liveTimers().pending, 0);
  });

  test('Retry now skips the wait: the client connects at once', () => {
    const ctx = mountStatus({ backoffBaseMs: 60000 });
    ctx.ws.serverOpen();
    ctx.ws.serverClose(1011);
    assert.equal(ctx.WS.instances.length, 1);
    ctx.button.click();
    assert.equal(ctx.WS.instances.length, 2);
    assert.equal(ctx.socket.state, STATE.CONNECTING);
    ctx.ws.serverOpen();
    assert.equal(ctx.line.textContent, 'Connected');
    assert.equal(ctx.button.hidden, true);
    ctx.status.destroy();
    ctx.socket.close();
    assert.equal(liveTimers().pending, 0);
  });

  test('offline says so, and Retry now still tries', () => {
    const ctx = mountStatus();
    ctx.ws.serverOpen();
    ctx.env.goOffline();
    ctx.ws.serverClose(1006);
    assert.deepEqual([ctx.line.dataset.state, ctx.line.textContent, ctx.button.hidden], ['offline', 'Offline', false]);
    assert.equal(ctx.announcer.textContent, 'Offline. Waiting for the network.');
    ctx.button.click();
    assert.equal(ctx.WS.instances.length, 2);
    ctx.status.destroy();
    ctx.socket.close();
  });

  test('after giving up: Disconnected and Retry; destroy() leaves no listener or countdown', () => {
    const ctx = mountStatus({ maxAttempts: 1, backoffBaseMs: 5000 });
    ctx.ws.serverOpen();
    ctx.ws.serverClose(1011);
    assert.deepEqual([ctx.line.dataset.state, ctx.line.textContent, ctx.button.textContent, ctx.button.hidden], ['failed', 'Disconnected', 'Retry', false]);
    ctx.button.click();
    assert.equal(ctx.WS.instances.length, 2);
    ctx.ws.serverOpen();
    ctx.ws.serverClose(1011);
    ctx.status.destroy();
    assert.equal(ctx.button.listenerCount(), 0);
    ctx.socket.close();
    assert.equal(liveTimers().pending, 0);
  });
});
