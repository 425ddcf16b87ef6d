"""Which pages may open a socket (and use the HTTP fallback) with this site's cookies.

A browser sends the page's ``Origin`` with every WebSocket handshake, and cookies go along
whatever the page: without this check any site could open a socket as the logged-in user
(cross-site WebSocket hijacking). ``RIPPLE_ALLOWED_ORIGINS`` lists the origins exactly
(``https://chat.example.com``, scheme and port included). Empty, the only origin allowed is the
site's own, exactly as the request reached it: the scheme (https when ``DJANGO_HTTPS``), the
``Host`` header's host (which must be in ``ALLOWED_HOSTS``) and its port. A page served from
another port or scheme of the same host is another origin, as browsers define it. A handshake
with no ``Origin`` is refused too. The admission guard (chat/admission.py) applies this to every
real-time entry point and answers refusals before a socket opens.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def normalized(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin, or None when it is not one."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def header(scope: dict[str, Any], name: bytes) -> str | None:
    """A request header from an ASGI scope (``name`` in lower case), or None."""
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return None


def own_origin(scope: dict[str, Any]) -> tuple[str, str, int] | None:
    """The site's own origin as this request reached it, or None for a host not allowed."""
    domain, port = split_domain_port(header(scope, b"host") or "")
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    if getattr(settings, "DJANGO_HTTPS", False) or scope.get("scheme") in ("https", "wss"):
        scheme = "https"
    else:
        scheme = "http"
    if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        return None
    return scheme, domain.strip("[]"), int(port) if port else DEFAULT_PORTS[scheme]


def origin_allowed(origin: str | None, scope: dict[str, Any]) -> bool:
    """Whether a request (``scope``) from a page at ``origin`` may act with the user's cookies."""
    if not origin:
        return False
    found = normalized(origin)
    if found is None:
        return False
    if settings.RIPPLE_ALLOWED_ORIGINS:
        return any(found == normalized(allowed) for allowed in settings.RIPPLE_ALLOWED_ORIGINS)
    return found == own_origin(scope)
