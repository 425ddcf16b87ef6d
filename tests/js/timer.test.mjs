import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Schedule, Timer } from '../../static/js/ripple-socket.js';
import { useMockTimers } from './fake-websocket.mjs';
import { tick } from './helpers.mjs';

const liveTimers = useMockTimers();

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

describe('Schedule', () => {
  test('one timer per name: arming a name again replaces it', () => {
    const schedule = new Schedule();
    const fired = [];
    schedule.after('a', 100, () => fired.push('a1'));
    schedule.after('a', 300, () => fired.push('a2'));
    schedule.after('b', 200, () => fired.push('b'));
    assert.equal(liveTimers().pending, 2);
    tick(1000);
    assert.deepEqual(fired, ['b', 'a2']);
    assert.equal(schedule.has('a') || schedule.has('b'), false);
    assert.equal(liveTimers().pending, 0);
  });

  test('noSooner keeps a timer armed to fire later, and brings none forward', () => {
    const schedule = new Schedule();
    const fired = [];
    schedule.noSooner('wait', 500, () => fired.push(500));
    schedule.noSooner('wait', 300, () => fired.push(300));
    tick(499);
    assert.deepEqual(fired, []);
    schedule.noSooner('wait', 800, () => fired.push(800));
    tick(500);
    assert.deepEqual(fired, [], 'the later deadline replaced the earlier one');
    tick(300);
    assert.deepEqual(fired, [800]);
    assert.equal(liveTimers().pending, 0);
  });

  test('every repeats until cleared; clear() with no name clears timeouts and intervals alike', () => {
    const schedule = new Schedule();
    let beats = 0;
    schedule.every('beat', 100, () => {
      beats += 1;
    });
    schedule.after('once', 1000, () => assert.fail('cleared'));
    tick(350);
    assert.equal(beats, 3);
    assert.equal(liveTimers().pending, 2);
    schedule.clear();
    assert.equal(liveTimers().pending, 0);
    tick(10000);
    assert.equal(beats, 3);
  });

  test('clear(name) leaves the other names armed', () => {
    const schedule = new Schedule();
    const fired = [];
    schedule.after('a', 100, () => fired.push('a'));
    schedule.after('b', 100, () => fired.push('b'));
    schedule.clear('a', 'unknown');
    tick(100);
    assert.deepEqual(fired, ['b']);
  });

  test('a Timer on a shared schedule is cleared with it', () => {
    const schedule = new Schedule();
    let fired = 0;
    const timer = new Timer(() => {
      fired += 1;
    }, { schedule, name: 'reconnect' });
    timer.schedule(100);
    assert.equal(schedule.has('reconnect'), true);
    schedule.clear();
    assert.equal(timer.pending, false);
    tick(1000);
    assert.equal(fired, 0);
    assert.equal(liveTimers().pending, 0);
  });
});
