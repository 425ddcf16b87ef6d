"""The live admin dashboard: every process's numbers, merged and pushed once a second.

Three parts, one job each: ``store`` (where each process reports its snapshot, and where they
are read back), ``frames`` (the ``dashboard`` frame built from the snapshots) and ``consumer``
(``/ws/admin/dashboard/``, the staff socket that pushes the frame). The hub reports into the
store only, so it never imports the consumer.
"""

from .consumer import NO_CHANNEL_LAYER, PUSH_INTERVAL_S, DashboardConsumer
from .frames import BUSIEST_ROOMS, CHART_WINDOW_S, RATE_WINDOW_S, RECENT_EVENTS, build_frame, current_frame
from .store import (
    DEFAULT_EXPIRY_S,
    INDEX_KEY,
    KEY_PREFIX,
    REDIS_TIMEOUT_S,
    _local,
    close_redis_client,
    expiry_s,
    processes,
    redis_client,
    report,
)

__all__ = [
    "BUSIEST_ROOMS",
    "CHART_WINDOW_S",
    "DEFAULT_EXPIRY_S",
    "INDEX_KEY",
    "KEY_PREFIX",
    "NO_CHANNEL_LAYER",
    "PUSH_INTERVAL_S",
    "RATE_WINDOW_S",
    "RECENT_EVENTS",
    "REDIS_TIMEOUT_S",
    "DashboardConsumer",
    "_local",
    "build_frame",
    "close_redis_client",
    "current_frame",
    "expiry_s",
    "processes",
    "redis_client",
    "report",
]
