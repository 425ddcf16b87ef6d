"""deploy/cluster.py (`make cluster`): Redis, migrations, two daphne workers, and a clean stop."""

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import websockets

from tests.support.frames import recv_until
from tests.support.origins import same_origin
from tests.support.processes import ROOT, ManagedProcess, free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

PIDS_LINE = re.compile(r"^cluster: pids (?P<pids>.+)$", re.MULTILINE)


def answers_healthz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def pid_gone(pid: int) -> bool:
    """No such process, or only its zombie is left (it runs no more)."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        return state in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def is_ours(pid: int) -> bool:
    """Still one of the processes the cluster started (not a recycled PID)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"project.serve" in cmdline or b"redis-server" in cmdline


def started_pids(cluster: ManagedProcess) -> dict[str, int]:
    def pids_line():
        if not cluster.alive():
            raise AssertionError(f"cluster.py exited early:\n{cluster.output()}")
        return PIDS_LINE.search(cluster.output())

    found = wait_until(pids_line, timeout_s=60, what="cluster.py to print its children's PIDs")
    pairs = (item.split("=", 1) for item in found["pids"].split())
    return {name: int(pid) for name, pid in pairs}


async def test_cluster_runs_two_workers_on_one_redis_and_stops_on_sigint(live_database_url):
    first, second = free_port(), free_port()
    while second == first:
        second = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DJANGO_SECRET_KEY": "ripple-tests-only-not-secret",
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": live_database_url,
        "DJANGO_LOG_LEVEL": "WARNING",
        # Delivery must come through Redis, not the periodic database tail check.
        "RIPPLE_TAIL_CHECK_S": "600",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)  # the cluster starts (and must stop) a Redis of its own
    cluster = ManagedProcess(
        "cluster",
        [sys.executable, str(ROOT / "deploy" / "cluster.py"), "--ports", f"{first},{second}"],
        env=env,
    )
    pids: dict[str, int] = {}
    try:
        cluster.start()
        pids = started_pids(cluster)
        assert set(pids) == {"redis", "worker1", "worker2"}, cluster.output()

        def ready() -> bool:
            if not cluster.alive():
                raise AssertionError(f"cluster.py exited early:\n{cluster.output()}")
            return "/rooms/demo/ in 2 tabs" in cluster.output()

        # The runner says what to open once both workers answer /healthz.
        wait_until(ready, timeout_s=60, what="cluster.py to report both workers up", interval_s=0.2)
        assert answers_healthz(first), cluster.output()
        assert answers_healthz(second), cluster.output()

        async with (
            websockets.connect(
                f"ws://127.0.0.1:{first}/ws/chat/", origin=same_origin(f"ws://127.0.0.1:{first}/ws/chat/")
            ) as sender,
            websockets.connect(
                f"ws://127.0.0.1:{second}/ws/chat/", origin=same_origin(f"ws://127.0.0.1:{second}/ws/chat/")
            ) as receiver,
        ):
            for ws in (sender, receiver):
                assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "welcome"
                await ws.send(json.dumps({"type": "subscribe", "room": "x"}))
                await recv_until(ws, "subscribed", 10)
            await sender.send(json.dumps({"type": "message", "room": "x", "body": "hi", "client_id": "c1"}))
            ack = await recv_until(sender, "ack", 10)
            message = await recv_until(receiver, "message", 10)
            assert (message["body"], message["seq"]) == ("hi", ack["seq"])

        cluster.signal(signal.SIGINT)
        try:
            code = cluster.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"cluster.py still running 20 s after SIGINT:\n{cluster.output()}")
        assert code == 0, cluster.output()
        still_running = {name: pid for name, pid in pids.items() if not pid_gone(pid)}
        assert not still_running, f"left running: {still_running}\n{cluster.output()}"
        assert "cluster: stopped" in cluster.output()
    finally:
        cluster.cleanup()
        # Should the runner have been killed before it could stop them: its children too.
        for pid in pids.values():
            if not pid_gone(pid) and is_ours(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
