"""The ``storm`` scenario: restart Ripple's workers under many connected clients and time the reconnect storm.

``--clients`` clients connect round-robin to ``--workers`` daphne processes that share one Redis,
each subscribed to one of ``--rooms`` rooms, and one client per room posts ``--messages``
messages. Then the scenario stops one worker or all of them (``--restart``) and starts each again
on the same port as soon as it has exited. ``--stop drain`` (the default) sends SIGTERM to a worker
that drains (``RIPPLE_DRAIN_ON_SIGTERM=1``: every socket closed with 4512 at a random moment within
``RIPPLE_DRAIN_S``, new handshakes refused with HTTP 403, then the process exits); ``--stop term``
sends SIGTERM to a worker that does not (daphne's own shutdown: every socket drops, 1006);
``--stop kill`` sends SIGKILL. Every client that lost its socket reconnects with the policy of
``static/js/ripple-socket.js`` (``StormClient``), straight to its worker or, with ``--route
balancer``, through an emulation of deploy/nginx.conf's upstream (least connections, the next
worker on a refusal or a 403), and re-subscribes with ``since`` = the last seq it saw, while one
client per room posts ``--messages`` more. Measured: when each client saw its socket close (and
with which code), the time from that close to its next ``subscribed`` (percentiles and
histograms), the time until every client is back, attempts per client, handshake failures by
kind and by the restarted worker's state (refused with 403 while it drains and refused while it
is down are expected; failures once it answers /healthz again are errors), subscribe errors,
and messages a client missed or got twice across the resume.

Modules, one concept each: ``cli`` (options and their checks), ``policy`` (ripple-socket.js's
reconnect policy and close codes), ``client`` (``StormClient``, one tab), ``balancer`` (the
nginx upstream emulation), ``state`` (what every client shares), ``orchestration`` (connect,
restart, wait), ``stats`` (figures) and ``report`` (table and notes).
"""

from __future__ import annotations

import argparse

from .. import harness
from .cli import HELP, add_arguments, check_arguments, describe_load
from .orchestration import measure
from .report import table

__all__ = ["HELP", "add_arguments", "check_arguments", "run"]


def run(args: argparse.Namespace) -> int:
    return harness.run_scenario("storm", args, load=describe_load(args), measure=measure, table=table)
