"""The Content-Security-Policy of every response Django answers.

Scripts, styles, fonts, images and connections come from this origin only (``connect-src
'self'`` also covers this origin's ``ws://``/``wss://`` in CSP Level 3 browsers). No inline
script, inline event handler or ``style=`` attribute runs, so a page must keep its code in
``static/`` and its data in ``data-*`` attributes or ``json_script``. Django's admin needs no
exception: Django 5.2's admin templates carry no inline script or style
(tests/e2e/test_security_browser.py walks the admin pages and the dashboard under the policy).

Static files served by ``ASGIStaticFilesHandler`` (``RIPPLE_SERVE_STATIC``) never pass through
middleware; behind nginx, the web server sets its own headers for ``/static/``.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase
from django.utils.deprecation import MiddlewareMixin

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    """Adds ``CONTENT_SECURITY_POLICY`` to every response that does not carry a policy of its own."""

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response
