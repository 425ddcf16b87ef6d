"""The ``fanout`` scenario: Ripple's hub against the Channels tutorial consumer and python-socketio,
same Redis, same load.

For each (layer, target) the scenario starts ``--workers`` server processes, opens the sockets,
runs the load (see ``bench.loadgen``), reads the CPU time of every server process and of Redis
at both ends of the measured window, and stops the workers before the next pair starts.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import signal
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

from . import loadgen, report, servers

HELP = "one publisher and N subscribers per room: deliveries/s, latency, CPU µs per delivery"
TARGETS = ("ripple", "baseline", "socketio")
# "both" is what it meant before the socketio target existed.
TARGET_SETS = {"all": TARGETS, "both": ("ripple", "baseline")}
LAYERS = ("core", "pubsub")
APPS = {"ripple": servers.RIPPLE_APP, "baseline": servers.BASELINE_APP, "socketio": servers.SOCKETIO_APP}
# python-socketio has one Redis path (its pub/sub manager): it runs under the pubsub label only.
SOCKETIO_LAYER = "pubsub"


def asgi_server(target: str, server: str) -> str:
    """The ASGI server ``target`` runs on: python-socketio's app always on uvicorn, as in its
    documentation's ASGI example; the others on ``--server``."""
    return "uvicorn" if target == "socketio" else server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        choices=(*TARGETS, *TARGET_SETS),
        default="all",
        help="all: ripple, baseline and socketio (socketio on the pubsub layer only); "
        "both: ripple and baseline",
    )
    parser.add_argument(
        "--layer", choices=LAYERS, default=None, help="default: both layers, one after the other"
    )
    parser.add_argument("--rooms", type=bounded_int(1, 1000), default=1)
    parser.add_argument("--subs", type=bounded_int(1, 5000), default=300, help="subscribers per room")
    parser.add_argument("--workers", type=bounded_int(1, 16), default=2, help="server processes")
    parser.add_argument("--mode", choices=("closed", "open"), default="closed")
    parser.add_argument(
        "--window", type=bounded_int(1, 1000), default=4, help="closed loop: messages in flight per publisher"
    )
    parser.add_argument(
        "--rate", type=bounded_float(0.01, 10_000), default=None, help="open loop: messages/s per publisher"
    )
    parser.add_argument(
        "--duration", type=bounded_float(0.1, 120), default=10.0, help="measured seconds (≤ 120)"
    )
    parser.add_argument(
        "--warmup", type=bounded_float(0, 60), default=2.0, help="seconds of load before measuring"
    )
    parser.add_argument("--body-bytes", type=bounded_int(40, 4000), default=64)
    parser.add_argument(
        "--aftermath",
        type=bounded_int(0, 10_000),
        default=0,
        help="first open this many sockets in rooms of 10 and close them all, then load at once "
        "(the aftermath of a reconnect storm)",
    )
    servers.add_process_arguments(parser)


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value

    return parse


