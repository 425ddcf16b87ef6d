import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { FRAME, RippleSocket } from '../../static/js/ripple-socket.js';
import { useMockTimers } from './fake-websocket.mjs';
import { message, setup, subscribed, tick } from './helpers.mjs';

const liveTimers = useMockTimers();

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
