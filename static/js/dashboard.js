/**
 * The live admin dashboard (`<div id="dashboard">`): one WebSocket to
 * /ws/admin/dashboard/, one `dashboard` frame a second, rendered into the
 * page's tables and a plain SVG line chart of messages per second.
 *
 * Every piece of text from the network goes into the page through
 * `textContent`, never as HTML.
 */

import { CLOSE } from './ripple/constants.js';
import { Timer } from './ripple/timer.js';
import { socketUrl } from './ripple/transport.js';

const SVG_NS = 'http://www.w3.org/2000/svg';

/** The chart's drawing box, in viewBox units. */
export const CHART = Object.freeze({ width: 720, height: 220, left: 48, right: 12, top: 14, bottom: 26 });

const SERIES = Object.freeze([
  { id: 'chart-in', column: 1, label: 'in', colour: '#0b63c5' },
  { id: 'chart-out', column: 2, label: 'out', colour: '#1b7a3d' },
]);

// Reconnect delays: full jitter over 1 s doubling to 30 s, never under 250 ms.
const RETRY = Object.freeze({ baseMs: 1000, maxMs: 30000, floorMs: 250 });

/** `1 h 02 min`, `3 min 05 s`, `42 s`. */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(Number(seconds) || 0));
  const pad = (n) => String(n).padStart(2, '0');
  if (s >= 86400) return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
  if (s >= 60) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
  return `${s} s`;
}

