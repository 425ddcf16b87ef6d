"""Operations endpoints: Prometheus metrics, readiness, and the staff dashboard page.

``/metrics`` and ``/readyz`` need no login, but answer only clients in ``RIPPLE_METRICS_ALLOW``
(loopback and the private ranges by default) and 404 to anyone else; the shipped nginx configs
refuse them from the public side too, so Prometheus scrapes each worker directly
(docs/cluster.md). ``/healthz`` stays public.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections.abc import Callable, Coroutine
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.admin import site as admin_site
from django.contrib.admin.views.decorators import staff_member_required
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import drain
from . import metrics as metrics_module

# A readiness probe answers within this, whatever hangs behind it.
DATABASE_TIMEOUT_S = 2.0
CHANNEL_LAYER_TIMEOUT_S = 2.0
# The group the readiness check sends to: no one ever joins it.
READINESS_GROUP = "ripple.readyz"


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=4)
def _networks(allowed: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(network, strict=False) for network in allowed)


def client_allowed(address: str | None) -> bool:
    """Whether the client address (daphne --proxy-headers: nginx's X-Forwarded-For) is internal."""
    try:
        ip = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return False  # no address (a Unix socket) or not one: refuse
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in _networks(tuple(settings.RIPPLE_METRICS_ALLOW)))


AsyncView = Callable[[HttpRequest], Coroutine[Any, Any, HttpResponse]]


def internal_only(view: AsyncView) -> AsyncView:
    """404 unless the client is in RIPPLE_METRICS_ALLOW: from outside, the endpoint is not there."""

    @functools.wraps(view)
    async def guarded(request: HttpRequest) -> HttpResponse:
        if not client_allowed(request.META.get("REMOTE_ADDR")):
            raise Http404()
        return await view(request)

    return guarded


@require_GET
@internal_only
async def metrics(request: HttpRequest) -> HttpResponse:
    """This process's counters in the Prometheus text format (OpenMetrics when asked for)."""
    # An async view runs on the event loop that owns the counters, so a scrape never reads
    # them halfway through an update from another thread.
    body, content_type = metrics_module.exposition(request.headers.get("Accept", ""))
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response


def _select_one() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _failure(error: BaseException) -> str:
    """``error: <class>: <message>``, short: what failed, without a traceback."""
    detail = str(error) or ("timed out" if isinstance(error, TimeoutError) else "")
    return (f"error: {type(error).__name__}" + (f": {detail}" if detail else ""))[:200]


async def _check_database() -> str:
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_S):
            await database_sync_to_async(_select_one)()
    except Exception as error:
        return _failure(error)
    return "ok"


async def _check_channel_layer() -> str:
    """Whether the channel layer itself answers: a send to a group no one joins reaches its
    backend (Redis) and delivers nothing. The in-memory layer always answers."""
    try:
        async with asyncio.timeout(CHANNEL_LAYER_TIMEOUT_S):
            await get_channel_layer().group_send(READINESS_GROUP, {"type": READINESS_GROUP})
    except Exception as error:
        return _failure(error)
    return "ok"


@require_GET
@internal_only
async def readyz(request: HttpRequest) -> HttpResponse:
    """200 when the database and the channel layer answer; 503 naming the one that does not."""
    database, channel_layer = await asyncio.gather(_check_database(), _check_channel_layer())
    draining = drain.is_draining()
    ready = database == "ok" and channel_layer == "ok" and not draining
    body: dict[str, Any] = {
        "status": "ready" if ready else ("draining" if draining else "not ready"),
        "database": database,
        "channel_layer": channel_layer,
    }
    response = JsonResponse(body, status=200 if ready else 503)
    response["Cache-Control"] = "no-store"
    return response


@never_cache
@staff_member_required
def dashboard_page(request: HttpRequest) -> HttpResponse:
    """The live dashboard (staff only); the numbers arrive over /ws/admin/dashboard/."""
    context = {
        **admin_site.each_context(request),
        "title": "Live dashboard",
        "ws_path": "/ws/admin/dashboard/",
    }
    return render(request, "chat/dashboard.html", context)
