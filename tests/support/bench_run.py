"""Run ``python -m bench`` from a test and leave nothing behind, even when it hangs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

from .processes import ROOT

# After SIGTERM the tool stops its workers and Redis itself; this long is allowed for that.
CLEANUP_S = 20


def run_bench(args: list[str], *, timeout_s: float) -> subprocess.CompletedProcess:
    """``python -m bench *args`` in its own process group; on timeout the whole group is stopped.

    ``subprocess.run(timeout=...)`` would SIGKILL only the tool, orphaning the daphne workers
    and the redis-server it started. Here the group gets SIGTERM (the tool's own clean-up),
    then SIGKILL for whatever is left; the test then fails with the tool's output.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=CLEANUP_S)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        raise AssertionError(
            f"python -m bench {' '.join(args)} ran over {timeout_s} s and was stopped:\n{stdout}\n{stderr}"
        ) from None
    finally:
        # Workers the tool failed to stop on its way out belong to the same group.
        _signal_group(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)