/** `HH:MM:SS` in the reader's time zone for a Unix time in seconds. */
export function formatClock(unixSeconds) {
  const date = new Date(unixSeconds * 1000);
  if (Number.isNaN(date.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

// Maps each close code to its name in the client's CLOSE table ("4403 disconnected by
// moderator"); the NO_RETRY_* bounds are not codes.
const CLOSE_NAMES = new Map(
  Object.entries(CLOSE)
    .filter(([name]) => !name.startsWith('NO_RETRY_'))
    .map(([name, code]) => [code, name.toLowerCase().replaceAll('_', ' ')]),
);

/** `4403 disconnected by moderator` for a close code; the bare number for one CLOSE does not name. */
export function closeName(code) {
  const name = CLOSE_NAMES.get(Number(code));
  return name ? `${code} ${name}` : String(code);
}

/** `1000: 3, 4408: 1` for a map of code to count (`name` words each code); `–` when empty. */
export function formatCounts(counts, name = String) {
  const entries = Object.entries(counts ?? {}).sort(([a], [b]) => a.localeCompare(b));
  return entries.length ? entries.map(([code, n]) => `${name(code)}: ${n}`).join(', ') : '–';
}

/** The rooms of a recent event (`rooms`, or `room`), `–` for none. */
export function formatRooms(event) {
  const rooms = Array.isArray(event.rooms) ? event.rooms : (event.room ? [event.room] : []);
  return rooms.length ? rooms.join(', ') : '–';
}

/** The smallest 1, 2 or 5 × 10^n at or above `value` (at least 1): the chart's top. */
export function niceMax(value) {
  if (!(value > 1)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (step * magnitude >= value) return step * magnitude;
  }
  return 10 * magnitude;
}

/** `x,y x,y ...` for one column of the traffic rows `[[unix_s, in, out], ...]`. */
export function chartPoints(traffic, column, top, box = CHART) {
  const plotWidth = box.width - box.left - box.right;
  const plotHeight = box.height - box.top - box.bottom;
  const last = Math.max(1, traffic.length - 1);
  return traffic
    .map((row, i) => {
      const x = box.left + (i / last) * plotWidth;
      const y = box.top + plotHeight - (Math.min(row[column], top) / top) * plotHeight;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(' ');
}

function svgElement(document, name, attributes = {}) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

/** Draws the axes, grid and empty lines once; returns `update(traffic)`. */
export function mountChart(svg, document = svg.ownerDocument) {
  const box = CHART;
  const bottom = box.height - box.bottom;
  const right = box.width - box.right;
  const gridLabels = [];
  for (const fraction of [0, 0.5, 1]) {
    const y = bottom - fraction * (bottom - box.top);
    svg.append(svgElement(document, 'line', { x1: box.left, x2: right, y1: y, y2: y, stroke: '#d9dee3' }));
    const label = svgElement(document, 'text', {
      x: box.left - 6, y: y + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#5b6672',
    });
    svg.append(label);
    gridLabels.push({ fraction, label });
  }
  const spanLabel = svgElement(document, 'text', { x: box.left, y: box.height - 6, 'font-size': 11, fill: '#5b6672' });
  const nowLabel = svgElement(document, 'text', {
    x: right, y: box.height - 6, 'text-anchor': 'end', 'font-size': 11, fill: '#5b6672',
  });
  nowLabel.textContent = 'now';
  svg.append(spanLabel, nowLabel);
  const lines = SERIES.map((series, i) => {
    const line = svgElement(document, 'polyline', {
      id: series.id, fill: 'none', stroke: series.colour, 'stroke-width': 1.5, 'stroke-linejoin': 'round',
    });
    const legendX = box.left + 12 + i * 70;
    const key = svgElement(document, 'line', {
      x1: legendX, x2: legendX + 18, y1: box.top + 4, y2: box.top + 4, stroke: series.colour, 'stroke-width': 2,
    });
    const text = svgElement(document, 'text', { x: legendX + 22, y: box.top + 8, 'font-size': 11, fill: '#1d232a' });
    text.textContent = series.label;
    svg.append(line, key, text);
    return { series, line };
  });

  return function update(traffic) {
    const rows = Array.isArray(traffic) ? traffic : [];
    const peak = rows.reduce((max, row) => Math.max(max, row[1], row[2]), 0);
    const top = niceMax(peak);
    for (const { fraction, label } of gridLabels) label.textContent = String(top * fraction);
    spanLabel.textContent = rows.length ? `−${Math.round(rows.length / 60)} min` : '';
    for (const { series, line } of lines) line.setAttribute('points', chartPoints(rows, series.column, top));
  };
}

/** Replaces the rows of `tbody` with one `<tr>` per item, one `<td>` per cell text. */
export function fillRows(tbody, items, cells, document = tbody.ownerDocument) {
  const rows = items.map((item) => {
    const tr = document.createElement('tr');
    for (const text of cells(item)) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  });
  tbody.replaceChildren(...rows);
}

/** Puts one `dashboard` frame into the page. */
export function renderFrame(document, frame, updateChart) {
  const byId = (id) => document.getElementById(id);
  const setText = (id, text) => {
    const element = byId(id);
    if (element) element.textContent = String(text);
  };
  const totals = frame.totals ?? {};
  setText('total-processes', totals.processes ?? 0);
  setText('total-sockets', totals.open_sockets ?? 0);
  setText('total-in-rate', totals.messages_in_per_s ?? 0);
  setText('total-out-rate', totals.messages_out_per_s ?? 0);
  setText('total-connects', totals.connects_total ?? 0);
  setText('total-heartbeat-timeouts', totals.heartbeat_timeouts_total ?? 0);
  setText('total-closes', formatCounts(totals.closes_total, closeName));
  setText('total-errors', formatCounts(totals.errors_total));

  const warningBox = byId('dash-warning-box');
  if (warningBox) {
    setText('dash-warning', frame.warning ?? '');
    warningBox.hidden = !frame.warning;
  }
  fillRows(byId('processes').tBodies[0], frame.processes ?? [], (p) => [
    p.host, String(p.pid), formatDuration(p.uptime_s), String(p.open_sockets),
    String(p.messages_in_per_s), String(p.messages_out_per_s), String(p.heartbeat_timeouts_total),
    `${formatClock(p.reported_at)} (${p.age_s} s ago)`,
  ]);
  fillRows(byId('rooms').tBodies[0], frame.rooms ?? [], (r) => [r.room, String(r.members)]);
  fillRows(byId('recent').tBodies[0], frame.recent ?? [], (e) => [
    formatClock(e.t), e.event, e.user ?? '', formatRooms(e), e.code === undefined ? '' : closeName(e.code),
    e.duration_s === undefined ? '' : formatDuration(e.duration_s), e.process ?? '',
  ]);
  updateChart(frame.traffic);
}

/**
 * Wires the dashboard under `root` and returns `{destroy}`: the socket
 * reconnects with capped, jittered backoff until `destroy()`.
 */
export function mountDashboard(root, {
  document = root.ownerDocument ?? globalThis.document,
  location = globalThis.location,
  WebSocketImpl = globalThis.WebSocket,
  random = Math.random,
} = {}) {
  const status = document.getElementById('dash-state');
  const updateChart = mountChart(document.getElementById('traffic-chart'), document);
  const url = socketUrl(root.dataset.wsPath, location);
  let socket = null;
  let tries = 0;
  let stopped = false;

  const setState = (state, text) => {
    status.dataset.state = state;
    status.textContent = text;
  };

  const retry = new Timer(connect, { ...RETRY, random });

  const onOpen = () => setState('open', 'Live');
  const onMessage = (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    if (frame?.type !== 'dashboard') return;
    tries = 0;
    renderFrame(document, frame, updateChart);
  };
  const onClose = () => {
    detach();
    if (stopped) return;
    const delayMs = retry.delayFor(tries);
    tries += 1;
    setState('reconnecting', `Disconnected; reconnecting in ${Math.ceil(delayMs / 1000)} s`);
    retry.schedule(delayMs);
  };

  function detach() {
    if (!socket) return;
    socket.removeEventListener('open', onOpen);
    socket.removeEventListener('message', onMessage);
    socket.removeEventListener('close', onClose);
    socket = null;
  }

  function connect() {
    setState('connecting', 'Connecting…');
    socket = new WebSocketImpl(url);
    socket.addEventListener('open', onOpen);
    socket.addEventListener('message', onMessage);
    socket.addEventListener('close', onClose);
  }

  connect();
  return {
    destroy() {
      stopped = true;
      retry.cancel();
      const open = socket;
      detach();
      open?.close(CLOSE.NORMAL);
      setState('closed', 'Stopped');
    },
  };
}

if (typeof document !== 'undefined') {
  const root = document.getElementById('dashboard');
  if (root) mountDashboard(root);
}
