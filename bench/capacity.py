"""The ``capacity`` scenario: many idle sockets on one worker, and what each one costs it.

The tool opens ``--sockets`` sockets to one daphne worker, at most 50 handshakes at a time,
each subscribed to one of ``--rooms`` fresh rooms, and keeps them alive the way the bundled
JavaScript client does: every server ``ping`` is answered with ``pong``, and each socket sends
its own ``ping`` every ``heartbeat_interval_ms`` (from its ``welcome``). Nobody posts. It
measures how fast the sockets open (handshake, ``welcome`` and ``subscribed``), how many fail,
the worker's resident memory before and after (``VmRSS`` in ``/proc/<pid>/status``), the
worker's CPU while the sockets sit idle for ``--idle`` seconds (``/proc/<pid>/stat``), and how
many sockets the server closed meanwhile (it should close none).

``--target`` runs the same against the ``fanout`` scenario's peers, each on a worker of its own
(started after the previous target's is stopped): a Channels tutorial socket (``baseline``) is
in its room once connected and just stays open; a Socket.IO socket (``socketio``, always on
uvicorn) joins its room and answers Engine.IO's pings (``2`` with ``3``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import time
from collections import Counter
from pathlib import Path
from typing import Any

from . import harness, loadgen, report, servers
from .fanout import bounded_float, bounded_int

HELP = "C idle sockets with heartbeats on one worker: connects/s, failures, KiB and CPU per socket"
# After the last socket subscribed: time for the presence batches of the connect burst to go
# out, so they are not counted as idle work.
SETTLE_S = 2.0
# How often the client side looks for sockets whose own ping is due.
PING_TICK_S = 0.25
# File descriptors this process needs besides one per socket.
SPARE_FILES = 200


def add_arguments(parser: argparse.ArgumentParser) -> None:
    harness.add_target_argument(parser)
    parser.add_argument("--sockets", type=bounded_int(1, 10_000), default=1000, help="≤ 10,000")
    parser.add_argument(
        "--rooms", type=bounded_int(1, 1000), default=10, help="sockets spread over this many"
    )
    parser.add_argument(
        "--idle", type=bounded_float(1, 600), default=20.0, help="seconds the sockets sit idle (measured)"
    )
    harness.add_server_arguments(parser)


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    harness.check_server_arguments(parser, args)
    harness.check_target_argument(parser, args)
    if args.rooms > args.sockets:
        parser.error("--rooms cannot exceed --sockets")


def describe_load(args: argparse.Namespace) -> str:
    targets = ", ".join(harness.targets_of(args))
    return (
        f"{args.sockets:,} idle sockets on 1 worker ({targets}) in {args.rooms} room(s), {args.layer} layer, "
        f"{args.idle:g} s idle"
    )


class Idle:
    """What every idle socket keeps (mixed into its ``loadgen`` class): frames by type, who closed."""

    # Set from Ripple's welcome; a peer's socket sends no ping of its own (0: none).
    interval_s = 0.0
    timeout_s = 0.0
    next_ping_at = 0.0  # monotonic; 0 until due
    pings_sent = 0
    late_pongs = 0  # pongs that came after heartbeat_timeout_ms, or never
    # What the loadgen class provides.
    opened: asyncio.Future[None]
    ws: Any

    def __init__(self, plan: loadgen.Plan, stats: loadgen.Stats, room: str, frames: Counter[str]) -> None:
        super().__init__(plan, stats, room, 0, publisher=False)  # type: ignore[call-arg]
        self.frames = frames  # frames received by every socket of the run, by type
        self.leaving = False  # this side started the close
        self.dropped_at = 0.0  # monotonic, when the server closed or dropped the socket
        self.close_code: int | None = None

    def in_room(self) -> bool:
        """In its room: what the target needs after the handshake has been answered."""
        raise NotImplementedError

    def ready_now(self) -> bool:
        """Open and in its room, and not closed since."""
        return self.in_room() and not self.dropped_at

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.leaving and not self.dropped_at and self.opened.done():
            self.dropped_at = time.monotonic()
            received = self.ws.close_rcvd
            self.close_code = received.code if received is not None else 1006
        super().connection_lost(exc)  # type: ignore[misc]


def _answered(future: asyncio.Future[Any]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


class IdleSocket(Idle, loadgen.RippleSocket):
    """A subscribed socket that only keeps itself alive, like an open but quiet browser tab."""

    ping_sent_at = 0.0  # monotonic; 0 when no pong is awaited

    def on_text(self, data: bytes, now_ns: int) -> None:
        kind = harness.frame_type(data)
        self.frames[kind] += 1
        if kind == "presence":
            return
        if kind == "pong":
            if self.ping_sent_at and time.monotonic() - self.ping_sent_at > self.timeout_s:
                self.late_pongs += 1
            self.ping_sent_at = 0.0
            return
        if kind == "welcome":
            welcome = json.loads(data)
            self.interval_s = welcome["heartbeat_interval_ms"] / 1000
            self.timeout_s = welcome["heartbeat_timeout_ms"] / 1000
            self.next_ping_at = time.monotonic() + self.interval_s
        super().on_text(data, now_ns)  # welcome, subscribed, ping (answered with pong), error

    def ping(self, now: float) -> None:
        """The client's own heartbeat, as static/js/ripple-socket.js sends it."""
        if self.ping_sent_at and now - self.ping_sent_at > self.timeout_s:
            self.late_pongs += 1  # the JavaScript client would reconnect here
        self.next_ping_at = now + self.interval_s
        self.ping_sent_at = now
        try:
            self.send_text(f'{{"type":"ping","t":{int(time.time() * 1000)}}}')
        except ConnectionError:
            self.next_ping_at = 0.0
            return
        self.pings_sent += 1

    def in_room(self) -> bool:
        return _answered(self.subscribed)


