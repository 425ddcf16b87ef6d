/**
 * Ripple's browser client: one connection per tab carrying any number of room
 * subscriptions (docs/protocol.md, protocol version 1).
 *
 * It keeps the connection alive with an application heartbeat, reconnects
 * with exponential backoff and full jitter, resumes every room from the last
 * `seq` it saw, drops duplicate messages, and re-sends unacknowledged messages
 * with their original `client_id` so the server stores each one exactly once.
 * It also keeps each room's member list ("who is here") from
 * `subscribed.members` and the `presence` frames that follow.
 *
 * It obeys the server's limits: a frame refused with `rate_limited` is sent
 * again after `retry_after_ms` (nothing is lost), later messages wait behind
 * it, and when `welcome.limits` names the per-connection message bucket
 * (`messages_per_s`, `messages_burst`) messages never go out faster than it.
 * A room the server stops serving (`forbidden`, a `room_closed` frame, or an
 * `unsubscribed` frame with a `reason`) is forgotten.
 *
 * It chooses the transport itself: WebSocket first, and the HTTP fallback
 * (`SseSocket`: Server-Sent Events and POST, `./sse-socket.js`) when there is
 * no WebSocket, or when `fallbackAfterFailures` WebSocket attempts in a row
 * fail fast (closed before they open, within `fastFailureMs`). The choice is
 * kept for the tab in sessionStorage (`ripple.transport`), so a reload starts
 * on the fallback; while on it, a background WebSocket probe every
 * `wsRetryMs` moves the tab back as soon as a WebSocket gets its `welcome`.
 * The `transport` getter and every `statechange` say which one is in use.
 *
 * No dependencies and no build step. The only browser objects it touches are
 * `WebSocket`, `EventSource` and `fetch` (through SseSocket), `window`
 * (online/offline), `document` (visibilitychange), `navigator` (onLine) and
 * `sessionStorage`, all injectable through the constructor options.
 */

import { SseSocket } from './sse-socket.js';

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
 * `welcome`, `subscribed`, `unsubscribed`, `ack`, `error`, `presence`,
 * `deleted` and `room_closed` only from the server.
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
  ROOM_CLOSED: 'room_closed',
});

/** WebSocket close codes this client sends or acts on. */
export const CLOSE = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
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
  DISCONNECTED_BY_MODERATOR: 4403,
  HEARTBEAT_TIMEOUT: 4408, // nothing heard from the client for interval + timeout: reconnect
  TOO_MANY_CONNECTIONS: 4409,
  FLOODING: 4429,
  NO_RETRY_MIN: 4400,
  NO_RETRY_MAX: 4499,
  // Sent by the server: reconnect with backoff and resume.
  TRY_AGAIN_LATER: 4503, // the server's Redis is down
  TOO_SLOW: 4509, // this client fell behind the server's outbound limit
  // Sent by the server: restarting, reconnect quickly like 1001/1012.
  DRAINING: 4512,
});

/** Error codes of `error` frames this client acts on (others are passed on as they are). */
const ERROR_CODE = Object.freeze({
  ALREADY_SUBSCRIBED: 'already_subscribed',
  SERVER_ERROR: 'server_error',
  RATE_LIMITED: 'rate_limited',
  FORBIDDEN: 'forbidden',
  ROOM_CLOSED: 'room_closed',
});

const CLIENT_ID_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;
const CLIENT_ID_PREFIX_PATTERN = /^[A-Za-z0-9_.:-]{0,28}$/;
const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const WS_CONNECTING = 0;
const WS_OPEN = 1;

/** Transport names, as reported by `RippleSocket#transport` and `statechange`. */
export const TRANSPORT = Object.freeze({
  WEBSOCKET: 'websocket',
  SSE: 'sse',
});

// The sessionStorage key that keeps the tab's transport across reloads.
const TRANSPORT_STORAGE_KEY = 'ripple.transport';

// Rooms are `pending` from the moment a subscribe is owed or in flight until
// its `subscribed` arrives; live messages are only accepted while `active`.
const ROOM_PENDING = 'pending';
const ROOM_ACTIVE = 'active';

// `retry_after_ms` of a `rate_limited` error: used when it is missing, and its ceiling.
const RETRY_AFTER_DEFAULT_MS = 1000;
const RETRY_AFTER_MAX_MS = 60000;

const DEFAULTS = Object.freeze({
  backoffBaseMs: 500,
  backoffMaxMs: 30000,
  backoffFloorMs: 0,
  quickReconnectMs: 1000,
  maxAttempts: 20,
  stableAfterMs: 5000,
  connectTimeoutMs: 15000,
  maxQueue: 100,
  heartbeatIntervalMs: 20000,
  heartbeatTimeoutMs: 10000,
  clientIdPrefix: '',
  fallbackAfterFailures: 3,
  fastFailureMs: 3000,
  wsRetryMs: 60000,
});

/** True for close codes after which the server does not want the client back. */
export function isNoRetryClose(code) {
  if (code === CLOSE.POLICY_VIOLATION) return true;
  return code >= CLOSE.NO_RETRY_MIN && code <= CLOSE.NO_RETRY_MAX && code !== CLOSE.HEARTBEAT_TIMEOUT;
}

/** True for close codes that ask for a quick reconnect (server going away, restarting or draining). */
export function isQuickReconnectClose(code) {
  return code === CLOSE.GOING_AWAY || code === CLOSE.SERVICE_RESTART || code === CLOSE.DRAINING;
}

/**
 * A WebSocket URL for `path` (e.g. `/ws/chat/`) on the page's own host:
 * `wss:` under https, `ws:` otherwise. A ws:/wss: URL is returned as is.
 * `location` is passed in (window.location in a page) to keep this module DOM-free.
 */
