"""Group sends of this event loop, batched while Redis is busy: a burst costs one round trip.

channels_redis' pub/sub layer sends each ``group_send`` as a ``PUBLISH`` of its own and waits
for the answer under its shard's lock, so under load the sends queue up one round trip each,
and each costs redis-py's whole command path. Here a send that finds another one in flight on
its shard waits for it, then goes with every send queued meanwhile in one write. A lone send
costs one round trip; n sends queued behind one cost one round trip, not n. Order is kept: a
batch is written in the order its sends were made, and a shard's batches go one after another.
Every write goes on one connection of the shard's pool that the publisher holds, written and
read directly (``ShardPublisher._connection``), not through redis-py's command path.

Only channels_redis' ``RedisPubSubChannelLayer`` is batched: this reads its internals (a
group's channel name and shard, its serializer, the shard's Redis pool), checked
once per layer (``batched_layer``; tests/integration/test_publish_batches.py fails if the
installed channels_redis no longer has them). Every other layer (the core layer, the in-memory
one) gets ``group_send`` unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

# What the batching reads of channels_redis.pubsub: the per-loop layer's, and a shard's.
LOOP_LAYER_NEEDS = ("_get_group_channel_name", "_get_shard", "_shards")
SHARD_NEEDS = ("_ensure_redis",)


class ShardPublisher:
    """One Redis shard's sends from this event loop: at most one round trip in flight."""

    def __init__(self, shard: Any) -> None:
        self.shard = shard
        self.in_flight = False
        # Sends waiting for the round trip in flight: (channel, payload, future).
        self.queued: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._flush_task: asyncio.Task[None] | None = None
        # The shard's pool and the connection this publisher holds of it (``_connection``).
        self._held: tuple[Any, Any] | None = None
        # Round trips made, and sends they carried (tests and docs/benchmarks.md read them).
        self.round_trips = 0
        self.sent = 0

    async def publish(self, channel: str, payload: bytes) -> None:
        """Publish one payload; returns once Redis has taken it (raises if it did not)."""
        if self.in_flight:
            done = asyncio.get_running_loop().create_future()
            self.queued.append((channel, payload, done))
            await done
            return
        self.in_flight = True
        try:
            await self._write([(channel, payload)])
        finally:
            if self.queued:
                self._flush_task = asyncio.get_running_loop().create_task(self._flush())
            else:
                self.in_flight = False

    async def _flush(self) -> None:
        """Write what queued behind a round trip, batch after batch, until nothing is left."""
        try:
            while self.queued:
                batch, self.queued = self.queued, []
                try:
                    await self._write([(channel, payload) for channel, payload, _ in batch])
                except BaseException as error:
                    for *_, done in batch:
                        if not done.done():
                            done.set_exception(error if isinstance(error, Exception) else ConnectionError())
                    if not isinstance(error, Exception):
                        raise
                else:
                    for *_, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            # Cancelled (the loop is ending): whatever is still queued will not be sent.
            for *_, done in self.queued:
                if not done.done():
                    done.set_exception(ConnectionError("the publisher stopped"))
            self.queued = []
            self.in_flight = False
            self._flush_task = None

    async def _write(self, batch: list[tuple[str, bytes]]) -> None:
        """PUBLISH ``batch`` in one write on this publisher's own connection; once more, on a new
        connection, if that one fails (a repeat is harmless: hubs drop a ``seq`` they have)."""
        for attempt in (1, 2):
            pool, connection = await self._connection()
            try:
                await connection.send_packed_command(
                    connection.pack_commands([("PUBLISH", channel, payload) for channel, payload in batch]),
                    check_health=False,
                )
                for _ in batch:
                    await connection.read_response()
            except (RedisConnectionError, RedisTimeoutError, OSError):
                self._held = None
                await connection.disconnect()
                await pool.release(connection)
                if attempt == 2:
                    raise
            except ResponseError:
                # Its batch's other replies are still unread: start the next write afresh.
                await connection.disconnect()
                raise
            else:
                break
        self.round_trips += 1
        self.sent += len(batch)

    async def _connection(self) -> tuple[Any, Any]:
        """The shard's pool, and a connection of it held for publishing alone.

        redis-py's ``publish`` takes a connection from the pool and gives it back around every
        command, through its retry wrapper and its reply callbacks: about two thirds of what a
        ``PUBLISH`` cost the event loop (docs/benchmarks.md). The connection is the pool's, so
        it closes when the shard's pool does (``flush``); a new pool gets a new one.
        """
        shard = self.shard
        shard._ensure_redis()
        pool = shard._redis.connection_pool
        held = self._held
        if held is None or held[0] is not pool:
            self._held = held = (pool, await pool.get_connection())
        return held


# The attribute each shard keeps its publisher in (a shard belongs to one event loop's layer,
# so to one loop, and the publisher goes when the shard does).
PUBLISHER_ATTRIBUTE = "_ripple_publisher"
# Whether each layer class is batched (checked once per class).
_batched_classes: dict[type, bool] = {}


def batched(layer: Any) -> bool:
    """Whether ``layer``'s group sends are batched here: channels_redis' pub/sub layer, as expected."""
    cls = type(layer)
    known = _batched_classes.get(cls)
    if known is None:
        known = False
        if cls.__name__ == "RedisPubSubChannelLayer" and hasattr(cls, "_get_layer"):
            loop_layer = layer._get_layer()
            known = all(hasattr(loop_layer, name) for name in LOOP_LAYER_NEEDS) and all(
                hasattr(shard, name)
                for shard in getattr(loop_layer, "_shards", [None])
                for name in SHARD_NEEDS
            )
            if not known:
                logger.warning(
                    "channels_redis' pub/sub layer is not as expected: group sends are not batched"
                )
        _batched_classes[cls] = known
    return known


def shard_publisher(shard: Any) -> ShardPublisher:
    publisher: ShardPublisher | None = getattr(shard, PUBLISHER_ATTRIBUTE, None)
    if publisher is None:
        publisher = ShardPublisher(shard)
        setattr(shard, PUBLISHER_ATTRIBUTE, publisher)
    return publisher


async def group_send(layer: Any, group: str, message: dict[str, Any]) -> None:
    """``layer.group_send(group, message)``, batched with this loop's other sends when it can be."""
    if not batched(layer):
        await layer.group_send(group, message)
        return
    loop_layer = layer._get_layer()
    channel = loop_layer._get_group_channel_name(group)
    await shard_publisher(loop_layer._get_shard(channel)).publish(channel, layer.serialize(message))
