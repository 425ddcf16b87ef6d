/**
 * The `/echo/` playground (`<main id="echo">`): the classic browser WebSocket
 * snippet against the echo endpoint. It logs every socket event, shows the
 * readyState, sends `Hello Server <n>` every 2 s, closes after 10 s, and shows
 * the round trip of each echo. Plain WebSocket on purpose: no RippleSocket.
 */

import { socketUrl } from './ripple/transport.js';

export const READY_STATE_NAMES = Object.freeze(['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']);

// The echo endpoint answers text X with `received: X(From Server)`.
const ECHO_PATTERN = /^received: ([\s\S]*)\(From Server\)$/;

function describeData(data) {
  if (typeof data === 'string') return data;
  const size = data?.size ?? data?.byteLength;
  return size === undefined ? String(data) : `<${size} bytes>`;
}

/**
 * Wires the playground under `root` and returns `{start, stop}`; `start()`
 * replaces any running socket with a new one. The button starts one, or
 * stops the one running (it then reads "Stop").
 */
export function mountEchoPlayground(root, {
  document = root.ownerDocument ?? globalThis.document,
  location = globalThis.location,
  WebSocket = globalThis.WebSocket,
  sendEveryMs = 2000,
  closeAfterMs = 10000,
  now = () => globalThis.performance?.now?.() ?? Date.now(),
} = {}) {
  const byId = (id) => document.getElementById(id);
  const log = byId('log');
  const readyState = byId('ready-state');
  const rtt = byId('rtt');
  const startButton = byId('start');
  const url = socketUrl(root.dataset.wsUrl, location);

  let ws = null;
  let detachSocket = null;
  let sendTimer = null;
  let closeTimer = null;
  let counter = 0;
  // Maps each text sent on the current socket to the time it was sent.
  const sentAt = new Map();

  function append(text) {
    const li = document.createElement('li');
    li.textContent = text;
    log.append(li);
  }

  /** The button says what a click does: Stop while a socket runs, Start otherwise. */
  function showButton() {
    if (!startButton) return;
    const running = ws !== null && (ws.readyState === 0 || ws.readyState === 1);
    startButton.textContent = running ? 'Stop' : 'Start';
    startButton.setAttribute('aria-pressed', running ? 'true' : 'false');
  }

  function showReadyState() {
    showButton();
    if (!readyState) return;
    readyState.textContent = ws ? `readyState ${ws.readyState} (${READY_STATE_NAMES[ws.readyState] ?? '?'})` : '';
  }

  function clearTimers() {
    if (sendTimer !== null) globalThis.clearInterval(sendTimer);
    if (closeTimer !== null) globalThis.clearTimeout(closeTimer);
    sendTimer = null;
    closeTimer = null;
  }

  function sendHello() {
    if (!ws || ws.readyState !== 1) return;
    counter += 1;
    const text = `Hello Server ${counter}`;
    sentAt.set(text, now());
    ws.send(text);
  }

  function onMessage(data) {
    append(`@message: ${describeData(data)}`);
    const echoed = typeof data === 'string' ? ECHO_PATTERN.exec(data) : null;
    if (echoed && sentAt.has(echoed[1]) && rtt) {
      rtt.textContent = `RTT ${Math.round(now() - sentAt.get(echoed[1]))} ms`;
      sentAt.delete(echoed[1]);
    }
  }

  /** Closes the current socket, if any, and forgets it with its timers and listeners. */
  function stop() {
    clearTimers();
    if (!ws) return;
    const old = ws;
    detachSocket();
    ws = null;
    detachSocket = null;
    if (old.readyState === 0 || old.readyState === 1) old.close(1000);
    showButton();
  }

  function start() {
    stop();
    counter = 0;
    sentAt.clear();
    const socket = new WebSocket(url);
    ws = socket;
    const handlers = {
      open: () => {
        append('@open');
        showReadyState();
        sendTimer = globalThis.setInterval(sendHello, sendEveryMs);
      },
      message: (event) => onMessage(event.data),
      close: (event) => {
        clearTimers();
        append(`@close: ${event.code}`);
        showReadyState();
      },
      error: () => {
        append('@error');
        showReadyState();
      },
    };
    for (const [type, handler] of Object.entries(handlers)) socket.addEventListener(type, handler);
    detachSocket = () => {
      for (const [type, handler] of Object.entries(handlers)) socket.removeEventListener(type, handler);
    };
    closeTimer = globalThis.setTimeout(() => {
      closeTimer = null;
      socket.close(1000);
      showReadyState();
    }, closeAfterMs);
    showReadyState();
  }

  function toggle() {
    if (ws !== null && (ws.readyState === 0 || ws.readyState === 1)) {
      stop();
      append('@stopped');
    } else {
      start();
    }
  }

  if (startButton) startButton.addEventListener('click', toggle);
  return { start, stop };
}

const pageRoot = globalThis.document?.getElementById?.('echo');
if (pageRoot) mountEchoPlayground(pageRoot).start();
