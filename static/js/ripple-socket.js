/**
 * Ripple's browser client: one connection per tab carrying any number of room
 * subscriptions (docs/protocol.md, protocol version 1). The API is documented
 * in docs/client.md.
 *
 * It keeps the connection alive with an application heartbeat, reconnects
 * with exponential backoff and full jitter, resumes every room from the last
 * `seq` it saw, drops duplicate messages, re-sends unacknowledged messages
 * with their original `client_id` so the server stores each one exactly once,
 * obeys the server's rate limits, keeps each room's member list, and falls
 * back to Server-Sent Events and POST where WebSocket does not get through.
 *
 * This file is the entry point pages and tests import; each concept lives in
 * its own module under ./ripple/:
 *   constants.js  frame types, error codes, close codes and the reconnect policy, states
 *   timer.js      the one timer mechanism: named timers (Schedule) and backoff (Timer)
 *   transport.js  WebSocket or the HTTP fallback, and the probe that moves back
 *   health.js     one GET /healthz: is the server down, or is WebSocket blocked?
 *   reconnect.js  failures, the delay before the next attempt, when to give up
 *   rooms.js      subscriptions: seq order, gap fill, rooms the server stops serving
 *   members.js    who is in a room
 *   outbox.js     messages until their ack: offline queue, pace, re-send
 *   frames.js     parsing frames and the errors they become
 *   connection.js one transport socket with the client's listeners
 *   heartbeat.js  the ping interval and its deadline; browser-signal listeners
 *   options.js    the defaults and the injectable browser objects
 *   socket.js     RippleSocket: the connection's life, tying the others together
 *
 * No dependencies and no build step.
 */

export {
  CLOSE,
  ERROR_CODE,
  FRAME,
  PROTOCOL_VERSION,
  STATE,
  TRANSPORT,
  isNoRetryClose,
  isQuickReconnectClose,
} from './ripple/constants.js';
export { RippleSocket } from './ripple/socket.js';
export { Schedule, Timer } from './ripple/timer.js';
export { socketUrl } from './ripple/transport.js';
