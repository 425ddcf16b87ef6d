"""The tutorial echo socket (``/ws/echo/``), kept as the classic example next to the chat."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from .dispatch import NO_CHANNEL_LAYER, dispatch_without_db_hop, serve_without_layer


class EchoConsumer(AsyncWebsocketConsumer):
    """The classic Node ``ws`` tutorial server: greets, then echoes with a suffix."""

    channel_layer_alias = NO_CHANNEL_LAYER

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await serve_without_layer(self, scope, receive, send)

    async def dispatch(self, message: dict[str, Any]) -> None:
        await dispatch_without_db_hop(self, message)

    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data="Hello Client")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None:
            await self.send(text_data=f"received: {text_data}(From Server)")
        else:
            await self.send(text_data=f"received: {len(bytes_data or b'')} bytes(From Server)")
