/**
 * Whether the server answers plain HTTP: one `GET /healthz` with a deadline.
 *
 * The transport choice asks after WebSocket attempts keep failing fast. That
 * alone cannot tell a server that is down (a restart, a deploy: HTTP fails
 * too, so the tab keeps retrying WebSocket) from a network that passes HTTP
 * but not WebSocket (the only case the HTTP fallback is for).
 */

// The Schedule name of the check's deadline.
const HEALTH_DEADLINE = 'healthDeadline';

/** The health URL of the server a ws:/wss: URL points at: same host and port, http:/https:. */
export function healthUrl(socketUrl, path = '/healthz') {
  const url = new URL(socketUrl);
  url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
  url.pathname = path;
  url.search = '';
  url.hash = '';
  return url.href;
}

/**
 * One check at a time. `fetch` null means the answer cannot be had: every
 * check then reports "HTTP works", the only safe guess where a fallback is
 * configured without a fetch to check with.
 */
export class HealthCheck {
  #fetch;
  #url;
  #schedule;
  #timeoutMs;
  // The check out, as {controller, done}, or null.
  #out = null;

  constructor({ fetch, url, schedule, timeoutMs }) {
    this.#fetch = typeof fetch === 'function' ? fetch : null;
    this.#url = url;
    this.#schedule = schedule;
    this.#timeoutMs = timeoutMs;
  }

  get pending() {
    return this.#out !== null;
  }

  /**
   * Starts a check unless one is out. `onResult(ok)` runs once, later (never
   * within this call), and never after `cancel()`: ok is true for a 2xx answer
   * within the deadline.
   */
  start(onResult) {
    if (this.#out !== null) return;
    const controller = typeof AbortController === 'function' ? new AbortController() : null;
    const out = { controller, done: false };
    this.#out = out;
    const finish = (ok) => {
      if (out.done || this.#out !== out) return;
      out.done = true;
      this.#out = null;
      this.#schedule.clear(HEALTH_DEADLINE);
      onResult(ok);
    };
    this.#schedule.after(HEALTH_DEADLINE, this.#timeoutMs, () => {
      controller?.abort();
      finish(false);
    });
    if (this.#fetch === null) {
      Promise.resolve().then(() => finish(true));
      return;
    }
    // Called unbound: a browser's fetch refuses any `this` but the global one.
    const fetch = this.#fetch;
    let request;
    try {
      request = fetch(this.#url, { cache: 'no-store', credentials: 'omit', signal: controller?.signal });
    } catch {
      request = Promise.reject(new Error('fetch threw'));
    }
    Promise.resolve(request).then((response) => finish(Boolean(response?.ok)), () => finish(false));
  }

  /** Forgets the check out, if any: its answer is ignored, its deadline cleared. */
  cancel() {
    const out = this.#out;
    if (out === null) return;
    this.#out = null;
    out.done = true;
    this.#schedule.clear(HEALTH_DEADLINE);
    out.controller?.abort();
  }
}
