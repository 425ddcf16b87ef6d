"""Limits on what one socket, user or address may cost a worker (docs/security.md).

All of it is per process: a user with sockets on two workers has two buckets. Each worker
enforces its share without a Redis round trip on every frame.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; a full bucket to start with."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float | None = None) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic() if now is None else now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_s(self, now: float) -> float:
        """Seconds until a token is free (0.0: one is free now)."""
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self, now: float) -> float:
        """Take a token and return 0.0, or take nothing and return the seconds to wait."""
        wait = self.wait_s(now)
        if wait == 0.0:
            self.tokens -= 1.0
        return wait


def take_all(buckets: tuple[TokenBucket, ...], now: float) -> float:
    """Take one token from every bucket, or from none: the longest wait when one is empty."""
    wait = max(bucket.wait_s(now) for bucket in buckets)
    if wait == 0.0:
        for bucket in buckets:
            bucket.tokens -= 1.0
    return wait


class SharedBuckets:
    """One bucket per key (a user), shared by that key's sockets, dropped with the last one."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[TokenBucket, int]] = {}

    def acquire(self, key: str, rate: float, burst: int) -> TokenBucket:
        found = self._buckets.get(key)
        bucket = found[0] if found else TokenBucket(rate, burst)
        self._buckets[key] = (bucket, (found[1] if found else 0) + 1)
        return bucket

    def release(self, key: str) -> None:
        found = self._buckets.get(key)
        if found is None:
            return
        if found[1] <= 1:
            del self._buckets[key]
        else:
            self._buckets[key] = (found[0], found[1] - 1)


class ConnectionCounter:
    """Open sockets per key (user, client address) in this process, against a cap."""

    def __init__(self) -> None:
        self._open: Counter[str] = Counter()

    def try_add(self, key: str, cap: int) -> bool:
        if self._open[key] >= cap:
            return False
        self._open[key] += 1
        return True

    def remove(self, key: str) -> None:
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]

    def count(self, key: str) -> int:
        return self._open.get(key, 0)


# Process-wide: sockets of one user share their message bucket; caps count every socket here.
user_message_buckets = SharedBuckets()
connections_per_user = ConnectionCounter()
connections_per_address = ConnectionCounter()


def outbound_gauge(send: Any) -> Any:
    """A function returning the bytes written to this socket but not yet taken by the kernel.

    daphne hands the application ``functools.partial(server.handle_reply, protocol)`` and
    writes every frame to the Twisted transport at once, however slowly the peer reads; the
    transport's buffer is where a slow reader's backlog grows. Returns None for a server that
    does not expose it (uvicorn, the in-process test communicator): uvicorn applies back
    pressure itself, its ``send`` waits while the peer is not reading.
    """
    args = getattr(send, "args", ())
    protocol: Any = args[0] if args else None
    if getattr(protocol, "transport", None) is None:
        return None

    def buffered() -> int:
        total = 0
        transport = protocol.transport
        for _ in range(4):  # TLS wraps the TCP transport once; stop at a sane depth
            if transport is None:
                break
            data = getattr(transport, "dataBuffer", None)
            if data is not None:
                total += len(data) - getattr(transport, "offset", 0) + getattr(transport, "_tempDataLen", 0)
            transport = getattr(transport, "transport", None)
        return total

    return buffered
