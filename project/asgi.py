"""ASGI entry point: HTTP to Django, WebSockets to the chat consumers."""

import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_asgi_app = get_asgi_application()
if "daphne.server" in sys.modules:  # daphne's transport guards (chat/daphne_guard.py); no Twisted otherwise
    from chat.daphne_guard import install

    install()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs the app registry)
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import re_path  # noqa: E402

from chat import gc_policy  # noqa: E402
from chat.routing import (  # noqa: E402
    http_frame_urlpatterns,
    http_stream_urlpatterns,
    websocket_urlpatterns,
)

# Without a web server in front (make run, the tests), daphne serves /static/ itself.
http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.RIPPLE_SERVE_STATIC else django_asgi_app

application = ProtocolTypeRouter(
    {
        # The HTTP fallback's event stream is a long-lived ASGI app of its own, and its POST a
        # Django view behind the same admission guard; every other request goes to Django.
        "http": URLRouter(
            [
                *http_stream_urlpatterns,
                *http_frame_urlpatterns(django_asgi_app),
                re_path(r"", http_app),  # type: ignore[arg-type]  # an ASGI app, as Channels routes take
            ]
        ),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)

# Everything loaded so far stays for the life of the process: out of the collector's sight.
gc_policy.apply(settings.RIPPLE_GC_THRESHOLDS)
