"""The processes a benchmark run starts (daphne workers, redis-server), CPU pinning and CPU readings.

Process handling comes from ``bench/processes.py``; this module only adds what a
benchmark needs on top: another ASGI application, a CPU to run on, a clean environment, and
the CPU time each process used.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .processes import RIPPLE_APP, ROOT, DaphneServer, RedisServer

BASELINE_APP = "bench.baseline_asgi:application"
SOCKETIO_APP = "bench.socketio_app:application"
ASGI_SERVERS = ("daphne", "uvicorn", "granian")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Inherited variables that would change what is measured; every one the servers need is set here.
SCRUBBED_PREFIXES = ("DJANGO_", "RIPPLE_", "DATABASE_URL", "REDIS_URL")
# The load comes from one address at many times a person's pace: the abuse limits
# (docs/security.md) are lifted for the workers a run starts; --server-env can set them back.
LIFTED_LIMITS = {
    name: "1000000"
    for name in (
        "RIPPLE_MAX_CONNECTIONS_PER_IP",
        "RIPPLE_MAX_CONNECTIONS_PER_USER",
        "RIPPLE_RATE_FRAMES_PER_S",
        "RIPPLE_RATE_FRAMES_BURST",
        "RIPPLE_RATE_MESSAGES_PER_S",
        "RIPPLE_RATE_MESSAGES_BURST",
        "RIPPLE_RATE_USER_MESSAGES_PER_S",
        "RIPPLE_RATE_USER_MESSAGES_BURST",
        "RIPPLE_FLOOD_STRIKES",
        "RIPPLE_ROOM_CREATE_PER_MIN",
        "RIPPLE_ROOM_CREATE_BURST",
    )
}
PROBLEM_LINE = re.compile(r"Traceback|ERROR|WARNING|CRITICAL|over capacity")


def add_process_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every scenario about the processes it runs: server, database, Redis, pinning,
    worker environment, and the JSON report."""
    parser.add_argument(
        "--server",
        choices=ASGI_SERVERS,
        default="daphne",
        help="the ASGI server of the workers (uvicorn: its websockets protocol; granian: one worker)",
    )
    parser.add_argument("--json", metavar="PATH", help="write the whole report here")
    parser.add_argument("--database-url", help="default: a fresh SQLite file, migrated by the tool")
    parser.add_argument("--redis-url", help="default: a redis-server of the tool's own")
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the workers and Redis on one CPU, the load generator on another (default: with ≥ 2 CPUs)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the workers (repeatable), e.g. RIPPLE_HEARTBEAT_INTERVAL_S=5",
    )


def check_process_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    bad = [item for item in args.server_env if "=" not in item or item.startswith("=")]
    if bad:
        parser.error(f"--server-env takes NAME=VALUE, not {bad[0]!r}")


@dataclass(frozen=True)
class Pinning:
    """Which CPU the servers and Redis run on, and which the load generator runs on."""

    server_cpu: int | None
    loadgen_cpu: int | None

    @property
    def enabled(self) -> bool:
        return self.server_cpu is not None

    def prefix(self) -> list[str]:
        return ["taskset", "-c", str(self.server_cpu)] if self.server_cpu is not None else []


def choose_pinning(pin: bool | None) -> Pinning:
    """Pin by default when this process may run on two CPUs or more (``--pin``/``--no-pin`` decide)."""
    allowed = sorted(os.sched_getaffinity(0))
    if pin is None:
        pin = len(allowed) >= 2
    if not pin:
        return Pinning(None, None)
    if len(allowed) < 2:
        raise SystemExit("--pin needs at least two CPUs (this process may use only one)")
    if shutil.which("taskset") is None:
        raise SystemExit("--pin needs taskset (util-linux)")
    return Pinning(allowed[0], allowed[1])


