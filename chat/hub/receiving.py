"""channels_redis' pub/sub receive loop, reading without a timer per message.

``RedisSingleShardConnection._do_receiving`` asks redis-py for the next message with a 0.1 s
timeout, in a loop: every message read sets up and cancels an asyncio timeout, and an idle
worker wakes ten times a second per shard to find nothing. On the echo benchmark the timer was
a third of what reading a message cost the event loop (docs/benchmarks.md). Here the same loop
waits for the next message without a timeout, as redis-py's own ``listen()`` does; what is
read is handed on by the shard's own ``_receive_message``, unchanged. Reconnecting after a
lost connection (and subscribing again) stays redis-py's, as before.

Installed once, when the hub is imported; ``installed_layer_fits`` says whether the installed
channels_redis still has what this replaces (tests/integration/test_publish_batches.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# How often a shard with nothing subscribed looks again (channels_redis' own figure).
IDLE_POLL_S = 0.1
# The pause after an unexpected failure, before reading again (channels_redis' own figure).
FAILURE_PAUSE_S = 1.0
# What the shard class must have: the loop replaced, and the hand-off it calls (it also reads
# the shard's ``_pubsub``, set in ``__init__``).
CLASS_NEEDS = ("_do_receiving", "_receive_message")


async def receive_without_timer(shard: Any) -> None:
    """A shard's receive loop: every message on its pub/sub connection, handed to the layer."""
    while True:
        pubsub = shard._pubsub
        try:
            if pubsub is not None and pubsub.subscribed:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                shard._receive_message(message)
            else:
                await asyncio.sleep(IDLE_POLL_S)
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except (RedisError, OSError) as error:
            # Redis restarted or dropped the connection: redis-py connects (and subscribes)
            # again on the next read; the hub's health check handles a Redis that stays away.
            logger.warning("the channel layer's Redis connection failed (%s); reading again in 1 s", error)
            await asyncio.sleep(FAILURE_PAUSE_S)
        except Exception:
            logger.exception("the channel layer's receive loop failed; reading again in 1 s")
            await asyncio.sleep(FAILURE_PAUSE_S)


def shard_class() -> type | None:
    try:
        from channels_redis.pubsub import RedisSingleShardConnection
    except ImportError:  # channels_redis is not installed: nothing to replace
        return None
    return RedisSingleShardConnection


def installed_layer_fits() -> bool:
    cls = shard_class()
    return cls is not None and all(hasattr(cls, name) for name in CLASS_NEEDS)


def install() -> None:
    """Make every channels_redis pub/sub shard receive with ``receive_without_timer``."""
    cls = shard_class()
    if cls is None:
        return
    if not installed_layer_fits():
        logger.warning("channels_redis' pub/sub shard is not as expected: its receive loop is kept")
        return
    cls._do_receiving = receive_without_timer  # type: ignore[attr-defined]
