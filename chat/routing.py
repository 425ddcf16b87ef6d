from channels.auth import AuthMiddlewareStack
from django.urls import path

from . import consumers, dashboard, sse
from .origins import OriginGuard

websocket_urlpatterns = [
    # Reads the session (author names) and so checks the Origin: a page on another site
    # must not open a socket with this site's cookies.
    path("ws/chat/", OriginGuard(AuthMiddlewareStack(consumers.ChatConsumer.as_asgi()))),
    # The tutorial echo endpoint reads no session and accepts any Origin.
    path("ws/echo/", consumers.EchoConsumer.as_asgi()),
    # Staff only (the consumer refuses anyone else); the session cookie makes the Origin check needed.
    path(
        "ws/admin/dashboard/",
        OriginGuard(AuthMiddlewareStack(dashboard.DashboardConsumer.as_asgi())),
    ),
]

http_stream_urlpatterns = [
    # The HTTP fallback (chat/sse.py): the chat consumer's frames as Server-Sent Events. The
    # session identifies the user as on the socket; the stream checks Origin itself.
    path("sse/chat/", AuthMiddlewareStack(sse.SseChatStream(consumers.ChatConsumer.as_asgi()))),
]
