"""ripple-socket.js's reconnect policy and close codes, mirrored so the storm has the real client's shape."""

from __future__ import annotations

import random

# ripple-socket.js's DEFAULTS, so the storm has the shape the real client gives it.
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
QUICK_RECONNECT_S = 1.0
MAX_ATTEMPTS = 20
STABLE_AFTER_S = 5.0
CONNECT_TIMEOUT_S = 15.0
# The client's CLOSE codes that change what it does next (static/js/ripple/constants.js;
# tests/unit/test_protocol_sync.py checks this copy).
CLOSE_GOING_AWAY = 1001
CLOSE_ABNORMAL = 1006
CLOSE_POLICY_VIOLATION = 1008
CLOSE_SERVICE_RESTART = 1012
CLOSE_CLIENT_CONNECT_TIMEOUT = 4001
CLOSE_CLIENT_SUBSCRIBE_FAILED = 4002
CLOSE_HEARTBEAT_TIMEOUT = 4408
CLOSE_DRAINING = 4512
# isQuickReconnectClose: reconnect after random() × 1 s, counting no failure.
QUICK_RECONNECT_CODES = frozenset({CLOSE_GOING_AWAY, CLOSE_SERVICE_RESTART, CLOSE_DRAINING})
# What each close code a client may see means (chat/protocol/codes.py, ripple-socket.js), for the report.
CLOSE_NAMES = {
    1000: "normal",
    1001: "going away",
    1006: "dropped, no close frame",
    1011: "internal error",
    1012: "service restart",
    4001: "client: connect timeout",
    4002: "client: subscribe failed",
    4401: "session ended",
    4403: "disconnected by a moderator",
    4408: "heartbeat timeout",
    4409: "too many connections",
    4429: "flooding",
    4503: "try again later",
    4509: "too slow",
    4512: "draining",
}


def backoff_s(tries: int, rng: random.Random) -> float:
    """``Timer.delayFor(tries)``: full jitter, ``random() × min(max, base × 2 ** tries)``."""
    return rng.random() * min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, tries))


def is_no_retry_close(code: int) -> bool:
    """``isNoRetryClose``: the server does not want this client back."""
    return code == CLOSE_POLICY_VIOLATION or (4400 <= code <= 4499 and code != CLOSE_HEARTBEAT_TIMEOUT)