class BaselineIdle(Idle, loadgen.BaselineSocket):
    """A Channels tutorial socket: in its room's group once connected; it just stays open."""

    def on_text(self, data: bytes, now_ns: int) -> None:
        self.frames["message"] += 1  # nobody posts: none expected

    def in_room(self) -> bool:
        return _answered(self.opened)


# Engine.IO / Socket.IO packets by their first bytes (see loadgen.SocketIOSocket), longest first.
SOCKETIO_KINDS = ((b"40", "connect"), (b"42", "event"), (b"43", "ack"), (b"44", "connect_error"))
ENGINEIO_KINDS = {b"0": "open", b"1": "close", b"2": "ping", b"3": "pong", b"4": "message", b"6": "noop"}


class SocketIOIdle(Idle, loadgen.SocketIOSocket):
    """A Socket.IO socket in its room that answers Engine.IO's pings (``2`` with ``3``)."""

    def on_text(self, data: bytes, now_ns: int) -> None:
        kind = next((name for prefix, name in SOCKETIO_KINDS if data.startswith(prefix)), None)
        self.frames[kind or ENGINEIO_KINDS.get(data[:1], "other")] += 1
        super().on_text(data, now_ns)

    def in_room(self) -> bool:
        return _answered(self.joined)


IDLE_SOCKETS: dict[str, type[Idle]] = {
    "ripple": IdleSocket,
    "baseline": BaselineIdle,
    "socketio": SocketIOIdle,
}


async def show_progress(progress: report.Progress, label: str, phase: list[str], sockets: list[Any]) -> None:
    """The status line: phase, sockets in their rooms, frames received; until cancelled."""
    progress.begin(label)
    started = time.monotonic()
    frames = sockets[0].frames
    try:
        while True:
            ready = sum(sock.in_room() for sock in sockets)
            progress.update(f"{phase[0]} {ready:,} subscribed", time.monotonic() - started, frames.total())
            await asyncio.sleep(0.25)
    finally:
        progress.end()


async def keep_alive(sockets: list[Any], until: float) -> None:
    """Send each socket's own ping when due, until ``until`` (monotonic) or cancelled."""
    while (now := time.monotonic()) < until:
        for sock in sockets:
            if sock.next_ping_at and now >= sock.next_ping_at and not sock.dropped_at:
                sock.ping(now)
        await asyncio.sleep(PING_TICK_S)


def memory_kib(pid: int) -> dict[str, int]:
    """Resident set (VmRSS) and its peak (VmHWM) in KiB, from /proc/<pid>/status."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return {"rss": found["VmRSS"], "peak": found["VmHWM"]}


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def measure(session: harness.Session, worker: servers.BenchDaphne) -> dict[str, Any]:
    """Every target in turn; one target's results as they are, several side by side with ratios."""
    outcomes = await harness.measure_targets(session, worker, measure_target)
    if len(outcomes) == 1:
        return outcomes[0]
    ratios = harness.peer_ratios(
        outcomes,
        {
            "connects_per_s": lambda outcome: outcome["connects_per_s"],
            "kib_per_socket": lambda outcome: outcome["kib_per_socket"],
            "server_cpu_ms_per_connect": lambda outcome: outcome["server_cpu_ms_per_connect"],
            "idle_server_cpu_pct": lambda outcome: outcome["idle_server_cpu_pct"],
        },
    )
    return {"targets": outcomes, "ratios": ratios}


