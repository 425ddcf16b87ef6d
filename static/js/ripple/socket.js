/**
 * RippleSocket: the connection's life (connect, heartbeat, drop, reconnect
 * with backoff, give up) and the frames that reach it, handed to the rooms
 * (./rooms.js), the outbox (./outbox.js) and the transport choice
 * (./transport.js). Its options, methods, events and close-code behaviour are
 * documented in docs/client.md.
 */

import { Connection } from './connection.js';
import { CLOSE, ERROR_CODE, FRAME, STATE, isNoRetryClose, isQuickReconnectClose } from './constants.js';
import { Heartbeat, listenAll } from './heartbeat.js';
import { parseFrame, rateLimitDetail, retryAfterOf, rippleError } from './frames.js';
import { resolveOptions } from './options.js';
import { Outbox } from './outbox.js';
import { Rooms } from './rooms.js';
import { Reconnect } from './reconnect.js';
import { Schedule } from './timer.js';
import { TransportChoice } from './transport.js';

/** The reconnecting Ripple client: `new RippleSocket(url, options)` (docs/client.md). */
export class RippleSocket extends EventTarget {
  #options;
  #window;
  #document;
  #navigator;
  #random;
  // Timers of the current socket: `heartbeat` (interval), `pong` (deadline
  // after a ping), `stable` (resets the attempt counter), `connect` (deadline
  // for the handshake), and those of the outbox and the rooms; cleared
  // whenever the socket goes.
  #socketTimers = new Schedule();
  // Timers that outlive a socket: the reconnect (#reconnect), the probe and the health check.
  #clientTimers = new Schedule();
  #reconnect;
  #heartbeat;
  #transport;
  #rooms;
  #outbox;

  #state = STATE.CONNECTING;
  #stateDetail = null;
  // The current socket as a Connection, or null between sockets.
  #ws = null;
  #detachEnvironment = null;
  #offline = false;
  #closedByPage = false;
  #rttMs = null;
  #welcome = null;

