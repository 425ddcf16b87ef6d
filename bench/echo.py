"""The ``echo`` scenario: one socket posting one message at a time to one worker.

The socket subscribes to a fresh room and posts ``message`` frames with a ``client_id``; each
message goes out only once the previous one's ``ack`` (sent once the message is stored) and its
own copy on the room stream have both come back. Latencies run from just before the frame is
written to the read that brought the reply (``time.perf_counter_ns()``, one process).
``--warmup-count`` messages go first and are not measured. The worker's CPU time (and Redis')
over the measured messages gives the server's CPU per message. The worker hands a new message
to its own subscribers before the ack and the channel-layer send, so on one worker the own copy
waits for neither; the layer's cost shows in the CPU figures.

``--target`` runs the same loop against the ``fanout`` scenario's peers, each on a worker of its
own (started after the previous target's is stopped): the Channels tutorial consumer
(``baseline``) and python-socketio (``socketio``, always on uvicorn). They send no ack, so for
them only post → own copy is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from array import array
from collections import Counter
from typing import Any

from . import harness, loadgen, servers
from .fanout import bounded_int

HELP = "one socket, one message at a time: post → ack and post → delivery latency, CPU per message"
# A message with no ack or no delivery after this long is given up (and counted).
MESSAGE_TIMEOUT_S = 10.0
# The run gives up after this many failed messages in a row: the worker is stuck or refusing.
MAX_FAILURES_IN_A_ROW = 3
# However long each message takes, the whole run stops after this long.
MAX_RUN_S = 600.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    harness.add_target_argument(parser)
    parser.add_argument("--count", type=bounded_int(1, 100_000), default=2000, help="measured messages")
    parser.add_argument(
        "--warmup-count", type=bounded_int(0, 10_000), default=200, help="messages sent first, not measured"
    )
    parser.add_argument("--body-bytes", type=bounded_int(40, 4000), default=64, help="message body size")
    harness.add_server_arguments(parser)


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    harness.check_server_arguments(parser, args)
    harness.check_target_argument(parser, args)


def describe_load(args: argparse.Namespace) -> str:
    return (
        f"1 socket on 1 worker ({', '.join(harness.targets_of(args))}), {args.layer} layer, "
        f"{args.warmup_count} warmup + {args.count} messages one at a time, {args.body_bytes}-byte bodies"
    )


class EchoSocket(loadgen.RippleSocket):
    """The one socket: posts a message, then waits for its ack and its own copy."""

    has_ack = True

    def __init__(self, plan: loadgen.Plan, room: str) -> None:
        super().__init__(plan, loadgen.Stats(), room, 0, publisher=True)
        self.arrived = asyncio.Event()
        self.client_id = ""
        self.sent_ns = self.ack_ns = self.delivered_ns = 0
        self.failure = ""
        self.delivered_first = 0  # messages whose copy came before their ack (allowed)
        self.strays: Counter[str] = Counter()  # frames for an earlier message, or unexpected

    def post(self, number: int, body_bytes: int) -> None:
        self.client_id = f"e{number}"
        self.ack_ns = self.delivered_ns = 0
        self.failure = ""
        self.arrived.clear()
        body = loadgen.make_body(time.perf_counter_ns(), number, body_bytes)
        text = json.dumps({"type": "message", "room": self.room, "body": body, "client_id": self.client_id})
        self.sent_ns = time.perf_counter_ns()
        self.send_text(text)

    def on_text(self, data: bytes, now_ns: int) -> None:
        kind = harness.frame_type(data)
        if kind not in ("ack", "message", "error") or not self.client_id:
            super().on_text(data, now_ns)  # welcome, subscribed, ping; a refused subscribe
            return
        frame = json.loads(data)
        # An error that names no client_id (invalid_json, ...) is about the frame just sent.
        if frame.get("client_id", self.client_id) != self.client_id:
            self.strays[kind] += 1  # about an earlier message, one that timed out
            return
        if kind == "ack":
            self.ack_ns = now_ns
            if frame.get("duplicate"):
                self.failure = "ack says duplicate"
        elif kind == "message":
            self.delivered_ns = now_ns
            self.seen.add(frame["seq"])
            if not self.ack_ns:
                self.delivered_first += 1
        else:
            self.failure = f"error {frame.get('code')}: {frame.get('message')}"
        if self.failure or (self.ack_ns and self.delivered_ns):
            self.arrived.set()


class PeerEcho:
    """The one socket on a peer with no ack (mixed into its ``loadgen`` class): posts a message,
    then waits for its own copy, recognised by the counter in its body."""

    has_ack = False
    # What the loadgen class provides.
    send_message: Any

    def __init__(self, plan: loadgen.Plan, room: str) -> None:
        super().__init__(plan, loadgen.Stats(), room, 0, publisher=True)  # type: ignore[call-arg]
        self.arrived = asyncio.Event()
        self.number = -1
        self.client_id = ""
        self.sent_ns = self.delivered_ns = 0
        self.ack_ns = 0  # never set: no ack
        self.failure = ""
        self.delivered_first = 0
        self.strays: Counter[str] = Counter()

    def post(self, number: int, body_bytes: int) -> None:
        self.number = number
        self.client_id = f"e{number}"
        self.delivered_ns = 0
        self.failure = ""
        self.arrived.clear()
        # Taken before the frame is encoded (one small json.dumps, a few µs), then written at once.
        self.sent_ns = time.perf_counter_ns()
        self.send_message(number, self.sent_ns, body_bytes)

    def count_body(self, body: str, now_ns: int) -> None:
        super().count_body(body, now_ns)  # type: ignore[misc]
        first = body.index(" ")
        if int(body[first + 1 : body.index(" ", first + 1)]) != self.number:
            self.strays["message"] += 1  # an earlier message, one that timed out
            return
        self.delivered_ns = now_ns
        self.arrived.set()


class BaselineEcho(PeerEcho, loadgen.BaselineSocket):
    """The echo socket on the Channels tutorial consumer."""


class SocketIOEcho(PeerEcho, loadgen.SocketIOSocket):
    """The echo socket on python-socketio."""


ECHO_SOCKETS: dict[str, Any] = {"ripple": EchoSocket, "baseline": BaselineEcho, "socketio": SocketIOEcho}


async def measure(session: harness.Session, worker: servers.BenchDaphne) -> dict[str, Any]:
    """Every target in turn; one target's results as they are, several side by side with ratios."""
    outcomes = await harness.measure_targets(session, worker, measure_target)
    peers = [outcome["target"] for outcome in outcomes if outcome["target"] != "ripple"]
    if peers:
        session.result["notes"].append(
            f"{' and '.join(peers)} send no ack: for them only post → own copy is measured (ack: '-')"
        )
    if len(outcomes) == 1:
        return outcomes[0]
    ratios = harness.peer_ratios(
        outcomes,
        {
            "delivery_p50": lambda outcome: outcome["delivery_ms"]["p50"],
            "server_cpu_per_message": lambda outcome: outcome["server_cpu_us_per_message"],
        },
    )
    return {"targets": outcomes, "ratios": ratios}