async def measure_target(
    session: harness.Session, worker: servers.BenchDaphne, target: str
) -> dict[str, Any]:
    args = session.args
    if session.open_files_limit < args.sockets + SPARE_FILES:
        raise RuntimeError(
            f"the open-files limit is {session.open_files_limit}; {args.sockets} sockets need "
            f"{args.sockets + SPARE_FILES} (raise the hard limit: ulimit -Hn)"
        )
    plan = loadgen.Plan(
        target=target,
        layer=args.layer,
        run_id=secrets.token_hex(3),
        ports=[worker.port],
        rooms=args.rooms,
        subs=args.sockets // args.rooms,
        mode="closed",
        window=1,
        rate=None,
        warmup_s=0,
        duration_s=args.idle,
        body_bytes=64,
    )
    frames: Counter[str] = Counter()
    stats = loadgen.Stats()
    socket_class: Any = IDLE_SOCKETS[target]
    sockets = [
        socket_class(plan, stats, plan.room_name(index % args.rooms), frames) for index in range(args.sockets)
    ]
    before = memory_kib(worker.pid)
    files_before = open_files(worker.pid)
    meter = harness.CpuMeter(worker.pid, session.probe)
    connect_bound_s = 60 + 0.2 * args.sockets
    pinger = asyncio.create_task(keep_alive(sockets, time.monotonic() + connect_bound_s + args.idle + 30))
    phase = ["connect"]
    shown = asyncio.create_task(
        show_progress(session.progress, f"capacity/{target}/{args.layer}", phase, sockets)
    )
    connected = loadgen.Connected([])
    try:
        meter.start()
        try:
            async with asyncio.timeout(connect_bound_s):
                connected = await loadgen.connect_all(plan, sockets)
        except TimeoutError:
            connected.sockets = [sock for sock in sockets if sock.ready_now()]
            connected.failures["unfinished"] = args.sockets - len(connected.sockets)
        connect_cpu = meter.stop()
        live = connected.sockets
        if not live:
            raise RuntimeError(f"no socket opened: {connected.failure_examples}")
        phase[0] = "settle"
        await asyncio.sleep(SETTLE_S)
        connected_memory = memory_kib(worker.pid)
        files_connected = open_files(worker.pid)
        frames_before_idle = frames.copy()
        phase[0] = "idle"
        meter.start()
        idle_from = time.monotonic()
        await asyncio.sleep(args.idle)
        idle_cpu = meter.stop()
        idle_to = time.monotonic()
        after = memory_kib(worker.pid)
    finally:
        shown.cancel()
        pinger.cancel()
        for sock in sockets:
            sock.leaving = True
        await loadgen.close_all(sockets)

    opened = len(live)
    idle_frames = frames - frames_before_idle
    closed_in_idle = [sock for sock in live if idle_from <= sock.dropped_at <= idle_to]
    closed_before_idle = [sock for sock in live if 0 < sock.dropped_at < idle_from]
    result: dict[str, Any] = {
        "workers": 1,
        "layer": args.layer,
        "rooms": args.rooms,
        # Ripple's, from its welcome; None for a peer (Socket.IO's pings come from the server).
        "heartbeat": {"interval_s": live[0].interval_s, "timeout_s": live[0].timeout_s}
        if target == "ripple"
        else None,
        "sockets": {
            "wanted": args.sockets,
            "open": opened,
            "handshake_failures": connected.failures["handshake"],
            "subscribe_failures": connected.failures["subscribe"],
            "failure_examples": connected.failure_examples,
        },
        "connect_s": connect_cpu["wall_s"],
        # Sockets not open (failed, or still opening) when the connect phase hit its bound
        # (60 s + 0.2 s per socket); the failure counts above then miss what failed before.
        "connect_cut": connected.failures["unfinished"],
        "connects_per_s": opened / connect_cpu["wall_s"],
        "connect_cpu": connect_cpu,
        "server_cpu_ms_per_connect": connect_cpu["server_s"] / opened * 1e3,
        "memory_kib": {"before": before, "connected": connected_memory, "after_idle": after},
        "kib_per_socket": (after["rss"] - before["rss"]) / opened,
        "server_open_files": {"before": files_before, "connected": files_connected},
        "idle_s": round(idle_to - idle_from, 3),
        "idle_cpu": idle_cpu,
        "idle_server_cpu_pct": idle_cpu["server_s"] / idle_cpu["wall_s"] * 100,
        "idle_redis_cpu_pct": idle_cpu["redis_s"] / idle_cpu["wall_s"] * 100 if session.probe else None,
        "idle_server_cpu_us_per_socket_s": idle_cpu["server_s"] / idle_cpu["wall_s"] / opened * 1e6,
        "closed_by_server_in_idle": len(closed_in_idle),
        "closed_by_server_before_idle": len(closed_before_idle),
        "close_codes": dict(Counter(str(sock.close_code) for sock in live if sock.dropped_at)),
        "frames_received": dict(frames),
        "frames_received_in_idle": dict(idle_frames),
        "client_pings_sent": sum(sock.pings_sent for sock in live),
        "late_or_missing_pongs": sum(sock.late_pongs for sock in live),
        "frame_errors": dict(sum((sock.errors for sock in live), Counter())),
    }
    add_notes(session.result["notes"], result, target)
    return result


