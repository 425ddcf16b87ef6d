"""The baseline: the Django Channels tutorial chat consumer, on Ripple's settings and channel layer.

Run it like Ripple: ``python -m project.serve bench.baseline_asgi:application`` (daphne on the
same event loop as Ripple's workers; ``--server-env RIPPLE_EVENT_LOOP=asyncio`` for asyncio's). Each socket on
``/ws/baseline/<room>/`` joins the group ``chat_<room>`` with a channel of its own, every received
message is sent to the group, and every member encodes and sends its own copy, one
``json.dumps`` per recipient. That per-recipient work is what the benchmark compares Ripple's
fan-out against. HTTP goes to Ripple's Django views, so ``/healthz`` answers as for Ripple.
"""

import json
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry)
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402


class ChatConsumer(AsyncWebsocketConsumer):
    """The tutorial's room socket: a channel and a group membership per socket."""

    async def connect(self):
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, close_code):
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        message = json.loads(text_data)["message"]
        await self.channel_layer.group_send(
            self.room_group_name, {"type": "chat.message", "message": message}
        )

    async def chat_message(self, event):
        await self.send(text_data=json.dumps({"message": event["message"]}))


websocket_urlpatterns = [re_path(r"ws/baseline/(?P<room_name>\w+)/$", ChatConsumer.as_asgi())]

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
