"""Running Django admin actions on a live daphne over HTTP, as a moderator's browser does (sync)."""

import http.client
import re
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore

CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def superuser_session(username: str) -> str:
    """Create a superuser and a session logged in as them; return the session key."""
    user = User.objects.create_superuser(username, password="pw-long-enough-1")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    assert session.session_key is not None
    return session.session_key


def _request(
    base_url: str, method: str, path: str, headers: dict[str, str], body: str | None = None
) -> tuple[int, dict[str, str], list[str], str]:
    """(status, headers, Set-Cookie values, body text)."""
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        text = response.read().decode()
        return (
            response.status,
            dict(response.getheaders()),
            response.headers.get_all("Set-Cookie") or [],
            text,
        )
    finally:
        connection.close()


def admin_action(
    base_url: str, changelist_path: str, *, session_key: str, action: str, ids: list[int], **fields: str
) -> tuple[int, str]:
    """POST an action from the changelist (``apply="1"``: the confirmation page's submit).

    Reads the changelist first for its CSRF cookie and token. Returns (status, body).
    """
    status, _, set_cookies, page = _request(
        base_url, "GET", changelist_path, {"Cookie": f"sessionid={session_key}"}
    )
    assert status == 200, f"the changelist answered {status}:\n{page[:2000]}"
    cookies = SimpleCookie()
    for value in set_cookies:
        cookies.load(value)
    token = CSRF_FIELD.search(page)
    assert token and "csrftoken" in cookies, "the changelist has no CSRF token"
    form = [
        ("csrfmiddlewaretoken", token.group(1)),
        ("action", action),
        ("index", "0"),
        *[(ACTION_CHECKBOX_NAME, str(pk)) for pk in ids],
        *fields.items(),
    ]
    status, _, _, body = _request(
        base_url,
        "POST",
        changelist_path,
        {
            "Cookie": f"sessionid={session_key}; csrftoken={cookies['csrftoken'].value}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": base_url,
            "Referer": f"{base_url}{changelist_path}",
        },
        urlencode(form),
    )
    return status, body
