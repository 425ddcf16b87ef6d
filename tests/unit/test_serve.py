"""project/serve.py: which event loop a worker serves on, and a clear refusal when it cannot.

Each case starts a fresh interpreter: the reactor is installed once per process, before daphne
is imported, which is exactly what the launcher has to get right.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from project.serve import event_loop_name
from tests.support.processes import ROOT

# What daphne's server runs on once imported after the launcher installed the reactor.
PROBE = textwrap.dedent(
    """
    from project.serve import event_loop_name, install_reactor
    loop = install_reactor(event_loop_name())
    import daphne.server  # keeps an asyncio reactor it finds installed
    from twisted.internet import reactor
    assert reactor._asyncioEventloop is loop
    print(type(loop).__module__.partition(".")[0])
    """
)


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "RIPPLE_EVENT_LOOP"}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "uvloop"),
        ("", "uvloop"),
        ("uvloop", "uvloop"),
        ("asyncio", "asyncio"),
        (" AsyncIO ", "asyncio"),
    ],
)
def test_the_event_loop_setting_defaults_to_uvloop(value, expected):
    environ = {} if value is None else {"RIPPLE_EVENT_LOOP": value}
    assert event_loop_name(environ) == expected


def test_an_unknown_event_loop_is_refused_by_name():
    with pytest.raises(SystemExit, match="RIPPLE_EVENT_LOOP must be one of uvloop, asyncio, not 'trio'"):
        event_loop_name({"RIPPLE_EVENT_LOOP": "trio"})


@pytest.mark.parametrize(("value", "expected"), [(None, "uvloop"), ("asyncio", "asyncio")])
def test_daphne_runs_on_the_loop_the_launcher_installed(value, expected):
    completed = run_python(PROBE, **({} if value is None else {"RIPPLE_EVENT_LOOP": value}))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == expected


def test_without_uvloop_the_launcher_says_what_to_do(tmp_path):
    # A uvloop that cannot be imported, ahead of the installed one on the path.
    (tmp_path / "uvloop.py").write_text("raise ImportError('no uvloop here')\n")
    completed = subprocess.run(
        [sys.executable, "-m", "project.serve", "--help"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "RIPPLE_EVENT_LOOP": "uvloop"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode != 0
    assert "needs the uvloop package" in completed.stderr
    assert "RIPPLE_EVENT_LOOP=asyncio" in completed.stderr


def test_a_reactor_installed_before_the_launcher_is_an_error():
    completed = run_python(
        "from twisted.internet import reactor\n"
        "from project.serve import install_reactor\n"
        "install_reactor('uvloop')"
    )
    assert completed.returncode != 0
    assert "project.serve must run first" in completed.stderr


def test_asgi_threads_sizes_the_default_executor_as_daphne_does():
    completed = run_python(
        "import asyncio, threading, time\n"
        "from project.serve import install_reactor\n"
        "loop = install_reactor('uvloop')\n"
        "def work():\n"
        "    time.sleep(0.1)\n"
        "    return threading.get_ident()\n"
        "async def main():\n"
        "    return await asyncio.gather(*(loop.run_in_executor(None, work) for _ in range(8)))\n"
        "print(len(set(loop.run_until_complete(main()))))",
        ASGI_THREADS="3",
    )
    assert completed.returncode == 0, completed.stderr
    # Eight blocking calls at once: without the setting the default pool would run more at once.
    assert completed.stdout.strip() == "3"