def add_notes(notes: list[str], result: dict[str, Any], target: str) -> None:
    found: list[str] = []
    sockets = result["sockets"]
    if sockets["handshake_failures"] or sockets["subscribe_failures"]:
        found.append(
            f"{sockets['handshake_failures']} handshake and {sockets['subscribe_failures']} subscribe "
            f"failures of {sockets['wanted']} sockets, e.g. {sockets['failure_examples'][:2]}"
        )
    if result["connect_cut"]:
        found.append(
            f"the connect phase was cut after {result['connect_s']:.0f} s with {result['connect_cut']} "
            "sockets not open (failed or still opening); they are left out"
        )
    if result["closed_by_server_in_idle"] or result["closed_by_server_before_idle"]:
        found.append(
            f"the server closed {result['closed_by_server_in_idle']} socket(s) while idle and "
            f"{result['closed_by_server_before_idle']} before (close codes {result['close_codes']})"
        )
    if result["late_or_missing_pongs"]:
        found.append(
            f"{result['late_or_missing_pongs']} client pings got no pong within the heartbeat timeout"
        )
    interval_s = (result["heartbeat"] or {}).get("interval_s")
    pings_expected = result["idle_s"] / interval_s * sockets["open"] if interval_s else 0
    if (
        interval_s
        and result["idle_s"] >= 2 * interval_s
        and result["frames_received_in_idle"].get("ping", 0) < 0.5 * pings_expected
    ):
        found.append(
            f"the server sent {result['frames_received_in_idle'].get('ping', 0)} pings while idle, "
            f"about {pings_expected:,.0f} expected"
        )
    cpu = result["idle_cpu"]
    if cpu["other_s"] > 0.1 * cpu["wall_s"]:
        found.append(f"other processes used {cpu['other_s']:.1f} CPU s while idle: the machine was not quiet")
    notes.extend(f"{target}: {note}" for note in found)


def table(results: dict[str, Any]) -> harness.Table:
    """One column per target; with several, a peer's ratios to Ripple below."""
    idle_s = results.get("targets", [results])[0]["idle_s"]

    def idle(r: dict[str, Any]) -> dict[str, int]:
        return r["frames_received_in_idle"]

    measures: list[tuple[str, harness.Cell]] = [
        ("sockets open / wanted", lambda r: f"{r['sockets']['open']:,} / {r['sockets']['wanted']:,}"),
        (
            "handshake / subscribe failures",
            lambda r: f"{r['sockets']['handshake_failures']} / {r['sockets']['subscribe_failures']}",
        ),
        ("connects/s (welcome + subscribed)", lambda r: f"{r['connects_per_s']:,.0f}"),
        ("server CPU ms per connect", lambda r: harness.ms(r["server_cpu_ms_per_connect"])),
        (
            "server RSS MiB before / connected / after idle",
            lambda r: " / ".join(f"{m['rss'] / 1024:,.1f}" for m in r["memory_kib"].values()),
        ),
        ("server KiB per socket", lambda r: f"{r['kib_per_socket']:,.1f}"),
        (f"idle server CPU % ({idle_s:g} s)", lambda r: harness.ms(r["idle_server_cpu_pct"])),
        ("idle server CPU µs per socket-second", lambda r: harness.ms(r["idle_server_cpu_us_per_socket_s"])),
        ("idle Redis CPU %", lambda r: harness.ms(r["idle_redis_cpu_pct"])),
        (
            "pings from the server / pongs to the client's, in idle",
            lambda r: f"{idle(r).get('ping', 0):,} / {idle(r).get('pong', 0):,}",
        ),
        (
            "presence frames received before idle",
            lambda r: f"{r['frames_received'].get('presence', 0) - idle(r).get('presence', 0):,}",
        ),
        ("closed by the server in idle", lambda r: str(r["closed_by_server_in_idle"])),
    ]
    ratio_names = {
        "connects_per_s": "connects/s ÷ ripple's",
        "kib_per_socket": "KiB per socket ÷ ripple's",
        "server_cpu_ms_per_connect": "server CPU per connect ÷ ripple's",
        "idle_server_cpu_pct": "idle server CPU ÷ ripple's",
    }
    return harness.target_table(results, measures, ratio_names)


def run(args: argparse.Namespace) -> int:
    return harness.run_scenario(
        "capacity",
        args,
        load=describe_load(args),
        measure=measure,
        table=table,
        target=harness.targets_of(args)[0],
    )
