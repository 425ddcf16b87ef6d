"""The storm's command line: its options, their checks, and the one-line description of the load."""

from __future__ import annotations

import argparse

from .. import fanout, harness
from .stats import BUCKET_CHOICES_MS, HISTOGRAM_BUCKETS

HELP = "restart workers under N connected clients (drain or abrupt): close codes, reconnect times, errors"

# --stop: how a restarted worker is stopped, and the RIPPLE_DRAIN_ON_SIGTERM it is started with.
STOP_DRAIN_ON_SIGTERM = {"drain": "1", "term": "0"}
# project/settings.py's RIPPLE_DRAIN_S default, used when --server-env does not set it.
DEFAULT_DRAIN_S = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--clients", type=fanout.bounded_int(1, 5000), default=1000, help="connected clients (≤ 5000)"
    )
    parser.add_argument(
        "--rooms", type=fanout.bounded_int(1, 1000), default=10, help="rooms; client i joins room i mod rooms"
    )
    parser.add_argument(
        "--workers", type=fanout.bounded_int(1, 16), default=2, help="daphne processes; clients round-robin"
    )
    parser.add_argument(
        "--restart",
        choices=("one", "all"),
        default="all",
        help="restart the first worker only, or every worker at once (a full redeploy or host restart)",
    )
    parser.add_argument(
        "--stop",
        choices=("drain", "term", "kill"),
        default="drain",
        help="drain: SIGTERM to a draining worker (4512 closes over RIPPLE_DRAIN_S, then it exits); "
        "term: SIGTERM with RIPPLE_DRAIN_ON_SIGTERM=0 (daphne drops every socket, 1006); kill: SIGKILL",
    )
    parser.add_argument(
        "--route",
        choices=("direct", "balancer"),
        default="direct",
        help="direct: a client reconnects to its own worker; balancer: like deploy/nginx.conf "
        "(fewest connections, the next worker on a refusal or a 403); needs 2 workers or more",
    )
    parser.add_argument(
        "--messages",
        type=fanout.bounded_int(0, 100),
        default=5,
        help="messages per room posted before the restart, and as many again during the storm",
    )
    parser.add_argument(
        "--timeout",
        type=fanout.bounded_float(5, 300),
        default=60.0,
        help="seconds after the signal to give up waiting for clients to come back",
    )
    parser.add_argument(
        "--bucket-ms",
        type=int,
        choices=BUCKET_CHOICES_MS,
        default=None,
        help=f"histogram bucket; None: per histogram, the smallest with ≤ {HISTOGRAM_BUCKETS} buckets",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the clients' jitter; None: a random one"
    )
    # The options every scenario shares: --layer, --json, --database-url, --redis-url, --pin, --server-env.
    harness.add_server_arguments(parser)


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    harness.check_server_arguments(parser, args)
    if args.layer == "none":
        parser.error("--layer none is one process only; the storm's workers share Redis (pubsub or core)")
    if args.rooms > args.clients:
        parser.error("--rooms must not exceed --clients (every room needs a client)")
    if args.workers > args.clients:
        parser.error("--workers must not exceed --clients (every worker needs a client)")
    if args.route == "balancer" and args.workers < 2:
        parser.error("--route balancer needs --workers 2 or more (a worker to move to)")
    given = dict(item.split("=", 1) for item in args.server_env)
    wanted = STOP_DRAIN_ON_SIGTERM.get(args.stop)
    if wanted is not None:
        if given.get("RIPPLE_DRAIN_ON_SIGTERM", wanted) != wanted:
            parser.error(f"--stop {args.stop} starts the workers with RIPPLE_DRAIN_ON_SIGTERM={wanted}")
        given["RIPPLE_DRAIN_ON_SIGTERM"] = wanted
    try:
        float(given.get("RIPPLE_DRAIN_S", DEFAULT_DRAIN_S))
    except ValueError:
        parser.error("RIPPLE_DRAIN_S must be a number of seconds")
    # Every client comes from 127.0.0.1: the per-address cap (200 by default) must not refuse them.
    given.setdefault("RIPPLE_MAX_CONNECTIONS_PER_IP", str(args.clients + 100))
    args.server_env = [f"{name}={value}" for name, value in given.items()]


def drain_window_s(args: argparse.Namespace) -> float:
    """The workers' RIPPLE_DRAIN_S: from --server-env, else the settings' default."""
    given = dict(item.split("=", 1) for item in args.server_env)
    return float(given.get("RIPPLE_DRAIN_S", DEFAULT_DRAIN_S))


def describe_load(args: argparse.Namespace) -> str:
    restarted = "all workers" if args.restart == "all" else "worker 1"
    stop = {
        "drain": f"drain ({drain_window_s(args):g} s) and restart",
        "term": "SIGTERM without drain and restart",
        "kill": "SIGKILL and restart",
    }[args.stop]
    return (
        f"{args.clients} clients, {args.rooms} rooms, {args.workers} workers ({args.layer}, {args.route}); "
        f"{stop} {restarted}; {args.messages} + {args.messages} messages per room"
    )
