/**
 * The protocol's names as the browser client uses them: frame types, error
 * codes, close codes and what the client does after each close, connection
 * states and transport names.
 *
 * `chat/protocol/codes.py` is the source of truth for frame types, error codes and
 * the server's close codes; `tests/unit/test_protocol_sync.py` reads this file
 * and fails when a copy drifts. Client-only codes (4000–4003) and the
 * reconnect policy are defined here, and the Python clients in tests/ and
 * bench/ are checked against them.
 */

export const PROTOCOL_VERSION = 1;

/** Connection states, as reported by `RippleSocket#state` and `statechange`. */
export const STATE = Object.freeze({
  CONNECTING: 'connecting',
  OPEN: 'open',
  RECONNECTING: 'reconnecting',
  CLOSED: 'closed',
  FAILED: 'failed',
});

/**
 * Every frame type of the protocol. `ping`, `pong` and `message` travel in
 * both directions; `subscribe` and `unsubscribe` only from the client;
 * `typing` both ways too (the server's names who types); `welcome`,
 * `subscribed`, `unsubscribed`, `ack`, `error`, `presence`, `deleted`,
 * `room_closed` and `room_reopened` only from the server.
 */
export const FRAME = Object.freeze({
  PING: 'ping',
  PONG: 'pong',
  MESSAGE: 'message',
  SUBSCRIBE: 'subscribe',
  UNSUBSCRIBE: 'unsubscribe',
  WELCOME: 'welcome',
  SUBSCRIBED: 'subscribed',
  UNSUBSCRIBED: 'unsubscribed',
  ACK: 'ack',
  ERROR: 'error',
  PRESENCE: 'presence',
  DELETED: 'deleted',
  ROOM_REOPENED: 'room_reopened',
  TYPING: 'typing',
  ROOM_CLOSED: 'room_closed',
});

/**
 * Every `error` frame code (docs/protocol.md, "Error codes"). The client acts
 * on `already_subscribed`, `server_error`, `rate_limited`, `forbidden` and
 * `room_closed`; the others reach the page as they are.
 */
export const ERROR_CODE = Object.freeze({
  INVALID_JSON: 'invalid_json',
  INVALID_FRAME: 'invalid_frame',
  UNKNOWN_TYPE: 'unknown_type',
  BINARY_NOT_SUPPORTED: 'binary_not_supported',
  FRAME_TOO_LARGE: 'frame_too_large',
  MISSING_FIELD: 'missing_field',
  INVALID_FIELD: 'invalid_field',
  INVALID_ROOM: 'invalid_room',
  BODY_EMPTY: 'body_empty',
  BODY_TOO_LONG: 'body_too_long',
  INVALID_BODY: 'invalid_body',
  ALREADY_SUBSCRIBED: 'already_subscribed',
  NOT_SUBSCRIBED: 'not_subscribed',
  TOO_MANY_SUBSCRIPTIONS: 'too_many_subscriptions',
  CLIENT_ID_CONFLICT: 'client_id_conflict',
  SERVER_ERROR: 'server_error',
  ROOM_CLOSED: 'room_closed',
  RATE_LIMITED: 'rate_limited',
  FORBIDDEN: 'forbidden',
  ROOM_NOT_FOUND: 'room_not_found',
  MESSAGE_REJECTED: 'message_rejected',
});

/** WebSocket close codes this client sends, reports or acts on. */
export const CLOSE = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  NO_STATUS: 1005, // a close() without a code, as the HTTP fallback reports it
  ABNORMAL: 1006,
  POLICY_VIOLATION: 1008,
  INTERNAL_ERROR: 1011,
  SERVICE_RESTART: 1012,
  // Sent by this client when it abandons a socket.
  CLIENT_HEARTBEAT_TIMEOUT: 4000,
  CLIENT_CONNECT_TIMEOUT: 4001,
  CLIENT_SUBSCRIBE_FAILED: 4002,
  CLIENT_TRANSPORT_SWITCH: 4003, // leaving the HTTP fallback: WebSocket gets through again
  // Sent by the server. 4400–4499 other than 4408: "do not come back".
  SESSION_ENDED: 4401, // logout or session expiry: the page must reload
  DISCONNECTED_BY_MODERATOR: 4403, // disconnected or removed by a moderator: refused while the removal lasts
  HEARTBEAT_TIMEOUT: 4408, // nothing heard from the client for interval + timeout: reconnect
  TOO_MANY_CONNECTIONS: 4409,
  FRAME_TOO_LARGE: 4413, // echo and dashboard sockets only: the chat socket answers with an error frame
  FLOODING: 4429,
  NO_RETRY_MIN: 4400,
  NO_RETRY_MAX: 4499,
  // Sent by the server: reconnect with backoff and resume.
  TRY_AGAIN_LATER: 4503, // the server's Redis is down
  TOO_SLOW: 4509, // this client fell behind the server's outbound limit
  // Sent by the server: restarting, reconnect quickly like 1001/1012.
  DRAINING: 4512,
});

// The reconnect policy, as data the protocol test reads: no reconnect after
// NO_RETRY_MIN..NO_RETRY_MAX except RETRY_IN_NO_RETRY_RANGE, nor after
// NO_RETRY_ALSO; a quick reconnect (random delay, no failure counted) after
// QUICK_RECONNECT; backoff after anything else.
const NO_RETRY_ALSO = Object.freeze([CLOSE.POLICY_VIOLATION]);
const RETRY_IN_NO_RETRY_RANGE = Object.freeze([CLOSE.HEARTBEAT_TIMEOUT]);
const QUICK_RECONNECT = Object.freeze([CLOSE.GOING_AWAY, CLOSE.SERVICE_RESTART, CLOSE.DRAINING]);

/** True for close codes after which the server does not want the client back. */
export function isNoRetryClose(code) {
  if (NO_RETRY_ALSO.includes(code)) return true;
  return code >= CLOSE.NO_RETRY_MIN && code <= CLOSE.NO_RETRY_MAX && !RETRY_IN_NO_RETRY_RANGE.includes(code);
}

/** True for close codes that ask for a quick reconnect (server going away, restarting or draining). */
export function isQuickReconnectClose(code) {
  return QUICK_RECONNECT.includes(code);
}

/** True for the codes a browser lets a page pass to `WebSocket#close`. */
export function canSendCloseCode(code) {
  return code === CLOSE.NORMAL || (code >= 3000 && code <= 4999);
}

/** Transport names, as reported by `RippleSocket#transport` and `statechange`. */
export const TRANSPORT = Object.freeze({
  WEBSOCKET: 'websocket',
  SSE: 'sse',
});

/** `readyState` values shared by WebSocket and the HTTP fallback. */
export const READY_STATE = Object.freeze({
  CONNECTING: 0,
  OPEN: 1,
  CLOSING: 2,
  CLOSED: 3,
});
