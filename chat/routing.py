"""Where each real-time entry point is mounted: every one behind the admission guard.

Nothing is mounted here except through ``admit`` (chat/admission.py), and a path no route takes
meets ``no_route`` (a 404 refusal, not a server error); tests/unit/test_admission.py checks both.
"""

from django.urls import path, re_path

from . import consumers, dashboard, sse
from .admission import Policy, admit, asgi_route, no_route
from .socket_auth import SocketAuth

CHAT = Policy("chat")
# No protocol of its own to answer with: oversize frames close the socket (4413).
ECHO = Policy("echo", max_frame_chars="RIPPLE_MAX_FRAME_CHARS")
DASHBOARD = Policy("dashboard", max_frame_chars=1024)
STREAM = Policy("stream", too_slow_tail=b'event: close\ndata: {"code": 4509}\n\n')
# Short requests: not counted against the per-address cap, but rate-limited per address.
STREAM_POST = Policy("stream_post", counted=False, rate_per_address=True)

websocket_urlpatterns = [
    # Reads the session (author names), so the Origin check matters: a page on another site
    # must not open a socket with this site's cookies.
    path("ws/chat/", admit(SocketAuth(consumers.ChatConsumer.as_asgi()), CHAT)),
    # The tutorial echo endpoint reads no session; it gets the same guard all the same.
    path("ws/echo/", admit(consumers.EchoConsumer.as_asgi(), ECHO)),
    # Staff only (the consumer refuses anyone else).
    path("ws/admin/dashboard/", admit(SocketAuth(dashboard.DashboardConsumer.as_asgi()), DASHBOARD)),
    re_path(r"", asgi_route(no_route)),
]

http_stream_urlpatterns = [
    # The HTTP fallback (chat/sse.py): the chat consumer's frames as Server-Sent Events; the
    # session identifies the user as on the socket.
    path("sse/chat/", admit(SocketAuth(sse.SseChatStream(consumers.ChatConsumer.as_asgi())), STREAM)),
]


def http_frame_urlpatterns(django_app: object) -> list:
    """The fallback's POST: a Django view (CSRF, session), behind the guard like the rest."""
    return [path("sse/chat/send/", admit(django_app, STREAM_POST))]
