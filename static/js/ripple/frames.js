/**
 * Small helpers for frames from the server and the errors they become.
 */

// `retry_after_ms` of a `rate_limited` error: used when it is missing, and its ceiling.
const RETRY_AFTER_DEFAULT_MS = 1000;
const RETRY_AFTER_MAX_MS = 60000;

/** A frame from its JSON text: an object with a string `type`, or null. */
export function parseFrame(text) {
  let frame;
  try {
    frame = JSON.parse(text);
  } catch {
    return null;
  }
  return frame !== null && typeof frame === 'object' && typeof frame.type === 'string' ? frame : null;
}

/** The wait a `rate_limited` error asks for, in ms: its `retry_after_ms`, bounded. */
export function retryAfterOf(frame) {
  const ms = frame.retry_after_ms;
  if (!Number.isFinite(ms) || ms < 0) return RETRY_AFTER_DEFAULT_MS;
  return Math.min(ms, RETRY_AFTER_MAX_MS);
}

/** The `ratelimited` event's detail: who was refused (null when the frame names nobody), and the wait. */
export function rateLimitDetail(frame, retryAfterMs) {
  return {
    room: typeof frame.room === 'string' ? frame.room : null,
    clientId: typeof frame.client_id === 'string' ? frame.client_id : null,
    retryAfterMs,
    frame,
  };
}

/**
 * An Error with a stable `code`. Client-side errors use the code as message;
 * errors from an `error` frame carry the server's message and the `frame`.
 */
export function rippleError(code, message = code, extra = {}) {
  const error = new Error(message);
  error.code = code;
  return Object.assign(error, extra);
}

/** Reports an exception thrown by a page's callback without stopping the client. */
export function reportListenerError(error) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(error);
  else console.error(error);
}
