// The room page's pure pieces: links (room/links.js) and grouping (room/grouping.js).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { GROUP_GAP_MS, continues, dayKey, dayLabel, formatFullTime } from '../../static/js/room/grouping.js';
import { linkify, safeHref } from '../../static/js/room/links.js';
import { failureText } from '../../static/js/room/sending.js';

/** Just enough of a document for linkify: elements with attributes and text. */
const doc = {
  createElement(tag) {
    const attributes = {};
    return {
      tag,
      attributes,
      textContent: '',
      setAttribute(name, value) {
        attributes[name] = String(value);
      },
    };
  },
};

/** linkify's output as strings and `[href|text]` marks. */
function shown(text) {
  return linkify(doc, text).map((node) => (typeof node === 'string' ? node : `[${node.attributes.href}|${node.textContent}]`));
}

describe('links', () => {
  test('http and https URLs become links with noopener noreferrer in a new tab', () => {
    const [before, a, after] = linkify(doc, 'see https://example.com/a?b=1&c=2 now');
    assert.equal(before, 'see ');
    assert.deepEqual([a.tag, a.attributes, a.textContent], [
      'a', { href: 'https://example.com/a?b=1&c=2', rel: 'noopener noreferrer', target: '_blank' }, 'https://example.com/a?b=1&c=2',
    ]);
    assert.equal(after, ' now');
    assert.deepEqual(shown('http://x.example'), ['[http://x.example/|http://x.example]']);
  });

  test('other schemes and look-alikes stay text', () => {
    for (const text of ['javascript:alert(1)', 'data:text/html,<b>x</b>', 'ftp://x.example/', 'javascript://example.com/%0aalert(1)',
      'JaVaScRiPt:alert(1)', '<a href="https://x.example">x</a>'.replace('https://', 'hxxps://')]) {
      assert.deepEqual(shown(text), [text], text);
    }
    assert.equal(safeHref('javascript:alert(1)'), null);
    assert.equal(safeHref('https://ok.example/'), 'https://ok.example/');
  });

  test('punctuation that ends a sentence or a bracket is not part of the link', () => {
    assert.deepEqual(shown('(see https://x.example/a).'), ['(see ', '[https://x.example/a|https://x.example/a]', ').']);
    assert.deepEqual(shown('https://en.wikipedia.org/wiki/Foo_(bar), yes'),
      ['[https://en.wikipedia.org/wiki/Foo_(bar)|https://en.wikipedia.org/wiki/Foo_(bar)]', ', yes']);
    assert.deepEqual(shown('two: https://a.example, https://b.example!'),
      ['two: ', '[https://a.example/|https://a.example]', ', ', '[https://b.example/|https://b.example]', '!']);
  });

  test('a URL inside markup stays inside its text: the quote ends it', () => {
    assert.deepEqual(shown('<a href="https://x.example/">'), ['<a href="', '[https://x.example/|https://x.example/]', '">']);
  });
});

describe('grouping', () => {
  const at = (iso) => ({ author: 'ann', kind: 'guest', sentAt: iso });

  test('one author within a few minutes on one day continues a run', () => {
    assert.ok(continues(at('2026-11-22T10:00:00Z'), at('2026-11-22T10:04:59Z')));
    assert.ok(!continues(at('2026-11-22T10:00:00Z'), { ...at('2026-11-22T10:01:00Z'), author: 'bob' }));
    assert.ok(!continues(at('2026-11-22T10:00:00Z'), { ...at('2026-11-22T10:01:00Z'), kind: 'user' }), 'a guest cannot continue a user');
    assert.ok(!continues(at('2026-11-22T10:00:00Z'), at(new Date(Date.parse('2026-11-22T10:00:00Z') + GROUP_GAP_MS + 1).toISOString())));
    assert.ok(!continues({ ...at('2026-11-22T10:00:00Z'), kind: 'system' }, { ...at('2026-11-22T10:01:00Z'), kind: 'system' }));
    assert.ok(!continues(null, at('2026-11-22T10:00:00Z')));
    assert.ok(!continues(at('bad'), at('2026-11-22T10:00:00Z')));
  });

  test('days read Today, Yesterday, or the date', () => {
    const now = new Date(2026, 10, 22, 9, 30);
    assert.equal(dayLabel(new Date(2026, 10, 22, 0, 1).toISOString(), now), 'Today');
    assert.equal(dayLabel(new Date(2026, 10, 21, 23, 59).toISOString(), now), 'Yesterday');
    assert.match(dayLabel(new Date(2026, 10, 20, 12).toISOString(), now), /20/);
    assert.match(dayLabel(new Date(2025, 10, 20, 12).toISOString(), now), /2025/);
    assert.equal(dayKey(new Date(2026, 0, 2, 3).toISOString()), '2026-01-02');
    assert.equal(dayLabel('bad', now), '');
    assert.match(formatFullTime('2026-11-22T10:00:00Z'), /2026/);
  });
});

describe('sending', () => {
  test('a refusal reads as words', () => {
    assert.equal(failureText({ code: 'body_too_long', message: 'bodies are limited to 20 characters' }), 'Not sent — too long');
    assert.equal(failureText({ code: 'closed' }), 'Not sent — disconnected');
    assert.equal(failureText({ code: 'something_new', message: 'the server says no' }), 'Not sent — the server says no');
  });
});