async def measure_target(
    session: harness.Session, worker: servers.BenchDaphne, target: str
) -> dict[str, Any]:
    args = session.args
    plan = loadgen.Plan(
        target=target,
        layer=args.layer,
        run_id=secrets.token_hex(3),
        ports=[worker.port],
        rooms=1,
        subs=0,
        mode="closed",
        window=1,
        rate=None,
        warmup_s=0,
        duration_s=0,
        body_bytes=args.body_bytes,
    )
    sock = ECHO_SOCKETS[target](plan, plan.room_name(0))
    connected = await loadgen.connect_all(plan, [sock])
    if not connected.sockets:
        raise RuntimeError(f"the socket did not open: {connected.failure_examples}")
    meter = harness.CpuMeter(worker.pid, session.probe)
    progress = session.progress
    progress.begin(f"echo/{target}/{args.layer}")
    try:
        outcome = await post_all(sock, args, meter, progress)
    finally:
        progress.end()
        await loadgen.close_all([sock])
    outcome["first_seq"] = sock.first_expected()
    outcome["seq_repeats"] = sock.seen.repeats()
    outcome["delivered_before_ack"] = sock.delivered_first
    outcome["stray_frames"] = dict(sock.strays)
    outcome["frame_errors"] = dict(sock.errors)
    notes = session.result["notes"]
    if outcome["timeouts"] or outcome["failures"]:
        notes.append(
            f"{target}: {outcome['timeouts']} message(s) timed out and {outcome['failures']} failed, "
            f"e.g. {outcome['failure_examples'][:2]}"
        )
    if outcome["stopped_early"]:
        notes.append(f"{target}: stopped early: {outcome['stopped_early']}")
    if outcome["seq_repeats"]:
        notes.append(f"{target}: {outcome['seq_repeats']} message(s) were delivered more than once")
    cpu = outcome["cpu"]
    if cpu and cpu["other_s"] > 0.1 * cpu["wall_s"]:
        notes.append(
            f"{target}: other processes used {cpu['other_s']:.1f} CPU s meanwhile: the machine was not quiet"
        )
    return outcome


