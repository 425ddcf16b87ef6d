"""What the chat and echo consumers share: no channel layer, one receive loop, no thread hop."""

from __future__ import annotations

from typing import Any

from channels.consumer import AsyncConsumer, get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

# An alias with no layer behind it: sockets get no channel of their own, because the hub
# holds this process's only channel-layer membership (one per room, not one per socket).
NO_CHANNEL_LAYER = "ripple.no-layer"


async def dispatch_without_db_hop(consumer: AsyncWebsocketConsumer, message: dict[str, Any]) -> None:
    """Channels' dispatch without its stale-connection check before every frame and at the close.

    database_sync_to_async already closes stale connections around each query, so the check is
    a thread hop per frame for nothing; and a socket that never queries never touches the
    database, so a test without the django_db mark passes even when an earlier test left a
    persistent connection open in asgiref's thread (docs/testing.md).
    """
    if message["type"] == "websocket.disconnect":
        # websocket_disconnect without its hop: these consumers join no channel-layer groups.
        await consumer.disconnect(message.get("code", 1005))
        raise StopConsumer()
    handler = getattr(consumer, get_handler_name(message), None)
    if handler is None:
        raise ValueError(f"no handler for message type {message['type']}")
    await handler(message)


async def serve_without_layer(
    consumer: AsyncConsumer, scope: dict[str, Any], receive: Any, send: Any
) -> None:
    """``AsyncConsumer.__call__`` for a consumer with no channel layer: one plain receive loop.

    Channels waits on the client and the channel layer at once: a new task for every frame,
    an ``asyncio.wait`` around it, and the last finished task kept alive between frames. With
    no layer there is one source, so the frames are awaited in turn, the way a plain ASGI
    application reads them.
    """
    consumer.scope = scope
    consumer.channel_layer = None
    consumer.base_send = send
    try:
        while True:
            await consumer.dispatch(await receive())
    except StopConsumer:
        pass
