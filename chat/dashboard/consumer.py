"""``DashboardConsumer`` (``/ws/admin/dashboard/``, staff only): a ``dashboard`` frame a second."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from .. import stats as stats_module
from ..logs import log_event
from .frames import current_frame

logger = logging.getLogger(__name__)

PUSH_INTERVAL_S = 1.0
# Not a channel-layer alias: a dashboard socket receives nothing from the layer.
NO_CHANNEL_LAYER = "ripple.no-layer"


def _is_staff(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


class DashboardConsumer(AsyncWebsocketConsumer):
    """One staff member's dashboard tab: a ``dashboard`` frame every second."""

    channel_layer_alias = NO_CHANNEL_LAYER

    async def connect(self) -> None:
        self.pusher: asyncio.Task | None = None
        if not _is_staff(self.scope.get("user")):
            stats_module.stats.handshakes_rejected_total += 1
            log_event("handshake_rejected", endpoint="dashboard", reason="not staff")
            # Closing before accepting refuses the handshake: HTTP 403.
            await self.close()
            return
        await self.accept()
        self.pusher = asyncio.get_running_loop().create_task(self._push(), name="ripple-dashboard-push")

    async def disconnect(self, code: int) -> None:
        pusher, self.pusher = getattr(self, "pusher", None), None
        if pusher is not None:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The dashboard only listens; anything a client sends is ignored."""

    async def _push(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                frame = await current_frame()
                await self.send(text_data=json.dumps(frame))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("building the dashboard frame failed")
            await asyncio.sleep(max(0.0, PUSH_INTERVAL_S - (loop.time() - started)))