def pin_this_process(pinning: Pinning) -> None:
    """Move the load generator to its CPU; call before any thread starts (threads inherit it)."""
    if pinning.loadgen_cpu is not None:
        os.sched_setaffinity(0, {pinning.loadgen_cpu})


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard limit (children started later inherit it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class BenchDaphne(DaphneServer):
    """A daphne worker serving ``app``, optionally pinned, with only the environment given."""

    def __init__(self, env: dict[str, str], *, app: str, pinning: Pinning, server: str = "daphne") -> None:
        super().__init__(env)
        assert self.argv[-1] == RIPPLE_APP, self.argv
        self.argv[-1] = app
        if server == "uvicorn":
            # Same application, same port; uvicorn's own websockets protocol, no access log.
            self.argv = [
                sys.executable,
                "-m",
                "uvicorn",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--ws",
                "websockets",
                "--lifespan",
                "off",
                "--no-access-log",
                app,
            ]
        elif server == "granian":
            # granian's process starts one worker process that serves: CPU and memory are read
            # from that one (``pid``); signals still go to the process started here.
            self.argv = [
                sys.executable,
                "-m",
                "granian",
                "--interface",
                "asginl",  # ASGI without lifespan, as uvicorn's --lifespan off
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--no-access-log",
                "--log-level",
                "warning",
                app,
            ]
        elif server != "daphne":
            raise ValueError(f"unknown ASGI server {server!r}")
        self.argv = [*pinning.prefix(), *self.argv]
        inherited = {k: v for k, v in (self.env or {}).items() if not k.startswith(SCRUBBED_PREFIXES)}
        self.env = {
            **inherited,
            **LIFTED_LIMITS,
            **env,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "PYTHONUNBUFFERED": "1",
        }
        self.app = app
        self.server = server
        self._serving_pid: int | None = None

    @property
    def pid(self) -> int:
        """The process that serves the sockets: the one started, or granian's one worker."""
        assert self.proc is not None
        if self.server != "granian":
            return self.proc.pid
        if self._serving_pid is None:
            children = child_pids(self.proc.pid)
            if len(children) != 1:
                raise RuntimeError(
                    f"granian (pid {self.proc.pid}) has {len(children)} worker processes, not 1"
                )
            self._serving_pid = children[0]
        return self._serving_pid

    def signal(self, signum: int) -> None:
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signum)

    def problems(self, limit: int = 5) -> dict[str, Any]:
        """Warnings, errors and tracebacks in the worker's log: counts, and the first few in full."""
        lines = self.output().splitlines()
        problems: Counter[str] = Counter()
        examples: list[str] = []
        index = 0
        while index < len(lines):
            line = lines[index]
            if line.startswith("Traceback"):
                # The exception is the first unindented line after the traceback.
                end = index + 1
                while end < len(lines) and (lines[end].startswith((" ", "\t")) or not lines[end].strip()):
                    end += 1
                exception = lines[end] if end < len(lines) else "?"
                problems[exception[:200]] += 1
                if len(examples) < limit:
                    examples.append("\n".join(lines[max(0, index - 1) : end + 1])[-3000:])
                index = end + 1
                continue
            if PROBLEM_LINE.search(line):
                problems[line[:200]] += 1
                if len(examples) < limit:
                    examples.append(line)
            index += 1
        return {"count": sum(problems.values()), "kinds": dict(problems.most_common(10)), "first": examples}


class BenchRedis(RedisServer):
    """redis-server on a free port, optionally pinned."""

    def __init__(self, pinning: Pinning) -> None:
        super().__init__()
        self.argv = [*pinning.prefix(), *self.argv]


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux /proc)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children.extend(int(child) for child in text)
    return children


def start_workers(
    count: int, *, env: dict[str, str], app: str, pinning: Pinning, server: str = "daphne"
) -> list[BenchDaphne]:
    """Start ``count`` workers (daphne, uvicorn or granian) at once and wait until each answers /healthz."""
    workers = [BenchDaphne(env, app=app, pinning=pinning, server=server) for _ in range(count)]
    try:
        with ThreadPoolExecutor(max_workers=count) as pool:
            for future in [pool.submit(worker.start) for worker in workers]:
                future.result()
    except BaseException:
        stop_all(workers)
        raise
    return workers


def stop_all(processes: Iterable[Any]) -> None:
    for process in processes:
        try:
            process.cleanup()
        except Exception as error:  # keep stopping the others
            print(f"stopping {process.name} failed: {error}", file=sys.stderr)


def fresh_sqlite_database() -> tuple[str, str]:
    """A new SQLite file in a temporary directory: (DATABASE_URL, the directory to remove)."""
    directory = tempfile.mkdtemp(prefix="ripple-bench-db-")
    return f"sqlite:///{Path(directory) / 'bench.sqlite3'}", directory


def migrate(database_url: str) -> None:
    """Create Ripple's tables in ``database_url`` with ``manage.py migrate``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    env.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        DJANGO_SECRET_KEY="ripple-bench-migrate-only",
        DATABASE_URL=database_url,
        REDIS_URL="",
    )
    completed = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"manage.py migrate failed:\n{completed.stdout}\n{completed.stderr}")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads) from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def cpu_busy_s() -> dict[str, float]:
    """Busy (non-idle) CPU seconds of the machine and of each CPU since boot, from /proc/stat."""
    busy: dict[str, float] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu"):
            break
        name, *fields = line.split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
        busy["all" if name == "cpu" else name] = (user + nice + system + irq + softirq + steal) / CLOCK_TICKS
    return busy


class RedisProbe:
    """Reads ``INFO`` from the run's Redis."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=5)

    def cpu_s(self) -> float:
        info = self.client.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    def version(self) -> str:
        return str(self.client.info("server").get("redis_version", "?"))

    def close(self) -> None:
        self.client.close()