  constructor(url, options = {}) {
    super();
    const resolved = resolveOptions(options);
    const picked = resolved.settings;
    this.#options = picked;
    this.#window = resolved.window;
    this.#document = resolved.document;
    this.#navigator = resolved.navigator;
    this.#random = resolved.random;
    this.#reconnect = new Reconnect(() => this.#connect(), { settings: picked, random: this.#random, schedule: this.#clientTimers });
    this.#transport = new TransportChoice(url, {
      transports: resolved.transports,
      storage: resolved.storage,
      navigator: this.#navigator,
      schedule: this.#clientTimers,
      settings: picked,
      isClosed: () => this.#closedByPage,
      onBack: () => this.#leaveFallback(),
      // The server answers again (or HTTP gets through while WebSocket did not): try now.
      onHttpOk: () => this.#state === STATE.RECONNECTING && !this.#offline && this.#connect(),
      fetch: resolved.fetch,
    });
    const sendFrame = (frame) => this.#sendFrame(frame);
    this.#heartbeat = new Heartbeat({
      schedule: this.#socketTimers,
      intervalMs: picked.heartbeatIntervalMs,
      timeoutMs: picked.heartbeatTimeoutMs,
      send: sendFrame,
      onTimeout: () => this.#drop(CLOSE.CLIENT_HEARTBEAT_TIMEOUT, 'heartbeat timeout'),
    });
    this.#rooms = new Rooms({
      schedule: this.#socketTimers,
      host: {
        sendFrame,
        dispatch: (type, detail) => this.dispatchEvent(new CustomEvent(type, { detail })),
        drop: (code, reason) => this.#drop(code, reason),
        rejectSends: (error, room) => this.#outbox.reject(error, room),
        pumpSends: () => this.#outbox.pump(),
      },
    });
    this.#outbox = new Outbox({
      maxQueue: picked.maxQueue,
      clientIdPrefix: picked.clientIdPrefix,
      crypto: resolved.crypto,
      random: this.#random,
      schedule: this.#socketTimers,
      host: { isOpen: () => this.#state === STATE.OPEN, roomReady: (room) => this.#rooms.isActive(room), sendFrame },
    });
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
    return this.#transport.name;
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
    if (this.#rooms.add(room, since, onMessage) && this.#state === STATE.OPEN) this.#rooms.subscribe(room);
  }

  members(room) {
    return this.#rooms.members(room);
  }

  /** Tells the room "I am typing" (at most one frame per 3 s; none before subscribed); true if sent. */
  typing(room) {
    return this.#state === STATE.OPEN && this.#rooms.typing(room);
  }

  unsubscribe(room) {
    if (!this.#rooms.delete(room)) return;
    if (this.#state === STATE.OPEN) this.#sendFrame({ type: FRAME.UNSUBSCRIBE, room });
    this.#outbox.reject(rippleError('unsubscribed'), room);
  }

  send(room, body, { clientId = null } = {}) {
    let refusal = null;
    if (this.#closedByPage || this.#state === STATE.CLOSED) refusal = 'closed';
    else if (!this.#rooms.has(room)) refusal = 'not_subscribed';
    return this.#outbox.send(room, body, clientId, refusal);
  }

  close() {
    if (this.#closedByPage) return;
    this.#closedByPage = true;
    this.#teardown(CLOSE.NORMAL, 'page closed');
    this.#rooms.clear();
    this.#outbox.reject(rippleError('closed'));
    this.#setState(STATE.CLOSED, { code: CLOSE.NORMAL, reason: 'page closed' });
  }

  retry() {
    if (this.#closedByPage) return;
    if (this.#state === STATE.FAILED || this.#state === STATE.CLOSED) {
      this.#reconnect.reset();
      this.#start();
    } else if (this.#state === STATE.RECONNECTING) {
      this.#connect();
    }
  }

  // --- connection lifecycle -------------------------------------------------

  #start() {
    this.#attachEnvironment();
    this.#transport.armProbe();
    this.#offline = this.#navigator?.onLine === false;
    if (this.#offline) this.#setState(STATE.RECONNECTING, { offline: true });
    else this.#connect();
  }

  /** The only place a socket is created; a no-op while one exists (the reconnect lock). */
  #connect() {
    if (this.#ws !== null || this.#closedByPage) return;
    this.#reconnect.cancel();
    let socket;
    try {
      socket = this.#transport.open();
    } catch (error) {
      this.#setState(STATE.CONNECTING);
      this.#afterDrop(CLOSE.ABNORMAL, String(error?.message ?? error), { beforeOpen: true });
      return;
    }
    const ws = new Connection(socket, {
      open: () => ws === this.#ws && this.#onOpen(),
      message: (event) => ws === this.#ws && this.#onFrame(event.data),
      error: () => ws === this.#ws && this.#drop(CLOSE.ABNORMAL, 'error'),
      close: (event) => ws === this.#ws && this.#drop(event.code ?? CLOSE.ABNORMAL, event.reason ?? ''),
    });
    this.#ws = ws;
    this.#outbox.newSocket();
    this.#socketTimers.after('connect', this.#options.connectTimeoutMs, () => {
      this.#drop(CLOSE.CLIENT_CONNECT_TIMEOUT, 'connect timeout');
    });
    this.#setState(STATE.CONNECTING);
  }

  #onOpen() {
    const ws = this.#ws;
    this.#socketTimers.clear('connect');
    // Only a socket that stays up this long proves the server is back; one
    // that is accepted and then dropped keeps counting as a failure.
    this.#reconnect.opened();
    this.#socketTimers.after('stable', this.#options.stableAfterMs, () => this.#reconnect.reset());
    this.#heartbeat.start();
    this.#rooms.subscribeAll();
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
    this.#transport.countFailure(beforeOpen, this.#offline);
    if (isNoRetryClose(code)) {
      this.#teardown(code, reason);
      this.#outbox.reject(rippleError('closed', 'closed', { closeCode: code }));
      this.#setState(STATE.CLOSED, { code, reason });
      return;
    }
    if (isQuickReconnectClose(code)) {
      this.#scheduleReconnect(this.#random() * this.#options.quickReconnectMs, code, reason);
      return;
    }
    const delayMs = this.#reconnect.failed({ unreachable: beforeOpen && code === CLOSE.ABNORMAL });
    if (delayMs === null) {
      this.#teardown(code, reason);
      this.#setState(STATE.FAILED, { code, reason });
      this.dispatchEvent(new CustomEvent('giveup', { detail: { attempt: this.#reconnect.failures, code, reason } }));
      return;
    }
    this.#scheduleReconnect(delayMs, code, reason);
  }

  #scheduleReconnect(delayMs, code, reason) {
    // An `offline` event may have fired before this page listened.
    if (this.#navigator?.onLine === false) this.#offline = true;
    if (this.#offline) {
      this.#reconnect.cancel();
      this.#setState(STATE.RECONNECTING, { offline: true, code, reason });
      return;
    }
    this.#reconnect.schedule(delayMs);
    this.#setState(STATE.RECONNECTING, { delayMs, code, reason });
  }

  /** Forgets the current socket: listeners off, its timers cleared, closed if still up. */
  #releaseSocket(code, reason) {
    const ws = this.#ws;
    if (ws === null) return;
    this.#ws = null;
    ws.close(code, reason);
    this.#socketTimers.clear();
    this.#rooms.release();
  }

  /** Clears every timer and removes every listener this object added. */
  #teardown(code, reason) {
    this.#releaseSocket(code, reason);
    this.#socketTimers.clear();
    this.#clientTimers.clear();
    this.#transport.stopProbe();
    if (this.#detachEnvironment) {
      this.#detachEnvironment();
      this.#detachEnvironment = null;
    }
  }

  /** A probe got through: the tab is back on the first transport; leave the fallback at once. */
  #leaveFallback() {
    if (this.#closedByPage || this.#state === STATE.CLOSED || this.#state === STATE.FAILED) return;
    const code = CLOSE.CLIENT_TRANSPORT_SWITCH;
    const reason = `${this.transport} is back`;
    if (this.#ws !== null) this.#releaseSocket(code, reason);
    // Like a 4512: no failure counted, a random delay spreads the tabs out.
    this.#scheduleReconnect(this.#random() * this.#options.quickReconnectMs, code, reason);
  }

  // --- browser signals ----------------------------------------------------------

  #attachEnvironment() {
    if (this.#detachEnvironment) return;
    this.#detachEnvironment = listenAll([
      [this.#window, 'online', () => this.#onOnline()],
      [this.#window, 'offline', () => this.#onOffline()],
      [this.#document, 'visibilitychange', () => this.#onVisibilityChange()],
    ]);
  }

  #onOnline() {
    this.#offline = false;
    if (this.#state === STATE.RECONNECTING) this.#connect();
    else if (this.#state === STATE.OPEN) this.#heartbeat.ping();
  }

  #onOffline() {
    this.#offline = true;
    if (this.#state === STATE.RECONNECTING) {
      this.#reconnect.cancel();
      this.#setState(STATE.RECONNECTING, { offline: true });
    } else if (this.#state === STATE.OPEN) {
      // The socket may survive a short outage; the pong deadline decides.
      this.#heartbeat.ping();
    }
  }

  #onVisibilityChange() {
    if (this.#document?.visibilityState === 'visible' && this.#state === STATE.OPEN) this.#heartbeat.ping();
  }

  // --- frames ---------------------------------------------------------------

  #sendFrame(frame) {
    return this.#ws?.send(frame) ?? false;
  }

  #onFrame(data) {
    this.#heartbeat.alive();
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
        if (typeof frame.t === 'number') this.#rttMs = Math.max(0, Date.now() - frame.t);
        this.dispatchEvent(new CustomEvent('pong', { detail: { rttMs: this.#rttMs, frame } }));
        return;
      case FRAME.ACK:
        this.#outbox.ack(frame);
        this.dispatchEvent(new CustomEvent('ack', { detail: frame }));
        return;
      case FRAME.ERROR:
        return this.#onError(frame);
      default:
        // Frames about rooms go to the Rooms module; unknown types need no action.
        this.#rooms.handle(frame);
    }
  }

  #onWelcome(frame) {
    this.#welcome = frame;
    this.#heartbeat.configure(frame);
    this.#outbox.pace(frame.limits ?? {});
    this.#heartbeat.start();
    this.dispatchEvent(new CustomEvent('welcome', { detail: frame }));
  }

  /** An `error` frame: a refused message, else a refused subscribe (by `ref`); always an `error` event. */
  #onError(frame) {
    const rateLimited = frame.code === ERROR_CODE.RATE_LIMITED;
    const retryAfterMs = rateLimited ? retryAfterOf(frame) : null;
    if (!this.#outbox.refused(frame, retryAfterMs)) this.#rooms.subscribeRefused(frame, retryAfterMs);
    if (rateLimited) this.dispatchEvent(new CustomEvent('ratelimited', { detail: rateLimitDetail(frame, retryAfterMs) }));
    this.dispatchEvent(new CustomEvent('error', { detail: frame }));
  }

  #setState(state, extra = {}) {
    this.#state = state;
    const detail = {
      state,
      attempt: state === STATE.FAILED ? this.#reconnect.failures : this.#reconnect.failures + 1,
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
