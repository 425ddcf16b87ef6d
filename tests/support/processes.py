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


def worker_env(database_url: str, **env: str) -> dict[str, str]:
    """The environment of a test's daphne worker: production settings, no Redis, plus ``env``."""
    return {
        "DJANGO_SECRET_KEY": "ripple-tests-only-not-secret",
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database_url,
        "REDIS_URL": "",
        "DJANGO_LOG_LEVEL": "WARNING",
        **env,
    }


__all__ = [
    "ROOT",
    "DaphneServer",
    "ManagedProcess",
    "RedisServer",
    "free_port",
    "redis_server_binary",
    "wait_until",
    "worker_env",
]
