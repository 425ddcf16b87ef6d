"""What the one-worker scenarios (``echo``, ``capacity``) share: options, servers, CPU readings, output.

A scenario hands ``run_scenario`` a ``measure(session, worker)`` coroutine function and a
``table(results)`` function. The harness pins the processes, starts what the options do not
name (a ``redis-server`` unless ``--redis-url`` or ``--layer none``, a fresh SQLite database
unless ``--database-url``) and one daphne worker, runs the measurement, prints the report and
writes the JSON, and stops everything it started, by PID, whatever happens (Ctrl-C and
SIGTERM included).
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

from . import report, servers
from .fanout import APPS, SOCKETIO_LAYER, TARGETS, asgi_server, run_async

# "none": no REDIS_URL, so the worker uses Channels' in-memory layer (one process only).
LAYERS = ("pubsub", "core", "none")
# The environment of every worker besides the database, Redis, the layer and --server-env.
WORKER_ENV = {"DJANGO_DEBUG": "0", "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost"}
# Every server frame starts with its type (chat.protocol builds each dict with "type" first).
TYPE_PREFIX = b'{"type":"'

Table = tuple[list[str], list[list[str]]]


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every one-worker scenario: the layer, and servers.add_process_arguments."""
    parser.add_argument(
        "--layer",
        choices=LAYERS,
        default="pubsub",
        help="none: the in-memory layer, no Redis (then leave out --redis-url)",
    )
    servers.add_process_arguments(parser)


def check_server_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    servers.check_process_arguments(parser, args)
    if args.layer == "none" and args.redis_url:
        parser.error("--layer none runs without Redis: leave out --redis-url")


def add_target_argument(parser: argparse.ArgumentParser) -> None:
    """``--target``: Ripple (the default) or ``fanout``'s peers, each on a worker of its own."""
    parser.add_argument(
        "--target",
        choices=(*TARGETS, "all"),
        default="ripple",
        help="all: ripple, baseline and socketio one after the other (socketio on the pubsub layer only)",
    )


