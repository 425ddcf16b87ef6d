"""Limits on what one socket, user or address may cost a worker (docs/security.md).

All of it is per process: a user with sockets on two workers has two buckets. Each worker
enforces its share without a Redis round trip on every frame.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
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


def give_back(buckets: tuple[TokenBucket, ...], now: float) -> None:
    """Return one token to every bucket (what ``take_all`` took), never past its burst."""
    for bucket in buckets:
        bucket._refill(now)
        bucket.tokens = min(bucket.burst, bucket.tokens + 1.0)


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


class ExpiringBuckets:
    """One bucket per key (a session, a client address), at most ``max_keys`` of them.

    A bucket that has refilled holds nothing a new one would not, so it can be forgotten: past
    ``max_keys`` the full ones go first, then the least recently used down to nine tenths of
    the bound (one sweep pays for many inserts). Forgetting a bucket that is not full gives its
    key a fresh burst: the price of a bound on memory when keys are cheap to make.
    """

    def __init__(self, max_keys: int = 10_000) -> None:
        self.max_keys = max_keys
        # Least recently used first.
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def get(self, key: str, rate: float, burst: int, now: float) -> TokenBucket:
        """The key's bucket, made full when the key is new (or was forgotten)."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            self._buckets.move_to_end(key)
            return bucket
        bucket = self._buckets[key] = TokenBucket(rate, burst, now)
        if len(self._buckets) > self.max_keys:
            self._shrink(now)
        return bucket

    def _shrink(self, now: float) -> None:
        newest = next(reversed(self._buckets))
        for key, bucket in list(self._buckets.items()):
            if key != newest and bucket.wait_s(now) == 0.0 and bucket.tokens >= bucket.burst:
                del self._buckets[key]
        keep = max(1, self.max_keys * 9 // 10)
        while len(self._buckets) > keep:
            self._buckets.popitem(last=False)

    def size(self) -> int:
        return len(self._buckets)


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
# Rooms created by subscribing (chat/throttle.py): per user or guest session, and per address.
room_creations_per_member = ExpiringBuckets()
room_creations_per_address = ExpiringBuckets()


def outbound_gauge(send: Any) -> Any:
    """A function returning the bytes written to this socket but not yet taken by the kernel.

    daphne hands the application ``functools.partial(server.handle_reply, protocol)`` and
    writes every frame to the Twisted transport at once, however slowly the peer reads; the
    transport's buffer is where a slow reader's backlog grows. Returns None for a server that
    does not expose it (uvicorn, the in-process test communicator): uvicorn applies back
    pressure itself, its ``send`` waits while the peer is not reading.
    """
    protocol = send_protocol(send)
    if protocol is None:
        return None

    def buffered() -> int:
        return transport_backlog_bytes(protocol.transport)

    return buffered


def send_protocol(send: Any) -> Any:
    """The daphne protocol (Twisted) behind ``send``, or None for any other server."""
    args = getattr(send, "args", ())
    protocol: Any = args[0] if args else None
    return protocol if getattr(protocol, "transport", None) is not None else None


def transport_backlog_bytes(transport: Any) -> int:
    """Bytes written to a Twisted transport (and the ones it wraps) not yet taken by the kernel."""
    total = 0
    for _ in range(4):  # TLS wraps the TCP transport once; stop at a sane depth
        if transport is None:
            break
        data = getattr(transport, "dataBuffer", None)
        if data is not None:
            total += len(data) - getattr(transport, "offset", 0) + getattr(transport, "_tempDataLen", 0)
        transport = getattr(transport, "transport", None)
    return total


class KeyedBuckets:
    """One token bucket per key (a client address), at most ``max_keys`` of them.

    The least recently used key is dropped first, so a stream of new keys costs bounded memory;
    a dropped key starts again with a full bucket, which is no more than a new key gets.
    """

    def __init__(self, *, max_keys: int) -> None:
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str, rate: float, burst: int, now: float) -> float:
        """Take a token from ``key``'s bucket: 0.0, or the seconds to wait (nothing taken)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate, burst, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)


def abort_connection(send: Any) -> None:
    """Cut the TCP connection behind a daphne ``send`` at once (a peer that stopped reading)."""
    args = getattr(send, "args", ())
    transport = getattr(args[0], "transport", None) if args else None
    abort = getattr(transport, "abortConnection", None)
    if abort is not None:
        abort()