async def post_all(
    sock: Any, args: argparse.Namespace, meter: harness.CpuMeter, progress: Any
) -> dict[str, Any]:
    """Post warmup + count messages one at a time; latencies and CPU of the measured ones."""
    ack_ns, delivery_ns = array("q"), array("q")
    timeouts = failures = in_a_row = 0
    examples: list[str] = []
    stopped_early = ""
    total = args.warmup_count + args.count
    started = time.perf_counter()
    deadline = started + MAX_RUN_S
    for number in range(total):
        if number == args.warmup_count:
            meter.start()
        if time.perf_counter() > deadline:
            stopped_early = f"{MAX_RUN_S:g} s passed after {number} of {total} messages"
            break
        sock.post(number, args.body_bytes)
        try:
            async with asyncio.timeout(MESSAGE_TIMEOUT_S):
                await sock.arrived.wait()
        except TimeoutError:
            timeouts += 1
            missing = "ack" if sock.has_ack and not sock.ack_ns else "delivery"
            sock.failure = f"no {missing} within {MESSAGE_TIMEOUT_S:g} s"
        else:
            failures += bool(sock.failure)
        if sock.failure:
            in_a_row += 1
            if len(examples) < 5:
                examples.append(f"{sock.client_id}: {sock.failure}")
            if in_a_row >= MAX_FAILURES_IN_A_ROW:
                stopped_early = f"{in_a_row} messages in a row failed (after {number + 1} of {total})"
                break
            continue
        in_a_row = 0
        phase = "warmup"
        if number >= args.warmup_count:
            phase = "measure"
            if sock.has_ack:
                ack_ns.append(sock.ack_ns - sock.sent_ns)
            delivery_ns.append(sock.delivered_ns - sock.sent_ns)
        progress.update(phase, time.perf_counter() - started, number + 1)
    # None when the run stopped before the first measured message.
    cpu = meter.stop() if meter.first else None
    measured = len(delivery_ns)
    return {
        "workers": 1,
        "layer": args.layer,
        "messages_measured": measured,
        "messages_per_s": measured / cpu["wall_s"] if cpu and cpu["wall_s"] else None,
        # None for a target with no ack.
        "ack_ms": latency_summary(ack_ns) if sock.has_ack else None,
        "delivery_ms": latency_summary(delivery_ns),
        "timeouts": timeouts,
        "failures": failures,
        "failure_examples": examples,
        "stopped_early": stopped_early,
        "cpu": cpu,
        "server_cpu_us_per_message": cpu["server_s"] / measured * 1e6 if cpu and measured else None,
        "redis_cpu_us_per_message": cpu["redis_s"] / measured * 1e6
        if cpu and measured and args.layer != "none"
        else None,
    }


def latency_summary(samples_ns: array) -> dict[str, float | int | None]:
    ordered = array("q", sorted(samples_ns))
    summary: dict[str, float | int | None] = {
        f"p{pct}": loadgen.percentile_ms(ordered, pct) for pct in (50, 90, 99)
    }
    summary["max"] = ordered[-1] / 1e6 if ordered else None
    summary["samples"] = len(ordered)
    return summary


def table(results: dict[str, Any]) -> harness.Table:
    """One column per target; with several, a peer's ratios to Ripple below."""

    def spread(latency: dict[str, Any] | None) -> str:
        if latency is None:
            return "-"  # no ack on this target
        return " / ".join(harness.ms(latency[name]) for name in ("p50", "p90", "p99", "max"))

    measures: list[tuple[str, harness.Cell]] = [
        ("post → ack, ms (p50 / p90 / p99 / max)", lambda r: spread(r["ack_ms"])),
        ("post → own delivery, ms (p50 / p90 / p99 / max)", lambda r: spread(r["delivery_ms"])),
        ("messages measured", lambda r: f"{r['messages_measured']:,}"),
        ("messages/s (one at a time)", lambda r: harness.ms(r["messages_per_s"])),
        ("server CPU µs per message", lambda r: harness.ms(r["server_cpu_us_per_message"])),
        ("Redis CPU µs per message", lambda r: harness.ms(r["redis_cpu_us_per_message"])),
        ("load generator CPU s", lambda r: harness.ms((r["cpu"] or {}).get("loadgen_s"))),
        ("timeouts / failures", lambda r: f"{r['timeouts']} / {r['failures']}"),
    ]
    ratio_names = {
        "delivery_p50": "own delivery p50 ÷ ripple's",
        "server_cpu_per_message": "server CPU per message ÷ ripple's",
    }
    return harness.target_table(results, measures, ratio_names)


def run(args: argparse.Namespace) -> int:
    return harness.run_scenario(
        "echo",
        args,
        load=describe_load(args),
        measure=measure,
        table=table,
        target=harness.targets_of(args)[0],
    )