def check_target_argument(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.target == "socketio" and args.layer != SOCKETIO_LAYER:
        parser.error(f"--target socketio runs on --layer {SOCKETIO_LAYER} only (its one Redis path)")


def targets_of(args: argparse.Namespace) -> tuple[str, ...]:
    """The targets to run, in order; ``all`` leaves socketio out off the pubsub layer."""
    if args.target != "all":
        return (args.target,)
    return tuple(t for t in TARGETS if t != "socketio" or args.layer == SOCKETIO_LAYER)


MeasureTarget = Callable[["Session", servers.BenchDaphne, str], Awaitable[dict[str, Any]]]


async def measure_targets(
    session: Session, worker: servers.BenchDaphne, measure_target: MeasureTarget
) -> list[dict[str, Any]]:
    """``measure_target`` for each target of ``--target`` in turn, each on a worker of its own.

    ``worker`` is the first target's; each worker is stopped before the next one starts."""
    targets = targets_of(session.args)
    notes = session.result["notes"]
    if session.args.target == "all" and "socketio" not in targets:
        notes.append(f"socketio skipped: python-socketio has one Redis path, run on --layer {SOCKETIO_LAYER}")
    outcomes = []
    for index, target in enumerate(targets):
        if index:
            worker = session.start_worker(target)
        try:
            outcome = await measure_target(session, worker, target)
        finally:
            session.stop_worker(worker)
        outcomes.append({"target": target, "server": asgi_server(target, session.args.server), **outcome})
    used = {outcome["server"] for outcome in outcomes}
    if len(used) > 1:
        notes.append(
            f"socketio always runs on uvicorn, the other targets ran on {session.args.server}: "
            "--server uvicorn puts all of them on the same server"
        )
    return outcomes


def peer_ratios(outcomes: list[dict[str, Any]], keys: dict[str, Callable[[dict], Any]]) -> dict[str, Any]:
    """For each peer, each figure of ``keys`` ÷ Ripple's in the same run (None when either is missing)."""
    by_target = {outcome["target"]: outcome for outcome in outcomes}
    ripple = by_target.get("ripple")
    if ripple is None:
        return {}
    ratios: dict[str, Any] = {}
    for target, outcome in by_target.items():
        if target == "ripple":
            continue
        ratios[target] = {}
        for name, figure in keys.items():
            mine, theirs = figure(outcome), figure(ripple)
            ratios[target][name] = round(mine / theirs, 3) if mine is not None and theirs else None
    return ratios


Cell = Callable[[dict[str, Any]], str]


def target_table(
    results: dict[str, Any], measures: list[tuple[str, Cell]], ratio_names: dict[str, str]
) -> Table:
    """One ``value`` column for one target; with several (``results["targets"]``), one column each,
    the ASGI server first and each ratio of ``ratio_names`` (key → row name) last."""
    if "targets" not in results:
        return ["measure", "value"], [[name, cell(results)] for name, cell in measures]
    outcomes = results["targets"]
    ratios = results["ratios"]

    def ratio(key: str) -> Cell:
        def cell(outcome: dict[str, Any]) -> str:
            value = ratios.get(outcome["target"], {}).get(key)
            return "-" if value is None else f"{value:.2f}×"

        return cell

    rows: list[tuple[str, Cell]] = [
        ("ASGI server", lambda outcome: str(outcome["server"])),
        *measures,
        *((name, ratio(key)) for key, name in ratio_names.items()),
    ]
    columns = ["measure", *(outcome["target"] for outcome in outcomes)]
    return columns, [[name, *(cell(outcome) for outcome in outcomes)] for name, cell in rows]


def frame_type(data: bytes) -> str:
    """A server frame's ``type``, read from its first bytes without decoding the rest."""
    if data.startswith(TYPE_PREFIX):
        end = data.find(b'"', len(TYPE_PREFIX))
        if end > 0:
            return data[len(TYPE_PREFIX) : end].decode()
    return str(json.loads(data).get("type"))


class CpuMeter:
    """CPU seconds over one window: the worker, Redis, this process, and the rest of the machine."""

    def __init__(self, pid: int, probe: servers.RedisProbe | None) -> None:
        self.pid = pid
        self.probe = probe
        self.first: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        return {
            "wall_s": time.perf_counter(),
            "server_s": servers.process_cpu_s(self.pid),
            "redis_s": self.probe.cpu_s() if self.probe else 0.0,
            "loadgen_s": time.process_time(),
            "machine_s": servers.cpu_busy_s()["all"],
        }

    def start(self) -> None:
        self.first = self._read()

    def stop(self) -> dict[str, float]:
        """What each used since ``start``; ``other_s`` is the machine's busy time nobody here used."""
        last = self._read()
        used = {key: last[key] - self.first[key] for key in last}
        machine_s = used.pop("machine_s")
        used["other_s"] = machine_s - used["server_s"] - used["redis_s"] - used["loadgen_s"]
        return {key: round(value, 4) for key, value in used.items()}


class Session:
    """One run of a scenario: the pinning, the report it fills, and everything to stop at the end."""

    def __init__(self, scenario: str, args: argparse.Namespace, *, load: str) -> None:
        self.args = args
        self.pinning = servers.choose_pinning(args.pin)
        servers.pin_this_process(self.pinning)
        self.open_files_limit = servers.raise_open_files_limit()
        self.progress = report.Progress()
        self.cleanup = ExitStack()
        self.probe: servers.RedisProbe | None = None
        self.extra_env = dict(item.split("=", 1) for item in args.server_env)
        self._env: dict[str, str] | None = None
        self._stopped: set[int] = set()  # PIDs of the workers already stopped
        hidden = ("func", "check", "parser")
        self.result: dict[str, Any] = {
            "tool": "ripple-bench",
            "scenario": scenario,
            "command_line": report.command_line(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": report.machine(),
            "versions": report.versions(),
            "code": report.code_state(servers.ROOT),
            "pinning": {
                "server_and_redis_cpu": self.pinning.server_cpu,
                "loadgen_cpu": self.pinning.loadgen_cpu,
            }
            if self.pinning.enabled
            else "off",
            "open_files_limit": self.open_files_limit,
            "options": {key: value for key, value in vars(args).items() if key not in hidden},
            "server_env_extra": self.extra_env,
            "load": load,
            "results": {},
            "notes": [],
        }

    def _redis_url(self) -> str:
        """The Redis the worker uses: the given one, or one started here; empty for ``--layer none``."""
        if self.args.layer == "none":
            self.result["redis"] = "none (in-memory channel layer)"
            return ""
        url = self.args.redis_url
        if url:
            self.result["redis"] = "given (--redis-url), not pinned by the tool"
        else:
            own = servers.BenchRedis(self.pinning)
            self.cleanup.callback(own.cleanup)
            own.start()
            url = own.url
            self.result["redis"] = "started by the tool" + (" (pinned)" if self.pinning.enabled else "")
        self.probe = servers.RedisProbe(url)
        self.cleanup.callback(self.probe.close)
        self.result["redis_server_version"] = self.probe.version()
        return url

    def _database_url(self) -> str:
        url = self.args.database_url
        if not url:
            url, directory = servers.fresh_sqlite_database()
            self.cleanup.callback(shutil.rmtree, directory, True)
            self.progress.note(f"migrating a fresh SQLite database: {url}")
            servers.migrate(url)
        self.result["database"] = url.split(":", 1)[0]
        return url

    def worker_env(self) -> dict[str, str]:
        """The environment of every worker of the run: one Redis and one database, made once."""
        if self._env is None:
            layer = self.args.layer
            self._env = {
                **WORKER_ENV,
                "DJANGO_SECRET_KEY": secrets.token_urlsafe(32),
                "REDIS_URL": self._redis_url(),
                "DATABASE_URL": self._database_url(),
                **({} if layer == "none" else {"RIPPLE_CHANNEL_LAYER": layer}),
                **self.extra_env,
            }
        return self._env

    def start_worker(self, target: str = "ripple") -> servers.BenchDaphne:
        """One worker of ``target`` (app and ASGI server as ``fanout`` picks them), stopped at the end."""
        env = self.worker_env()
        server = asgi_server(target, self.args.server)
        self.progress.note(f"starting one {server} worker for {target} ({self.args.layer} layer)")
        self.result.setdefault("code_digest", report.code_state(servers.ROOT)["digest"])
        (worker,) = servers.start_workers(1, env=env, app=APPS[target], pinning=self.pinning, server=server)
        self.cleanup.callback(self.stop_worker, worker)
        self.result.setdefault("worker", {"port": worker.port, "pid": worker.pid})
        self.result.setdefault("workers", {})[target] = {
            "port": worker.port,
            "pid": worker.pid,
            "server": server,
        }
        return worker

    def stop_worker(self, worker: servers.BenchDaphne) -> None:
        """Stop ``worker`` (once) and add its log's problems to ``server_logs``."""
        if worker.pid in self._stopped:
            return
        self._stopped.add(worker.pid)
        if not worker.alive():
            self.result["notes"].append(f"the worker on port {worker.port} exited during the run")
        # The log goes with the worker: read it first.
        logs = worker.problems()
        merged = self.result.setdefault("server_logs", {"count": 0, "kinds": {}, "first": []})
        merged["count"] += logs["count"]
        for kind, count in logs["kinds"].items():
            merged["kinds"][kind] = merged["kinds"].get(kind, 0) + count
        merged["first"] = [*merged["first"], *logs["first"]][:5]
        servers.stop_all([worker])


Measure = Callable[[Session, servers.BenchDaphne], Awaitable[dict[str, Any]]]


def run_scenario(
    scenario: str,
    args: argparse.Namespace,
    *,
    load: str,
    measure: Measure,
    table: Callable[[dict], Table],
    target: str = "ripple",
) -> int:
    """Start ``target``'s worker, measure, stop, report. Exit status: 0 measured, 1 failed, 130 interrupted.

    ``measure`` may start other targets' workers with ``session.start_worker`` and stop them."""
    session = Session(scenario, args, load=load)
    result = session.result
    status = 0
    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with session.cleanup:
            worker = session.start_worker(target)
            result["results"] = run_async(measure(session, worker))
    except KeyboardInterrupt:
        status = 130
        result["notes"].append("interrupted: the results are incomplete")
    except Exception as error:
        status = 1
        result["error"] = f"{type(error).__name__}: {error}"
        result["notes"].append(f"the run failed: {result['error']}")
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        session.progress.end()
    logs = result.get("server_logs", {})
    if logs.get("count"):
        result["notes"].append(f"{logs['count']} warning/error lines in the worker logs (see server_logs)")
    if result.get("code_digest") not in (None, report.code_state(servers.ROOT)["digest"]):
        result["notes"].append("the source code changed during the run")
    print_report(result, table(result["results"]) if result["results"] else ([], []))
    if args.json:
        report.write_json(args.json, result)
        print(f"wrote {args.json}")
    return status


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def context_lines(result: dict[str, Any]) -> list[str]:
    """What a run ran on and with: command, machine, versions, Redis and database."""
    machine = result["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in result["versions"].items() if version)
    return [
        f"command: {result['command_line']}",
        f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), Linux {machine['kernel']}, "
        f"Python {machine['python']}; pinning: {result['pinning']}",
        f"versions: {versions}, redis-server {result.get('redis_server_version', '-')}",
        f"redis: {result.get('redis', '-')}; database: {result.get('database', '-')}",
    ]


def print_report(result: dict[str, Any], table: Table) -> None:
    """The run's context, its table and its notes."""
    context = context_lines(result)
    title = f"{result['scenario']}: {result['load']}"
    columns, rows = table
    notes = [f"note: {note}" for note in result["notes"]]
    if report.Console is None:
        print("\n".join([*context, title]))
        for row in [columns, *rows]:
            print("  ".join(f"{cell:>12}" for cell in row))
        print("\n".join(notes))
        return
    console = report.Console() if sys.stdout.isatty() else report.Console(width=160)
    for line in context:
        console.print(line, highlight=False, markup=False)
    if rows:
        grid = report.Table(title=title)
        for index, name in enumerate(columns):
            grid.add_column(name, justify="left" if index == 0 else "right")
        for row in rows:
            grid.add_row(*row)
        console.print(grid)
    for line in notes:
        console.print(line, highlight=False, markup=False)


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"