def bounded_float(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
        return value

    return parse


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.mode == "open" and args.rate is None:
        parser.error("--mode open needs --rate")
    if args.target == "socketio" and args.layer not in (None, SOCKETIO_LAYER):
        parser.error(f"--target socketio runs on --layer {SOCKETIO_LAYER} only (one Redis path)")
    if args.rooms * (args.subs + 1) > 20_000:
        parser.error("at most 20,000 sockets (rooms × (subs + 1))")
    servers.check_process_arguments(parser, args)


def describe_load(args: argparse.Namespace) -> str:
    shape = f"{args.rooms} room(s) × {args.subs} subscribers + 1 publisher, {args.workers} workers"
    if args.mode == "closed":
        pace = f"closed loop, window {args.window}"
    else:
        offered = args.rate * args.rooms * args.subs
        pace = f"open loop, {args.rate:g} msg/s per publisher (offered {offered:,.0f} deliveries/s)"
    after = f", right after {args.aftermath:,} sockets in rooms of 10 closed" if args.aftermath else ""
    timing = f"{args.warmup:g} s warmup + {args.duration:g} s"
    return f"{shape}, {pace}, {timing}, {args.body_bytes}-byte bodies{after}"


def run(args: argparse.Namespace) -> int:
    targets = TARGET_SETS.get(args.target, (args.target,))
    layers = LAYERS if args.layer is None else (args.layer,)
    pinning = servers.choose_pinning(args.pin)
    servers.pin_this_process(pinning)
    open_files = servers.raise_open_files_limit()
    extra_env = dict(item.split("=", 1) for item in args.server_env)
    result: dict[str, Any] = {
        "tool": "ripple-bench",
        "scenario": "fanout",
        "command_line": report.command_line(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": report.machine(),
        "versions": report.versions(),
        "code": report.code_state(servers.ROOT),
        "pinning": {"servers_and_redis_cpu": pinning.server_cpu, "loadgen_cpu": pinning.loadgen_cpu}
        if pinning.enabled
        else "off",
        "open_files_limit": open_files,
        "options": {key: value for key, value in vars(args).items() if key != "func"},
        "server_env_extra": extra_env,
        "load": describe_load(args),
        "results": [],
        "ratios": {},
        "notes": [],
    }
    progress = report.Progress()
    interrupted = False
    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with ExitStack() as cleanup:
            redis_url = args.redis_url
            if not redis_url:
                redis_server = servers.BenchRedis(pinning)
                cleanup.callback(redis_server.cleanup)
                redis_server.start()
                redis_url = redis_server.url
                result["redis"] = "started by the tool" + (" (pinned)" if pinning.enabled else "")
            else:
                result["redis"] = "given (--redis-url), not pinned by the tool"
            probe = servers.RedisProbe(redis_url)
            cleanup.callback(probe.close)
            result["redis_server_version"] = probe.version()
            database_url = args.database_url
            if not database_url:
                database_url, directory = servers.fresh_sqlite_database()
                cleanup.callback(shutil.rmtree, directory, True)
                progress.note(f"migrating a fresh SQLite database: {database_url}")
                servers.migrate(database_url)
            result["database"] = database_url.split(":", 1)[0]
            env = {
                "DJANGO_SECRET_KEY": secrets.token_urlsafe(32),
                "DJANGO_DEBUG": "0",
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                **extra_env,
            }
            run_id = secrets.token_hex(3)
            if "socketio" in targets and SOCKETIO_LAYER not in layers:
                result["notes"].append(
                    "socketio skipped: python-socketio has one Redis path, "
                    f"measured with --layer {SOCKETIO_LAYER} only"
                )
            if "socketio" in targets and len(targets) > 1 and args.server != "uvicorn":
                result["notes"].append(
                    f"socketio always runs on uvicorn, the other targets ran on {args.server}: "
                    "--server uvicorn puts all three on the same server"
                )
            for layer in layers:
                for target in targets:
                    if target == "socketio" and layer != SOCKETIO_LAYER:
                        continue
                    outcome = run_pair(
                        args, target=target, layer=layer, env=env, pinning=pinning, probe=probe, run_id=run_id
                    )
                    result["results"].append(outcome)
                    progress.note(summary_line(outcome))
    except KeyboardInterrupt:
        interrupted = True
        result["notes"].append("interrupted: the results are incomplete")
    finally:
        signal.signal(signal.SIGTERM, previous_term)
    finish(result)
    report.print_report(result)
    if args.json:
        report.write_json(args.json, result)
        print(f"wrote {args.json}")
    if interrupted:
        return 130
    return 1 if any("error" in item for item in result["results"]) else 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_pair(
    args: argparse.Namespace,
    *,
    target: str,
    layer: str,
    env: dict[str, str],
    pinning: servers.Pinning,
    probe: servers.RedisProbe,
    run_id: str,
) -> dict[str, Any]:
    """Start the workers for one (target, layer), run the load, stop them."""
    progress = report.Progress()
    progress.begin(f"{target}/{layer}")
    workers: list[servers.BenchDaphne] = []
    outcome: dict[str, Any]
    server = asgi_server(target, args.server)
    try:
        # Other people may edit the code while a series runs: record what these workers loaded.
        code_digest = report.code_state(servers.ROOT)["digest"]
        workers = servers.start_workers(
            args.workers,
            env={**env, "RIPPLE_CHANNEL_LAYER": layer},
            app=APPS[target],
            pinning=pinning,
            server=server,
        )
        pids = [worker.pid for worker in workers]

        def cpu_snapshot() -> dict[str, Any]:
            return {
                "server_s": {pid: servers.process_cpu_s(pid) for pid in pids},
                "redis_s": probe.cpu_s(),
                "machine_busy_s": servers.cpu_busy_s(),
            }

        plan = loadgen.Plan(
            target=target,
            layer=layer,
            run_id=run_id,
            ports=[worker.port for worker in workers],
            rooms=args.rooms,
            subs=args.subs,
            mode=args.mode,
            window=args.window,
            rate=args.rate,
            warmup_s=args.warmup,
            duration_s=args.duration,
            body_bytes=args.body_bytes,
            aftermath=args.aftermath,
        )
        outcome = run_async(loadgen.run_fanout(plan, cpu_snapshot=cpu_snapshot, progress=progress.update))
        outcome["server"] = server
        outcome["worker_processes"] = [{"port": worker.port, "pid": worker.pid} for worker in workers]
        outcome["code_digest"] = code_digest
        dead = [worker.port for worker in workers if not worker.alive()]
        if dead:
            outcome["notes"] = [f"{server} on port(s) {dead} exited during the run"]
    except Exception as error:
        outcome = {"target": target, "layer": layer, "error": f"{type(error).__name__}: {error}"}
    finally:
        progress.end()
        logs = {str(worker.port): worker.problems() for worker in workers}
        servers.stop_all(workers)
    outcome["server_logs"] = logs
    return outcome


def run_async(coroutine: Any) -> Any:
    """Run the load on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def summary_line(outcome: dict[str, Any]) -> str:
    label = f"{outcome['target']}/{outcome['layer']}"
    if "error" in outcome:
        return f"{label}: failed: {outcome['error']}"
    latency = outcome["latency_ms"]
    per = outcome["cpu_us_per_delivery"]
    return (
        f"{label}: {outcome['deliveries_per_s']:,.0f} deliveries/s, p50 {latency['p50'] or 0:.1f} ms, "
        f"p99 {latency['p99'] or 0:.1f} ms, lost {outcome['lost']}, dup {outcome['duplicated']}, "
        f"{'-' if per is None else f'{per:.1f}'} µs/delivery"
    )


def finish(result: dict[str, Any]) -> None:
    """Ratios between targets and notes on anything that makes a figure doubtful.

    ``ratios[layer][target]``: that target's CPU µs per delivery ÷ Ripple's on the same layer.
    """
    by_pair = {(r["target"], r["layer"]): r for r in result["results"] if "error" not in r}
    for layer in LAYERS:
        ripple = by_pair.get(("ripple", layer))
        if not ripple or not ripple["cpu_us_per_delivery"]:
            continue
        for target in TARGETS[1:]:
            other = by_pair.get((target, layer))
            if other and other["cpu_us_per_delivery"]:
                ratio = other["cpu_us_per_delivery"] / ripple["cpu_us_per_delivery"]
                result["ratios"].setdefault(layer, {})[target] = ratio
    notes = result["notes"]
    for r in result["results"]:
        label = f"{r['target']}/{r['layer']}"
        if "error" in r:
            notes.append(f"{label} failed: {r['error']}")
            continue
        notes.extend(f"{label}: {note}" for note in r.get("notes", []))
        sockets = r["sockets"]
        if sockets["handshake_failures"] or sockets["subscribe_failures"]:
            notes.append(
                f"{label}: {sockets['handshake_failures']} handshake and {sockets['subscribe_failures']} "
                f"subscribe failures of {sockets['wanted']} sockets, e.g. {sockets['failure_examples'][:2]}"
            )
        if r["target"] == "ripple" and (r["lost"] or r["duplicated"]):
            notes.append(f"{label}: Ripple lost {r['lost']} and duplicated {r['duplicated']} deliveries")
        if r["drain"]["ended"] == "cut":
            notes.append(
                f"{label}: deliveries were still arriving {r['drain']['seconds']:.0f} s after the load "
                f"stopped (lost marked *): 'lost' ({r['lost']}) may include late ones, and the latency "
                "percentiles leave out the latest"
            )
        if r["window_timeouts"]:
            notes.append(f"{label}: {r['window_timeouts']} messages got no window signal within 5 s")
        other = r.get("other_cpu_s")
        if other is not None and other > 0.1 * r["measured_s"]:
            notes.append(
                f"{label}: other processes used {other:.1f} CPU s during the {r['measured_s']:.0f} s window; "
                "the machine was not quiet"
            )
        share = r.get("loadgen_cpu_share")
        if share is not None and share > 0.85:
            notes.append(f"{label}: the load generator used {share:.0%} of its CPU; it may be the limit")
        offered = r.get("offered_deliveries_per_s")
        if offered and r["deliveries_per_s"] < 0.95 * offered:
            notes.append(
                f"{label}: overloaded: {r['deliveries_per_s']:,.0f} of {offered:,.0f} offered deliveries/s"
            )
        logs = r.get("server_logs", {})
        count = sum(item["count"] for item in logs.values())
        if count:
            notes.append(f"{label}: {count} warning/error lines in the server logs (see server_logs)")
    digests = {r["code_digest"] for r in result["results"] if "code_digest" in r}
    if len(digests) > 1 or (digests and result["code"]["digest"] not in digests):
        notes.append("the source code changed during the run: the pairs did not all run the same code")
    for layer, by_target in result["ratios"].items():
        for target, ratio in by_target.items():
            if ratio < 1:
                notes.append(f"{layer}: Ripple used more CPU per delivery than {target} ({ratio:.2f}×)")
