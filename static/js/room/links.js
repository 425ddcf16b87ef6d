/**
 * Clickable links in message text, built from DOM nodes: an `<a>` for each
 * http/https URL, every other character as a text node. No other scheme
 * becomes a link (`javascript:`, `data:` and the rest stay text), and no
 * text is ever parsed as HTML.
 */

// A URL starts at a word boundary with http:// or https:// and runs to whitespace or a quote.
const URL_PATTERN = /\bhttps?:\/\/[^\s<>"'`]+/gi;
// Punctuation that ends a sentence rather than the URL.
const TRAILING = /[.,;:!?'"»›]+$/;

/** Drops trailing punctuation, and a closing bracket the URL did not open. */
function trimUrl(candidate) {
  let url = candidate.replace(TRAILING, '');
  for (const [open, close] of [['(', ')'], ['[', ']']]) {
    while (url.endsWith(close) && url.split(open).length < url.split(close).length) {
      url = url.slice(0, -1).replace(TRAILING, '');
    }
  }
  return url;
}

/** The href for `text` when it is an http(s) URL the browser parses, else null. */
export function safeHref(text) {
  let parsed;
  try {
    parsed = new URL(text);
  } catch {
    return null;
  }
  return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.href : null;
}

/** `text` split into strings and `<a>` elements made with `document`, in order. */
export function linkify(document, text) {
  const nodes = [];
  let last = 0;
  for (const match of String(text).matchAll(URL_PATTERN)) {
    const url = trimUrl(match[0]);
    const href = safeHref(url);
    if (href === null) continue;
    if (match.index > last) nodes.push(text.slice(last, match.index));
    const a = document.createElement('a');
    a.setAttribute('href', href);
    a.setAttribute('rel', 'noopener noreferrer');
    a.setAttribute('target', '_blank');
    a.textContent = url;
    nodes.push(a);
    last = match.index + url.length;
  }
  if (last < text.length) nodes.push(text.slice(last));
  return nodes;
}

/** Replaces the content of `el` with `text`, its URLs as links. */
export function renderBody(el, text, document = el.ownerDocument) {
  el.replaceChildren(...linkify(document, text));
}
