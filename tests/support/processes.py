"""Real processes for tests: redis-server and daphne on free loopback ports, always stopped.

They live in ``bench/processes.py`` (the benchmark and ``deploy/cluster.py`` start the same
processes; bench imports nothing from tests); these names stay importable from here.
"""

from bench.processes import (
    ROOT,
    DaphneServer,
    ManagedProcess,
    RedisServer,
    free_port,
    redis_server_binary,
    wait_until,
)

__all__ = [
    "ROOT",
    "DaphneServer",
    "ManagedProcess",
    "RedisServer",
    "free_port",
    "redis_server_binary",
    "wait_until",
]
