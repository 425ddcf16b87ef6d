"""daphne on uvloop's event loop: ``python -m project.serve`` takes daphne's own command line.

daphne runs Twisted's asyncio reactor on an event loop it makes with ``asyncio.new_event_loop()``
when ``daphne.server`` is first imported, and it keeps a reactor already installed if that is
an asyncio one. Here the reactor is installed first, on uvloop's loop; daphne's command line
then runs on it unchanged. Every process that serves Ripple starts this way: ``make run``,
``make cluster`` (deploy/cluster.py), the Dockerfile, the tests and the benchmark
(bench/processes.py).

Why: the worker's event loop runs every socket read, every timer and every task step. On
uvloop the same worker idles at about three quarters of the CPU with 10,000 sockets, connects
faster and echoes a little faster (docs/benchmarks.md, issue 14, sixth pass).

``RIPPLE_EVENT_LOOP=asyncio`` keeps asyncio's own loop (daphne as ``daphne`` starts it);
``uvloop``, the default, needs the uvloop package (requirements.txt) and says so if it is
missing. ``ASGI_THREADS`` sizes the loop's default executor, as daphne does for its own loop.
``manage.py runserver`` (development) keeps asyncio's loop.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

EVENT_LOOPS = ("uvloop", "asyncio")


def event_loop_name(environ: Mapping[str, str] = os.environ) -> str:
    """The loop ``RIPPLE_EVENT_LOOP`` names (default uvloop); anything else is refused by name."""
    name = environ.get("RIPPLE_EVENT_LOOP", "").strip().lower() or "uvloop"
    if name not in EVENT_LOOPS:
        raise SystemExit(f"RIPPLE_EVENT_LOOP must be one of {', '.join(EVENT_LOOPS)}, not {name!r}")
    return name


def new_loop(name: str) -> Any:
    if name == "asyncio":
        import asyncio

        return asyncio.new_event_loop()
    try:
        import uvloop
    except ImportError:
        raise SystemExit(
            "RIPPLE_EVENT_LOOP=uvloop (the default) needs the uvloop package: "
            "pip install -r requirements.txt, or set RIPPLE_EVENT_LOOP=asyncio"
        ) from None
    return uvloop.new_event_loop()


def install_reactor(name: str) -> Any:
    """Install Twisted's asyncio reactor on a new loop of kind ``name``; the loop."""
    if "twisted.internet.reactor" in sys.modules:
        raise RuntimeError("a Twisted reactor is installed already: project.serve must run first")
    from twisted.internet import asyncioreactor

    loop = new_loop(name)
    if "ASGI_THREADS" in os.environ:
        loop.set_default_executor(ThreadPoolExecutor(max_workers=int(os.environ["ASGI_THREADS"])))
    asyncioreactor.install(loop)
    return loop


def main(argv: list[str] | None = None) -> None:
    install_reactor(event_loop_name())
    from daphne.cli import CommandLineInterface

    CommandLineInterface().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