export function socketUrl(path, location) {
  if (/^wss?:\/\//i.test(path)) return path;
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${path.startsWith('/') ? '' : '/'}${path}`;
}

/**
 * Reconnect delays with full jitter, and the single pending reconnect timeout.
 *
 * `delayFor(tries)` is `random() * min(maxMs, baseMs * 2 ** tries)`, raised to
 * `floorMs` (itself never above the cap). `schedule()` always replaces the
 * pending timeout, so there is never more than one.
 */
export class Timer {
  #callback;
  #handle = null;

  constructor(callback, { baseMs = 500, maxMs = 30000, floorMs = 0, random = Math.random } = {}) {
    this.#callback = callback;
    this.baseMs = baseMs;
    this.maxMs = maxMs;
    this.floorMs = floorMs;
    this.random = random;
  }

  /** Upper bound of the delay before retry number `tries` (0 for the first retry). */
  capFor(tries) {
    return Math.min(this.maxMs, this.baseMs * 2 ** Math.max(0, tries));
  }

  /** A jittered delay in [0, capFor(tries)]. */
  delayFor(tries) {
    const cap = this.capFor(tries);
    return Math.max(Math.min(this.floorMs, cap), this.random() * cap);
  }

  /** Arms the timeout for `delayMs`, replacing any pending one; returns `delayMs`. */
  schedule(delayMs) {
    this.cancel();
    this.#handle = globalThis.setTimeout(() => {
      this.#handle = null;
      this.#callback();
    }, delayMs);
    return delayMs;
  }

  cancel() {
    if (this.#handle !== null) {
      globalThis.clearTimeout(this.#handle);
      this.#handle = null;
    }
  }

  get pending() {
    return this.#handle !== null;
  }
}

// Member lists are shown sorted by name as a reader expects (case and accents
// second), then by exact name and id so the order is total.
const NAME_ORDER = new Intl.Collator(undefined, { sensitivity: 'base' });

function compareCodeUnits(a, b) {
  if (a < b) return -1;
  return a > b ? 1 : 0;
}

function compareMembers(a, b) {
  return NAME_ORDER.compare(a.name, b.name) || compareCodeUnits(a.name, b.name) || compareCodeUnits(a.id, b.id);
}

/** `{id, name}` from a frame, or null when it has no usable id; `name` is null when absent. */
function wireMember(raw) {
  if (raw === null || typeof raw !== 'object') return null;
  if (typeof raw.id !== 'string' || raw.id === '') return null;
  return { id: raw.id, name: typeof raw.name === 'string' ? raw.name : null };
}

function wireList(value) {
  return Array.isArray(value) ? value : [];
}

/**
 * Who is in one room, keyed by member id.
 *
 * The server's set holds (id, name) pairs, so for a few seconds after a guest
 * renames and reloads, one id can be there under both names, and the leave of
 * the old name must not remove the person. Each id therefore keeps the names
 * it is present under; the newest one is shown.
 */
class RoomMembers {
  // Maps member id to its names, oldest first; never holds an empty list.
  #names = new Map();

  constructor(list = []) {
    for (const raw of wireList(list)) {
      const member = wireMember(raw);
      if (member) this.#add(member);
    }
  }

  /** The member with `id` as shown, or null. */
  get(id) {
    const names = this.#names.get(id);
    return names ? { id, name: names.at(-1) } : null;
  }

  /** Every member as `{id, name}`, sorted by name then id. */
  list() {
    return Array.from(this.#names.keys(), (id) => this.get(id)).sort(compareMembers);
  }

  /**
   * Applies a `presence` frame's leaves, then its joins. Returns `{changed,
   * joins, leaves}`: who is newly listed, who is no longer listed (sorted), and
   * whether anything shown changed (a new name for a listed id counts).
   */
  apply(joins, leaves) {
    // Maps each id the frame names to how it was shown before.
    const before = new Map();
    const remember = (id) => {
      if (!before.has(id)) before.set(id, this.get(id));
    };
    for (const raw of wireList(leaves)) {
      const member = wireMember(raw);
      if (!member) continue;
      remember(member.id);
      this.#remove(member);
    }
    for (const raw of wireList(joins)) {
      const member = wireMember(raw);
      if (!member) continue;
      remember(member.id);
      this.#add(member);
    }
    const joined = [];
    const left = [];
    let renamed = false;
    for (const [id, was] of before) {
      const now = this.get(id);
      if (was === null && now !== null) joined.push(now);
      else if (was !== null && now === null) left.push(was);
      else if (was !== null && was.name !== now.name) renamed = true;
    }
    return {
      changed: renamed || joined.length > 0 || left.length > 0,
      joins: joined.sort(compareMembers),
      leaves: left.sort(compareMembers),
    };
  }

  /** A join without a name lists an unknown id under '' and leaves a known one as it is. */
  #add({ id, name }) {
    const names = this.#names.get(id) ?? [];
    if (name === null) {
      if (names.length === 0) this.#names.set(id, ['']);
      return;
    }
    this.#names.set(id, [...names.filter((known) => known !== name), name]);
  }

  /** A leave without a name removes the id under every name. */
  #remove({ id, name }) {
    const names = this.#names.get(id);
    if (!names) return;
    const rest = name === null ? [] : names.filter((known) => known !== name);
    if (rest.length === 0) this.#names.delete(id);
    else this.#names.set(id, rest);
  }
}

/**
 * An Error with a stable `code`. Client-side errors use the code as message;
 * errors from an `error` frame carry the server's message and the `frame`.
 */
function rippleError(code, message = code, extra = {}) {
  const error = new Error(message);
  error.code = code;
  return Object.assign(error, extra);
}

function reportListenerError(error) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(error);
  else console.error(error);
}

/** A frame from its JSON text: an object with a string `type`, or null. */
function parseFrame(text) {
  let frame;
  try {
    frame = JSON.parse(text);
  } catch {
    return null;
  }
  return frame !== null && typeof frame === 'object' && typeof frame.type === 'string' ? frame : null;
}

/** The wait a `rate_limited` error asks for, in ms: its `retry_after_ms`, bounded. */
function retryAfterOf(frame) {
  const ms = frame.retry_after_ms;
  if (!Number.isFinite(ms) || ms < 0) return RETRY_AFTER_DEFAULT_MS;
  return Math.min(ms, RETRY_AFTER_MAX_MS);
}

function canSendCloseCode(code) {
  return code === CLOSE.NORMAL || (code >= 3000 && code <= 4999);
}

/** A transport constructor's name: its static `transport` (SseSocket: 'sse'), else 'websocket'. */
function transportName(Socket) {
  return typeof Socket.transport === 'string' ? Socket.transport : TRANSPORT.WEBSOCKET;
}

/**
 * The transports to try, in order of preference, as `{name, Socket}`: the
 * `transports` option, or WebSocket then SseSocket where the environment has
 * them. Entries that are not constructors (a missing `WebSocket`) are left out.
 */
function pickTransports(options) {
  let list = options.transports;
  if (list === undefined || list === null) {
    list = [options.WebSocket ?? globalThis.WebSocket];
    if (SseSocket.supported(globalThis)) list.push(SseSocket);
  } else if (!Array.isArray(list)) {
    throw new TypeError('transports must be an array of constructors');
  }
  const picked = list.filter((Socket) => typeof Socket === 'function').map((Socket) => ({ name: transportName(Socket), Socket }));
  if (picked.length === 0) throw new TypeError('RippleSocket needs a WebSocket constructor (or a fallback transport)');
  return picked;
}

/** The browser's sessionStorage, or null where it is missing or refused (privacy settings). */
function defaultSessionStorage() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null;
  }
}

/**
 * The reconnecting Ripple client: `new RippleSocket(url, options)`.
 *
 * Options (all optional): `backoffBaseMs` (500), `backoffMaxMs` (30000) and
 * `backoffFloorMs` (0) shape the reconnect delays; `quickReconnectMs` (1000)
 * bounds the random delay after 1001, 1012 and 4512; `maxAttempts` (20)
 * consecutive failures end in `failed`; `stableAfterMs` (5000) of uptime
 * reset the attempt counter; `connectTimeoutMs` (15000) bounds the handshake;
 * `maxQueue` (100) messages may wait for their ack; `heartbeatIntervalMs`
 * (20000) and `heartbeatTimeoutMs` (10000) apply until `welcome` brings the
 * server's; `clientIdPrefix` ('') starts every generated client_id.
 *
 * Transport options: `transports` lists the constructors to use, in order of
 * preference (default: `WebSocket`, then `SseSocket` where `EventSource` and
 * `fetch` exist; a missing entry is skipped, so without WebSocket the first
 * connection uses the fallback); each is called as `new Socket(url)` with the
 * ws:/wss: URL and must behave like a WebSocket, and names itself with a
 * static `transport` (SseSocket: 'sse'; none: 'websocket').
 * `fallbackAfterFailures` (3) attempts in a row of the first transport that
 * close before they open, within `fastFailureMs` (3000) of their start, or
 * throw in the constructor, move the tab to the next one (failures while the
 * browser is offline do not count; any other outcome starts the count over).
 * The move is kept in sessionStorage (`ripple.transport`) for the tab. While
 * on a fallback, a probe of the first transport every `wsRetryMs` (60000)
 * opens a connection to the same URL and closes it after its `welcome`; once
 * one gets there, the tab moves back at once (the fallback connection is
 * closed with `CLOSE.CLIENT_TRANSPORT_SWITCH` and replaced after a random
 * delay below `quickReconnectMs`, like after 4512) and the stored choice is
 * removed. Reconnect delays and the attempt count carry on across a move.
 *
 * For tests and other hosts: `WebSocket` (the first default transport),
 * `window`, `document`, `navigator`, `sessionStorage` (null: keep nothing),
 * `crypto` and `random` replace the globals.
 *
 * Methods:
 * - `subscribe(room, {since, onMessage})`: join `room`; `since` is the last seq
 *   the page already shows. `onMessage(frame)` gets each new message once, in
 *   seq order. Subscribing again to the same room only replaces `onMessage`.
 * - `unsubscribe(room)`: leave `room`; its unacknowledged sends reject with
 *   code `unsubscribed`, and its member list is forgotten.
 * - `members(room)`: who is in `room`, as a new array of `{id, name}` sorted
 *   by name then id; empty for a room not subscribed. The list comes from the
 *   last `subscribed` and the `presence` frames since; while disconnected it
 *   is the last one known.
 * - `send(room, body, {clientId} = {})` returns `{clientId, acked}`: `acked` is
 *   a Promise that resolves with the server's `ack` frame, and rejects with an
 *   Error whose `code` is the server's error code (`error` frame for that
 *   client_id), or `closed` (`close()`, or a server "do not come back" close),
 *   `unsubscribed`, `forbidden` (the server stopped serving the room),
 *   `not_subscribed` (room never subscribed) or `queue_full` (more than
 *   `maxQueue` messages waiting for their ack). A `rate_limited` error does not
 *   reject: the message is sent again after `retry_after_ms`. Messages sent
 *   while not connected wait in the queue and go out after the room is
 *   re-subscribed, in order and no faster than `welcome.limits.messages_per_s`
 *   (after a first `messages_burst`); unacknowledged ones are sent again with
 *   the same client_id.
 * - `close()`: close for good; clears every timer and listener.
 * - `retry()`: after `failed` (or a server "do not come back" close), start
 *   over with the attempt counter reset; while waiting to reconnect, reconnect
 *   now. Does nothing while connecting or open.
 *
 * Getters: `state` (a STATE value), `stateDetail` (the last `statechange`
 * detail), `transport` (a TRANSPORT value: the transport of the connection
 * open or being attempted, or of the next attempt while reconnecting),
 * `rttMs` (last heartbeat round trip, or null), `welcome` (last `welcome`
 * frame, or null), `queued` (messages waiting for their ack).
 *
 * Events (all CustomEvent):
 * - `statechange`: detail `{state, attempt, maxAttempts, delayMs, transport,
 *   offline, code, reason}`; `attempt` is the number of the connection attempt
 *   in flight or scheduled (1 for the first), `delayMs` is set while a
 *   reconnect timer is pending and null otherwise (`offline: true` when
 *   waiting for the network), `transport` is the `transport` getter's value
 *   then, `code`/`reason` come from the close that caused the change.
 *   `closed` with `code` `CLOSE.SESSION_ENDED` (4401) means the
 *   session is gone: only a page reload helps, `retry()` would come back as a
 *   guest.
 * - `open`, `welcome` (frame), `subscribed` (frame), `message` (frame),
 *   `ack` (frame), `error` (error frame), `pong` (`{rttMs, frame}`),
 *   `reset` (`{room}`: the server could not resume, history has a hole),
 *   `presence` (`{room, members, joins, leaves}`: after every `subscribed`,
 *   with empty `joins` and `leaves`, and whenever a `presence` frame changes
 *   the list; `members` is `members(room)` after the change, `joins` and
 *   `leaves` who became listed or unlisted, sorted like it),
 *   `giveup` (`{attempt, code}`: `maxAttempts` consecutive failures),
 *   `ratelimited` (`{room, clientId, retryAfterMs, frame}`: the server refused
 *   a frame over its rate limits; a message (`clientId` set) or a subscribe is
 *   sent again after `retryAfterMs`; `room` and `clientId` are null when the
 *   frame did not name them), `unsubscribed` (`{room, reason, code}`: the
 *   server will not serve `room` any more and it is forgotten, never after the
 *   page's own `unsubscribe()`: `reason` is the server's (`access_revoked`,
 *   `room_closed`) or the subscribe's error code, `code` the one its waiting
 *   sends reject with), `deleted` (`{room, seqs}`: a moderator deleted these
 *   messages of a subscribed room; show them as gone).
 *   An `error` event still fires for every error frame, `rate_limited` too.
 */
export class RippleSocket extends EventTarget {
  #url;
  // The transports to use, in order of preference, as {name, Socket}.
  #transports;
  // Index in #transports of the one in use (or next to be used).
  #transportIndex = 0;
  #storage;
  #window;
  #document;
  #navigator;
  #crypto;
  #random;
  #options;
  #timer;

  #state = STATE.CONNECTING;
  #stateDetail = null;
  #ws = null;
  #detachSocket = null;
  #detachEnvironment = null;
  #generation = 0;
  #failures = 0;
  #offline = false;
  #closedByPage = false;
  #refCounter = 0;

  // When the current connection attempt started (Date.now() ms), and how many
  // attempts of the first transport in a row failed fast.
  #attemptStartedAt = 0;
  #fastFailures = 0;
  // The background connection that checks whether the first transport gets
  // through again, as {socket, detach, deadline} while one is out; #probeTimer
  // holds the wait before the next one.
  #probe = null;
  #probeTimer;

  #heartbeatIntervalMs;
  #heartbeatTimeoutMs;
  // Handles of the timers tied to the current socket: `heartbeat` (interval),
  // `pong` (deadline after a ping), `stable` (resets the attempt counter),
  // `connect` (deadline for the handshake), `outbox` (messages held back by a
  // rate limit or the send pace), `subscribe` (subscribes refused by a rate
  // limit). The reconnect timeout lives in #timer.
  #timers = { heartbeat: null, pong: null, stable: null, connect: null, outbox: null, subscribe: null };
  // When the `outbox` and `subscribe` timers fire (Date.now() ms), while armed.
  #dueAt = { outbox: 0, subscribe: 0 };
  #rttMs = null;
  #welcome = null;

  // The per-connection message bucket from welcome.limits, as {perS, burst},
  // or null when the server named none; the client's copy of its tokens.
  #sendRate = null;
  #tokens = 0;
  #tokensAt = 0;

  // Maps room slug to {since, lastSeq, onMessage, status, ref, members,
  // retrySubscribe}; `retrySubscribe` marks a subscribe refused by a rate limit.
  #rooms = new Map();
  // Maps client_id to {frame, resolve, reject, sentGeneration}, in send order;
  // holds every message not yet acknowledged, sent or not.
  #outbox = new Map();

  constructor(url, options = {}) {
    super();
    const picked = { ...DEFAULTS };
    for (const key of Object.keys(DEFAULTS)) {
      if (options[key] !== undefined && options[key] !== null) picked[key] = options[key];
    }
    if (!CLIENT_ID_PREFIX_PATTERN.test(picked.clientIdPrefix)) {
      throw new TypeError('clientIdPrefix must be at most 28 of A-Z a-z 0-9 _ - . :');
    }
    this.#options = picked;
    this.#url = url;
    this.#transports = pickTransports(options);
    this.#storage = options.sessionStorage !== undefined ? options.sessionStorage : defaultSessionStorage();
    this.#window = options.window !== undefined ? options.window : (globalThis.window ?? null);
    this.#document = options.document !== undefined ? options.document : (globalThis.document ?? null);
    this.#navigator = options.navigator !== undefined ? options.navigator : (globalThis.navigator ?? null);
    this.#crypto = options.crypto !== undefined ? options.crypto : (globalThis.crypto ?? null);
    this.#random = options.random ?? Math.random;
    this.#heartbeatIntervalMs = picked.heartbeatIntervalMs;
    this.#heartbeatTimeoutMs = picked.heartbeatTimeoutMs;
    this.#timer = new Timer(() => this.#connect(), {
      baseMs: picked.backoffBaseMs,
      maxMs: picked.backoffMaxMs,
      floorMs: picked.backoffFloorMs,
      random: this.#random,
    });
    this.#probeTimer = new Timer(() => this.#startProbe());
    this.#transportIndex = this.#rememberedTransport();
    this.#start();
  }

  get state() {
    return this.#state;
  }

  /** The detail of the last `statechange`, for a page that starts listening late. */
  get stateDetail() {
    return { ...this.#stateDetail };
  }

  /** The transport in use, or about to be: a TRANSPORT value ('websocket' or 'sse'). */
  get transport() {
    return this.#transports[this.#transportIndex].name;
  }

  get rttMs() {
    return this.#rttMs;
  }

  get welcome() {
    return this.#welcome;
  }

  get queued() {
    return this.#outbox.size;
  }

  subscribe(room, { since = null, onMessage = null } = {}) {
    if (typeof room !== 'string' || room === '') throw new TypeError('room must be a non-empty string');
    if (since !== null && !(Number.isInteger(since) && since >= 0)) {
      throw new TypeError('since must be an integer >= 0');
    }
    if (this.#closedByPage) throw rippleError('closed');
    const existing = this.#rooms.get(room);
    if (existing) {
      if (onMessage) existing.onMessage = onMessage;
      return;
    }
    const entry = {
      since,
      lastSeq: since,
      onMessage,
      status: ROOM_PENDING,
      ref: null,
      members: new RoomMembers(),
      retrySubscribe: false,
    };
    this.#rooms.set(room, entry);
    if (this.#state === STATE.OPEN) this.#sendSubscribe(room, entry);
  }

  members(room) {
    return this.#rooms.get(room)?.members.list() ?? [];
  }

  unsubscribe(room) {
    if (!this.#rooms.delete(room)) return;
    if (this.#state === STATE.OPEN) this.#sendFrame({ type: FRAME.UNSUBSCRIBE, room });
    this.#rejectOutbox(rippleError('unsubscribed'), room);
  }

  send(room, body, { clientId = null } = {}) {
    if (typeof body !== 'string') throw new TypeError('body must be a string');
    if (clientId !== null && !CLIENT_ID_PATTERN.test(clientId)) {
      throw new TypeError('clientId must be 1-64 of A-Z a-z 0-9 _ - . :');
    }
    const id = clientId ?? this.#newClientId();
    let resolve;
    let reject;
    const acked = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A page that ignores `acked` must not get an unhandled rejection on close().
    acked.catch(() => {});
    const result = { clientId: id, acked };

    if (this.#closedByPage || this.#state === STATE.CLOSED) {
      reject(rippleError('closed'));
    } else if (!this.#rooms.has(room)) {
      reject(rippleError('not_subscribed'));
    } else if (this.#outbox.has(id)) {
      reject(rippleError('duplicate_client_id'));
    } else if (this.#outbox.size >= this.#options.maxQueue) {
      reject(rippleError('queue_full'));
    } else {
      const entry = {
        frame: { type: FRAME.MESSAGE, room, body, client_id: id },
        resolve,
        reject,
        sentGeneration: 0,
      };
      this.#outbox.set(id, entry);
      this.#pumpOutbox();
    }
    return result;
  }

  close() {
    if (this.#closedByPage) return;
    this.#closedByPage = true;
    this.#teardown(CLOSE.NORMAL, 'page closed');
    this.#rooms.clear();
    this.#rejectOutbox(rippleError('closed'));
    this.#setState(STATE.CLOSED, { code: CLOSE.NORMAL, reason: 'page closed' });
  }

  retry() {
    if (this.#closedByPage) return;
    if (this.#state === STATE.FAILED || this.#state === STATE.CLOSED) {
      this.#failures = 0;
      this.#start();
    } else if (this.#state === STATE.RECONNECTING) {
      this.#connect();
    }
  }

  // --- connection lifecycle -------------------------------------------------

  #start() {
    this.#attachEnvironment();
    this.#armProbe();
    this.#offline = this.#navigator?.onLine === false;
    if (this.#offline) this.#setState(STATE.RECONNECTING, { offline: true });
    else this.#connect();
  }

  /** The only place a socket is created; a no-op while one exists (the reconnect lock). */
  #connect() {
    if (this.#ws !== null || this.#closedByPage) return;
    this.#timer.cancel();
    this.#attemptStartedAt = Date.now();
    let ws;
    try {
      ws = new this.#transports[this.#transportIndex].Socket(this.#url);
    } catch (error) {
      this.#setState(STATE.CONNECTING);
      this.#afterDrop(CLOSE.ABNORMAL, String(error?.message ?? error), { beforeOpen: true });
      return;
    }
    this.#ws = ws;
    this.#generation += 1;
    const handlers = {
      open: () => ws === this.#ws && this.#onOpen(),
      message: (event) => ws === this.#ws && this.#onFrame(event.data),
      error: () => ws === this.#ws && this.#drop(CLOSE.ABNORMAL, 'error'),
      close: (event) => ws === this.#ws && this.#drop(event.code ?? CLOSE.ABNORMAL, event.reason ?? ''),
    };
    for (const [type, handler] of Object.entries(handlers)) ws.addEventListener(type, handler);
    this.#detachSocket = () => {
      for (const [type, handler] of Object.entries(handlers)) ws.removeEventListener(type, handler);
    };
    this.#armTimeout('connect', this.#options.connectTimeoutMs, () => {
      this.#drop(CLOSE.CLIENT_CONNECT_TIMEOUT, 'connect timeout');
    });
    this.#setState(STATE.CONNECTING);
  }

  #onOpen() {
    const ws = this.#ws;
    this.#clearTimer('connect');
    // Only a socket that stays up this long proves the server is back; one
    // that is accepted and then dropped keeps counting as a failure.
    this.#armTimeout('stable', this.#options.stableAfterMs, () => {
      this.#failures = 0;
    });
    this.#startHeartbeat();
    for (const [room, entry] of this.#rooms) this.#sendSubscribe(room, entry);
    this.#setState(STATE.OPEN);
    if (ws === this.#ws) this.dispatchEvent(new CustomEvent('open'));
  }

  /** Abandons the current socket (whatever its state) and decides what comes next. */
  #drop(code, reason) {
    if (this.#ws === null) return;
    const beforeOpen = this.#state === STATE.CONNECTING;
    this.#releaseSocket(code, reason);
    this.#afterDrop(code, reason, { beforeOpen });
  }

  /** `beforeOpen`: the connection never opened (or its constructor threw). */
  #afterDrop(code, reason, { beforeOpen = false } = {}) {
    this.#countFastFailure(beforeOpen);
    if (isNoRetryClose(code)) {
      this.#teardown(code, reason);
      this.#rejectOutbox(rippleError('closed', 'closed', { closeCode: code }));
      this.#setState(STATE.CLOSED, { code, reason });
      return;
    }
    if (isQuickReconnectClose(code)) {
      this.#scheduleReconnect(this.#random() * this.#options.quickReconnectMs, code, reason);
      return;
    }
    this.#failures += 1;
    if (this.#failures >= this.#options.maxAttempts) {
      this.#teardown(code, reason);
      this.#setState(STATE.FAILED, { code, reason });
      this.dispatchEvent(new CustomEvent('giveup', { detail: { attempt: this.#failures, code, reason } }));
      return;
    }
    this.#scheduleReconnect(this.#timer.delayFor(this.#failures - 1), code, reason);
  }

  #scheduleReconnect(delayMs, code, reason) {
    // An `offline` event may have fired before this page listened.
    if (this.#navigator?.onLine === false) this.#offline = true;
    if (this.#offline) {
      this.#timer.cancel();
      this.#setState(STATE.RECONNECTING, { offline: true, code, reason });
      return;
    }
    this.#timer.schedule(delayMs);
    this.#setState(STATE.RECONNECTING, { delayMs, code, reason });
  }

  /** Forgets the current socket: listeners off, its timers cleared, closed if still up. */
  #releaseSocket(code, reason) {
    const ws = this.#ws;
    if (ws === null) return;
    this.#ws = null;
    this.#detachSocket();
    this.#detachSocket = null;
    for (const key of Object.keys(this.#timers)) this.#clearTimer(key);
    for (const entry of this.#rooms.values()) {
      entry.status = ROOM_PENDING;
      entry.ref = null;
      entry.retrySubscribe = false;
    }
    if (ws.readyState === WS_CONNECTING || ws.readyState === WS_OPEN) {
      try {
        if (canSendCloseCode(code)) ws.close(code, reason);
        else ws.close();
      } catch {
        // The socket is gone either way.
      }
    }
  }

  /** Clears every timer and removes every listener this object added. */
  #teardown(code, reason) {
    this.#releaseSocket(code, reason);
    this.#timer.cancel();
    for (const key of Object.keys(this.#timers)) this.#clearTimer(key);
    this.#stopProbe();
    if (this.#detachEnvironment) {
      this.#detachEnvironment();
      this.#detachEnvironment = null;
    }
  }

  // --- transport choice -------------------------------------------------------

  /** The index of the transport this tab moved to earlier (sessionStorage), else 0. */
  #rememberedTransport() {
    let name = null;
    try {
      name = this.#storage?.getItem(TRANSPORT_STORAGE_KEY) ?? null;
    } catch {
      name = null;
    }
    const index = this.#transports.findIndex((transport) => transport.name === name);
    return index > 0 ? index : 0;
  }

  /** Uses transport `index` from the next connection on, and keeps the choice for the tab. */
  #useTransport(index) {
    this.#transportIndex = index;
    this.#fastFailures = 0;
    try {
      if (index === 0) this.#storage?.removeItem(TRANSPORT_STORAGE_KEY);
      else this.#storage?.setItem(TRANSPORT_STORAGE_KEY, this.#transports[index].name);
    } catch {
      // Storage full or refused: the choice lasts as long as this object.
    }
  }

  /**
   * Counts an attempt of the first transport that closed before it opened,
   * soon after it started; enough in a row move the tab to the next transport.
   */
  #countFastFailure(beforeOpen) {
    if (this.#transportIndex !== 0 || this.#transports.length < 2) return;
    // With the network down, every transport fails: that says nothing about this one.
    if (this.#offline || this.#navigator?.onLine === false) return;
    const fast = beforeOpen && Date.now() - this.#attemptStartedAt < this.#options.fastFailureMs;
    if (!fast) {
      this.#fastFailures = 0;
      return;
    }
    this.#fastFailures += 1;
    if (this.#fastFailures < this.#options.fallbackAfterFailures) return;
    this.#useTransport(1);
    this.#armProbe();
  }

  /** While on a fallback, schedules the next probe of the first transport (unless one is due or out). */
  #armProbe() {
    if (this.#transportIndex === 0 || this.#closedByPage || this.#probe !== null || this.#probeTimer.pending) return;
    this.#probeTimer.schedule(this.#options.wsRetryMs);
  }

  /**
   * Opens a background connection with the first transport, to the same URL.
   * Its `welcome` proves the transport gets through: it is closed at once and
   * the tab moves back. Anything else (an error, a close, no welcome within
   * `connectTimeoutMs`) waits for the next probe.
   */
  #startProbe() {
    if (this.#transportIndex === 0 || this.#closedByPage || this.#probe !== null) return;
    if (this.#navigator?.onLine === false) {
      this.#armProbe();
      return;
    }
    let socket;
    try {
      socket = new this.#transports[0].Socket(this.#url);
    } catch {
      this.#armProbe();
      return;
    }
    const probe = { socket, detach: null, deadline: null };
    const finish = (welcomed) => {
      if (this.#probe !== probe) return;
      this.#stopProbe();
      if (welcomed) this.#leaveFallback();
      else this.#armProbe();
    };
    const handlers = {
      message: (event) => {
        const frame = typeof event.data === 'string' ? parseFrame(event.data) : null;
        if (frame?.type === FRAME.WELCOME) finish(true);
      },
      error: () => finish(false),
      close: () => finish(false),
    };
    for (const [type, handler] of Object.entries(handlers)) socket.addEventListener(type, handler);
    probe.detach = () => {
      for (const [type, handler] of Object.entries(handlers)) socket.removeEventListener(type, handler);
    };
    probe.deadline = globalThis.setTimeout(() => {
      probe.deadline = null;
      finish(false);
    }, this.#options.connectTimeoutMs);
    this.#probe = probe;
  }

  /** Ends the probe out, if any (listeners off, deadline cleared, socket closed), and the wait for the next. */
  #stopProbe() {
    this.#probeTimer.cancel();
    const probe = this.#probe;
    if (probe === null) return;
    this.#probe = null;
    probe.detach();
    if (probe.deadline !== null) globalThis.clearTimeout(probe.deadline);
    const { socket } = probe;
    if (socket.readyState === WS_CONNECTING || socket.readyState === WS_OPEN) {
      try {
        socket.close(CLOSE.NORMAL, 'probe done');
      } catch {
        // The probe is gone either way.
      }
    }
  }

  /** The first transport gets through again: move the tab back to it at once. */
  #leaveFallback() {
    this.#useTransport(0);
    if (this.#closedByPage || this.#state === STATE.CLOSED || this.#state === STATE.FAILED) return;
    const code = CLOSE.CLIENT_TRANSPORT_SWITCH;
    const reason = `${this.transport} is back`;
    if (this.#ws !== null) this.#releaseSocket(code, reason);
    // Like a 4512: no failure counted, a random delay spreads the tabs out.
    this.#scheduleReconnect(this.#random() * this.#options.quickReconnectMs, code, reason);
  }

  #attachEnvironment() {
    if (this.#detachEnvironment) return;
    const added = [];
    const listen = (target, type, handler) => {
      if (!target || typeof target.addEventListener !== 'function') return;
      target.addEventListener(type, handler);
      added.push([target, type, handler]);
    };
    listen(this.#window, 'online', () => this.#onOnline());
    listen(this.#window, 'offline', () => this.#onOffline());
    listen(this.#document, 'visibilitychange', () => this.#onVisibilityChange());
    this.#detachEnvironment = () => {
      for (const [target, type, handler] of added) target.removeEventListener(type, handler);
    };
  }

  #onOnline() {
    this.#offline = false;
    if (this.#state === STATE.RECONNECTING) this.#connect();
    else if (this.#state === STATE.OPEN) this.#ping();
  }

  #onOffline() {
    this.#offline = true;
    if (this.#state === STATE.RECONNECTING) {
      this.#timer.cancel();
      this.#setState(STATE.RECONNECTING, { offline: true });
    } else if (this.#state === STATE.OPEN) {
      // The socket may survive a short outage; the pong deadline decides.
      this.#ping();
    }
  }

  #onVisibilityChange() {
    if (this.#document?.visibilityState === 'visible' && this.#state === STATE.OPEN) this.#ping();
  }

  // --- heartbeat ------------------------------------------------------------

  #startHeartbeat() {
    this.#clearTimer('heartbeat');
    this.#timers.heartbeat = globalThis.setInterval(() => this.#ping(), this.#heartbeatIntervalMs);
  }

  #ping() {
    if (!this.#sendFrame({ type: FRAME.PING, t: Date.now() })) return;
    if (this.#timers.pong !== null) return;
    this.#armTimeout('pong', this.#heartbeatTimeoutMs, () => {
      this.#drop(CLOSE.CLIENT_HEARTBEAT_TIMEOUT, 'heartbeat timeout');
    });
  }

  #armTimeout(key, delayMs, callback) {
    this.#clearTimer(key);
    this.#timers[key] = globalThis.setTimeout(() => {
      this.#timers[key] = null;
      callback();
    }, delayMs);
  }

  /** Arms `key` to fire in `delayMs`, unless it is already armed to fire later. */
  #armNoSooner(key, delayMs, callback) {
    const dueAt = Date.now() + delayMs;
    if (this.#timers[key] !== null && this.#dueAt[key] >= dueAt) return;
    this.#dueAt[key] = dueAt;
    this.#armTimeout(key, delayMs, callback);
  }

  #clearTimer(key) {
    const handle = this.#timers[key];
    if (handle === null) return;
    this.#timers[key] = null;
    if (key === 'heartbeat') globalThis.clearInterval(handle);
    else globalThis.clearTimeout(handle);
  }

  // --- frames ---------------------------------------------------------------

  #sendFrame(frame) {
    const ws = this.#ws;
    if (ws === null || ws.readyState !== WS_OPEN) return false;
    try {
      ws.send(JSON.stringify(frame));
    } catch {
      return false;
    }
    return true;
  }

  #sendSubscribe(room, entry) {
    entry.status = ROOM_PENDING;
    entry.ref = `s${++this.#refCounter}`;
    const frame = { type: FRAME.SUBSCRIBE, room, ref: entry.ref };
    if (entry.lastSeq !== null) frame.since = entry.lastSeq;
    this.#sendFrame(frame);
  }

  #sendEntry(entry) {
    if (this.#sendFrame(entry.frame)) entry.sentGeneration = this.#generation;
  }

  /**
   * Sends every waiting message of the subscribed rooms, in send order: queued
   * ones, ones not acknowledged on an earlier socket, and ones refused by a
   * rate limit. While the `outbox` timer is armed (a rate limit's wait, or the
   * pace of the message bucket) everything waits for it, so order is kept.
   */
  #pumpOutbox() {
    if (this.#state !== STATE.OPEN || this.#timers.outbox !== null) return;
    for (const entry of this.#outbox.values()) {
      if (entry.sentGeneration === this.#generation) continue;
      if (this.#rooms.get(entry.frame.room)?.status !== ROOM_ACTIVE) continue;
      const waitMs = this.#takeToken();
      if (waitMs > 0) {
        this.#armNoSooner('outbox', waitMs, () => this.#pumpOutbox());
        return;
      }
      this.#sendEntry(entry);
    }
  }

  /** Takes a token from the client's copy of the message bucket: 0, or the ms until one is free. */
  #takeToken() {
    const rate = this.#sendRate;
    if (rate === null) return 0;
    const now = Date.now();
    this.#tokens = Math.min(rate.burst, this.#tokens + (Math.max(0, now - this.#tokensAt) * rate.perS) / 1000);
    this.#tokensAt = now;
    // The epsilon absorbs rounding in the refill, so a wait of exactly one interval suffices.
    if (this.#tokens >= 1 - 1e-9) {
      this.#tokens = Math.max(0, this.#tokens - 1);
      return 0;
    }
    return Math.ceil(((1 - this.#tokens) * 1000) / rate.perS);
  }

  #refillTokens() {
    this.#tokens = this.#sendRate?.burst ?? 0;
    this.#tokensAt = Date.now();
  }

  #rejectOutbox(error, room = null) {
    for (const [clientId, entry] of this.#outbox) {
      if (room !== null && entry.frame.room !== room) continue;
      this.#outbox.delete(clientId);
      entry.reject(error);
    }
  }

  #onFrame(data) {
    // Any frame at all proves the socket is alive.
    this.#clearTimer('pong');
    if (typeof data !== 'string') return;
    const frame = parseFrame(data);
    if (frame === null) return;
    switch (frame.type) {
      case FRAME.WELCOME:
        return this.#onWelcome(frame);
      case FRAME.PING:
        this.#sendFrame({ type: FRAME.PONG, t: frame.t ?? null });
        return;
      case FRAME.PONG:
        return this.#onPong(frame);
      case FRAME.SUBSCRIBED:
        return this.#onSubscribed(frame);
      case FRAME.MESSAGE:
        return this.#onMessage(frame);
      case FRAME.ACK:
        return this.#onAck(frame);
      case FRAME.ERROR:
        return this.#onError(frame);
      case FRAME.PRESENCE:
        return this.#onPresence(frame);
      case FRAME.UNSUBSCRIBED:
        return this.#onUnsubscribed(frame);
      case FRAME.DELETED:
        if (this.#rooms.has(frame.room) && Array.isArray(frame.seqs)) {
          this.dispatchEvent(new CustomEvent('deleted', { detail: { room: frame.room, seqs: frame.seqs } }));
        }
        return;
      case FRAME.ROOM_CLOSED:
        return this.#onRoomClosed(frame);
      default:
        // Unknown types need no action.
        return;
    }
  }

  #onWelcome(frame) {
    this.#welcome = frame;
    if (Number.isFinite(frame.heartbeat_interval_ms) && frame.heartbeat_interval_ms > 0) {
      this.#heartbeatIntervalMs = frame.heartbeat_interval_ms;
    }
    if (Number.isFinite(frame.heartbeat_timeout_ms) && frame.heartbeat_timeout_ms > 0) {
      this.#heartbeatTimeoutMs = frame.heartbeat_timeout_ms;
    }
    const limits = frame.limits ?? {};
    if (Number.isFinite(limits.messages_per_s) && limits.messages_per_s > 0) {
      const burst = Number.isFinite(limits.messages_burst) ? Math.floor(limits.messages_burst) : 1;
      this.#sendRate = { perS: limits.messages_per_s, burst: Math.max(1, burst) };
    } else {
      this.#sendRate = null;
    }
    // Every socket starts with a full bucket on the server; welcome comes first on each.
    this.#refillTokens();
    this.#startHeartbeat();
    this.dispatchEvent(new CustomEvent('welcome', { detail: frame }));
  }

  #onPong(frame) {
    if (typeof frame.t === 'number') this.#rttMs = Math.max(0, Date.now() - frame.t);
    this.dispatchEvent(new CustomEvent('pong', { detail: { rttMs: this.#rttMs, frame } }));
  }

  #onSubscribed(frame) {
    const room = frame.room;
    const entry = this.#rooms.get(room);
    if (!entry || entry.status !== ROOM_PENDING) return;
    // A stale reply (to a subscribe made before an unsubscribe) carries an older ref.
    if (frame.ref !== undefined && frame.ref !== null && frame.ref !== entry.ref) return;
    entry.status = ROOM_ACTIVE;
    // A fresh list on every (re)subscribe: changes missed meanwhile are in it.
    entry.members = new RoomMembers(frame.members);
    if (frame.complete === false) {
      entry.lastSeq = null;
      this.dispatchEvent(new CustomEvent('reset', { detail: { room } }));
    }
    for (const message of Array.isArray(frame.messages) ? frame.messages : []) {
      if (this.#rooms.get(room) !== entry || entry.status !== ROOM_ACTIVE) return;
      if (!Number.isInteger(message?.seq)) continue;
      if (entry.lastSeq !== null && message.seq <= entry.lastSeq) continue;
      entry.lastSeq = message.seq;
      this.#deliver(entry, message);
    }
    if (this.#rooms.get(room) !== entry) return;
    if (Number.isInteger(frame.last_seq) && (entry.lastSeq === null || frame.last_seq > entry.lastSeq)) {
      entry.lastSeq = frame.last_seq;
    }
    this.dispatchEvent(new CustomEvent('subscribed', { detail: frame }));
    if (this.#rooms.get(room) === entry && entry.status === ROOM_ACTIVE) this.#dispatchPresence(room, entry, [], []);
    if (this.#rooms.get(room) === entry && entry.status === ROOM_ACTIVE) this.#pumpOutbox();
  }

  #onPresence(frame) {
    const entry = this.#rooms.get(frame.room);
    // Before `subscribed` the changes are already in the list it brings.
    if (!entry || entry.status !== ROOM_ACTIVE) return;
    const change = entry.members.apply(frame.joins, frame.leaves);
    if (change.changed) this.#dispatchPresence(frame.room, entry, change.joins, change.leaves);
  }

  #dispatchPresence(room, entry, joins, leaves) {
    const detail = { room, members: entry.members.list(), joins, leaves };
    this.dispatchEvent(new CustomEvent('presence', { detail }));
  }

  #onMessage(frame) {
    const entry = this.#rooms.get(frame.room);
    if (!entry || entry.status !== ROOM_ACTIVE || !Number.isInteger(frame.seq)) return;
    if (entry.lastSeq !== null) {
      if (frame.seq <= entry.lastSeq) return;
      if (frame.seq > entry.lastSeq + 1) {
        this.#resubscribe(frame.room, entry);
        return;
      }
    }
    entry.lastSeq = frame.seq;
    this.#deliver(entry, frame);
  }

  /** A gap in seq: subscribe again from the last seq seen; the reply fills the gap. */
  #resubscribe(room, entry) {
    this.#sendFrame({ type: FRAME.UNSUBSCRIBE, room });
    this.#sendSubscribe(room, entry);
  }

  #deliver(entry, frame) {
    if (typeof entry.onMessage === 'function') {
      try {
        entry.onMessage(frame);
      } catch (error) {
        reportListenerError(error);
      }
    }
    this.dispatchEvent(new CustomEvent('message', { detail: frame }));
  }

  #onAck(frame) {
    const entry = this.#outbox.get(frame.client_id);
    if (entry) {
      this.#outbox.delete(frame.client_id);
      entry.resolve(frame);
    }
    this.dispatchEvent(new CustomEvent('ack', { detail: frame }));
  }

  #onError(frame) {
    const rateLimited = frame.code === ERROR_CODE.RATE_LIMITED;
    const retryAfterMs = rateLimited ? retryAfterOf(frame) : null;
    const entry = typeof frame.client_id === 'string' ? this.#outbox.get(frame.client_id) : undefined;
    if (entry && rateLimited) {
      this.#onMessageRateLimited(entry, retryAfterMs);
    } else if (entry) {
      this.#outbox.delete(frame.client_id);
      entry.reject(rippleError(frame.code ?? 'error', frame.message ?? frame.code ?? 'error', { frame }));
    } else if (frame.ref !== undefined && frame.ref !== null) {
      for (const [room, roomEntry] of this.#rooms) {
        if (roomEntry.ref === frame.ref && roomEntry.status === ROOM_PENDING) {
          this.#onSubscribeError(room, roomEntry, frame, retryAfterMs);
          break;
        }
      }
    }
    if (rateLimited) {
      const detail = {
        room: typeof frame.room === 'string' ? frame.room : null,
        clientId: typeof frame.client_id === 'string' ? frame.client_id : null,
        retryAfterMs,
        frame,
      };
      this.dispatchEvent(new CustomEvent('ratelimited', { detail }));
    }
    this.dispatchEvent(new CustomEvent('error', { detail: frame }));
  }

  /**
   * The server stored nothing: the message stays in the outbox and goes out
   * again after the wait, with every later one behind it.
   */
  #onMessageRateLimited(entry, retryAfterMs) {
    entry.sentGeneration = 0;
    // The server's bucket is empty: after the wait, send at its pace, not in a burst.
    this.#tokens = 0;
    this.#tokensAt = Date.now();
    this.#armNoSooner('outbox', retryAfterMs, () => this.#pumpOutbox());
  }

  #onSubscribeError(room, entry, frame, retryAfterMs) {
    if (frame.code === ERROR_CODE.ALREADY_SUBSCRIBED) {
      // The server still holds the old subscription: leave it and join again.
      this.#resubscribe(room, entry);
    } else if (frame.code === ERROR_CODE.SERVER_ERROR) {
      // Transient (e.g. database down): reconnecting with backoff retries every room.
      this.#drop(CLOSE.CLIENT_SUBSCRIBE_FAILED, 'subscribe failed');
    } else if (frame.code === ERROR_CODE.RATE_LIMITED) {
      entry.retrySubscribe = true;
      this.#armNoSooner('subscribe', retryAfterMs, () => this.#retrySubscribes());
    } else {
      // Refused for good (`forbidden`, `room_closed`, `invalid_room`, ...).
      const code = frame.code ?? 'error';
      this.#endRoom(room, rippleError(code, frame.message ?? 'subscribe failed', { frame }), code);
    }
  }

  #retrySubscribes() {
    for (const [room, entry] of this.#rooms) {
      if (!entry.retrySubscribe) continue;
      entry.retrySubscribe = false;
      this.#sendSubscribe(room, entry);
    }
  }

  /**
   * The server ended a subscription on its own (membership revoked). A reply
   * to this client's own `unsubscribe` carries no `reason` and needs no action.
   */
  #onUnsubscribed(frame) {
    if (typeof frame.reason !== 'string' || frame.reason === '' || !this.#rooms.has(frame.room)) return;
    const error = rippleError(ERROR_CODE.FORBIDDEN, `unsubscribed by the server: ${frame.reason}`, { frame });
    this.#endRoom(frame.room, error, frame.reason);
  }

  /** A moderator closed the room: no longer subscribed, and not re-subscribed after a reconnect. */
  #onRoomClosed(frame) {
    if (!this.#rooms.has(frame.room)) return;
    const error = rippleError(ERROR_CODE.ROOM_CLOSED, frame.reason || 'the room was closed', { frame });
    this.#endRoom(frame.room, error, 'room_closed');
  }

  /** Forgets a room the server will not serve (no re-subscribe); its waiting sends reject with `error`. */
  #endRoom(room, error, reason) {
    this.#rooms.delete(room);
    this.#rejectOutbox(error, room);
    this.dispatchEvent(new CustomEvent('unsubscribed', { detail: { room, reason, code: error.code } }));
  }

  // --- helpers ----------------------------------------------------------------

  #newClientId() {
    let id = null;
    try {
      id = this.#crypto?.randomUUID?.() ?? null;
    } catch {
      id = null;
    }
    if (id === null) {
      id = '';
      for (let i = 0; i < 32; i += 1) {
        id += ID_ALPHABET[Math.floor(this.#random() * ID_ALPHABET.length) % ID_ALPHABET.length];
      }
    }
    return this.#options.clientIdPrefix + id;
  }

  #setState(state, extra = {}) {
    this.#state = state;
    const detail = {
      state,
      attempt: state === STATE.FAILED ? this.#failures : this.#failures + 1,
      maxAttempts: this.#options.maxAttempts,
      delayMs: null,
      transport: this.transport,
      offline: false,
      code: null,
      reason: null,
      ...extra,
    };
    this.#stateDetail = detail;
    this.dispatchEvent(new CustomEvent('statechange', { detail: { ...detail } }));
  }
}
