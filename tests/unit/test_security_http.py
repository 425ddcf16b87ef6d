"""HTTP security: the Content-Security-Policy and companion headers, pages with no inline code,
text rendered as text, and Django's own login and logout."""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.urls import reverse

from chat import services
from chat.identity import GUEST_NAME_KEY
from chat.middleware import CONTENT_SECURITY_POLICY
from chat.models import Message

pytestmark = pytest.mark.django_db

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HOSTILE_BODY = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
PASSWORD = "pw-long-enough-1"
ROOT = Path(__file__).resolve().parents[2]


class InlineCodeFinder(HTMLParser):
    """Collects what a strict CSP would block in a page: inline scripts, inline event handlers,
    ``javascript:`` URLs, ``<style>`` elements and ``style=`` attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        # The open <script>'s attributes and the text read inside it so far.
        self._script: dict[str, str | None] | None = None
        self._script_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=...> is an inline event handler")
            elif name == "style":
                self.problems.append(f"<{tag} style={value!r}> is an inline style")
            elif name in ("href", "src", "action", "formaction") and (value or "").strip().lower().startswith(
                "javascript:"
            ):
                self.problems.append(f"<{tag} {name}={value!r}> is a javascript: URL")
        if tag == "style":
            self.problems.append("<style> is an inline style sheet")
        if tag == "script":
            self._script = dict(attrs)
            self._script_text = []
            self.scripts.append(self._script)

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script_text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag != "script" or self._script is None:
            return
        script, text = self._script, "".join(self._script_text).strip()
        self._script = None
        if (script.get("type") or "").lower() == "application/json":
            return
        if not script.get("src"):
            self.problems.append(f"<script> without src runs inline code: {text[:60]!r}")
        elif text:
            self.problems.append(f"<script src={script['src']!r}> has a body: {text[:60]!r}")


def inline_code(html: str) -> list[str]:
    finder = InlineCodeFinder()
    finder.feed(html)
    finder.close()
    return finder.problems


def guest_client(name: str = "Ann") -> Client:
    client = Client()
    session = client.session
    session[GUEST_NAME_KEY] = name
    session.save()
    return client


def hostile_room():
    room = services.room_get_or_create(slug="hostile", title="<b>Title</b>")
    services.message_post(room=room, author="<i>mallory</i>", body=HOSTILE_BODY, client_id="h1")
    return room


# The parser itself.


def test_inline_code_finder_reports_every_kind_of_inline_code():
    html = (
        "<script>alert(1)</script>"
        '<script src="/static/x.js">alert(2)</script>'
        '<script type="application/json" id="data">{"a": 1}</script>'
        '<script type="module" src="/static/ok.js"></script>'
        '<button onclick="go()">x</button><p style="color:red">y</p><style>p{}</style>'
        '<a href="javascript:void(0)">z</a>'
    )
    problems = inline_code(html)
    assert len(problems) == 6, problems
    assert inline_code('<script type="module" src="/static/ok.js"></script><p hidden>x</p>') == []


# Headers.


def test_the_middleware_policy_is_the_agreed_one():
    assert CONTENT_SECURITY_POLICY == CSP


@pytest.mark.parametrize(
    "url",
    ["/", "/echo/", "/rooms/lobby/", "/accounts/login/", "/admin/login/", "/healthz", "/metrics", "/nope/"],
)
def test_every_response_carries_the_exact_policy_and_the_companion_headers(client, url):
    response = client.get(url)
    assert response["Content-Security-Policy"] == CSP
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"


def test_redirects_refusals_and_csrf_failures_carry_the_policy_too():
    strict = Client(enforce_csrf_checks=True)
    assert strict.get("/admin/")["Content-Security-Policy"] == CSP  # redirect to the admin login
    assert strict.get("/accounts/logout/")["Content-Security-Policy"] == CSP  # 405
    refused = strict.post("/accounts/login/", {"username": "x", "password": "y"})
    assert refused.status_code == 403
    assert refused["Content-Security-Policy"] == CSP


# No inline code in any page.


def test_public_pages_have_no_inline_code(client):
    hostile_room()
    pages = {
        "/": client.get("/"),
        "/echo/": client.get("/echo/"),
        "name page": client.get("/rooms/hostile/"),
        "login": client.get("/accounts/login/?next=/rooms/hostile/"),
        "admin login": client.get("/admin/login/"),
        "bad login": client.post("/accounts/login/", {"username": "x", "password": "y"}),
        "bad guest name": client.post(reverse("chat:guest_name"), {"name": "<b>", "next": "/"}),
        "bad room name": client.post("/", {"room": "!!!"}),
    }
    guest = guest_client()
    pages["room as guest"] = guest.get("/rooms/hostile/")
    pages["index as guest"] = guest.get("/")
    for what, response in pages.items():
        assert response.status_code in (200, 400), what
        assert response["Content-Type"].startswith("text/html"), what
        assert inline_code(response.content.decode()) == [], what


def test_pages_of_a_logged_in_user_have_no_inline_code(client, django_user_model):
    hostile_room()
    django_user_model.objects.create_user("carol", password=PASSWORD)
    client.login(username="carol", password=PASSWORD)
    for url in ["/", "/rooms/hostile/", "/echo/"]:
        response = client.get(url)
        assert response.status_code == 200, url
        assert inline_code(response.content.decode()) == [], url


def test_admin_pages_and_the_dashboard_have_no_inline_code(admin_client):
    room = hostile_room()
    message = Message.objects.get(room=room)
    urls = [
        reverse("admin:index"),
        reverse("admin:chat_room_changelist"),
        reverse("admin:chat_room_changelist") + "?closed=no&q=host",
        reverse("admin:chat_room_add"),
        reverse("admin:chat_room_change", args=[room.pk]),
        reverse("admin:chat_message_changelist"),
        reverse("admin:chat_message_changelist") + "?room=hostile",
        reverse("admin:chat_message_change", args=[message.pk]),
        reverse("admin:auth_user_changelist"),
        reverse("admin:auth_user_add"),
        reverse("admin:password_change"),
        reverse("ripple_dashboard"),
    ]
    for url in urls:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert response["Content-Security-Policy"] == CSP, url
        assert inline_code(response.content.decode()) == [], url
    # The intermediate page of a moderation action.
    action_page = admin_client.post(
        reverse("admin:chat_room_changelist"), {"action": "announce", ACTION_CHECKBOX_NAME: [room.pk]}
    )
    assert action_page.status_code == 200
    assert b'name="apply"' in action_page.content
    assert inline_code(action_page.content.decode()) == []


# Text stays text.


def test_hostile_text_is_rendered_escaped_on_the_index_and_the_room_page():
    hostile_room()
    guest = guest_client()
    room_page = guest.get("/rooms/hostile/").content.decode()
    assert HOSTILE_BODY not in room_page
    assert (
        "&lt;img src=x onerror=&quot;window.pwned=1&quot;&gt;&lt;script&gt;window.pwned=2&lt;/script&gt;"
        in (room_page)
    )
    assert "&lt;i&gt;mallory&lt;/i&gt;" in room_page
    assert "&lt;b&gt;Title&lt;/b&gt;" in room_page
    assert "<img" not in room_page
    index = guest.get("/").content.decode()
    assert "&lt;b&gt;Title&lt;/b&gt;" in index
    assert "<b>Title</b>" not in index


def test_no_template_or_module_turns_escaping_off():
    """``|safe``, ``mark_safe`` and ``{% autoescape off %}`` would let user text in as markup."""
    unsafe = re.compile(r"\|\s*safe\b|\bmark_safe\b|\bSafeString\b|autoescape\s+off")
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in [*(ROOT / "chat").rglob("*.html"), *(ROOT / "chat").rglob("*.py")]
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if unsafe.search(line)
    ]
    assert found == []


def test_page_scripts_never_write_markup():
    """Text from the network reaches the page through textContent, never as HTML."""
    markup = re.compile(
        r"\binnerHTML\b|\bouterHTML\b|insertAdjacentHTML|document\.write|\beval\(|new Function\("
    )
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in (ROOT / "static" / "js").glob("*.js")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if markup.search(line) and not line.lstrip().startswith(("*", "//", "/*"))
    ]
    assert found == []


# Accounts.


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def test_login_and_logout_round_trip_through_the_real_forms(django_user_model):
    django_user_model.objects.create_user("carol", password=PASSWORD)
    browser = Client(enforce_csrf_checks=True)
    name_page = browser.get("/rooms/lobby/").content.decode()
    assert 'href="/accounts/login/?next=/rooms/lobby/"' in name_page

    login_page = browser.get("/accounts/login/?next=/rooms/lobby/")
    html = login_page.content.decode()
    assert 'name="next" value="/rooms/lobby/"' in html
    logged_in = browser.post(
        "/accounts/login/",
        {
            "username": "carol",
            "password": PASSWORD,
            "next": "/rooms/lobby/",
            "csrfmiddlewaretoken": csrf_token(html),
        },
    )
    assert logged_in.status_code == 302
    assert logged_in["Location"] == "/rooms/lobby/"

    room_page = browser.get("/rooms/lobby/").content.decode()
    assert 'data-user="carol"' in room_page
    assert '<span class="who" id="who">carol</span>' in room_page
    assert 'action="/accounts/logout/"' in room_page
    assert "Log in</a>" not in room_page

    logged_out = browser.post("/accounts/logout/", {"csrfmiddlewaretoken": csrf_token(room_page)})
    assert logged_out.status_code == 302
    assert logged_out["Location"] == reverse("chat:index")
    index = browser.get("/").content.decode()
    assert 'id="login-link"' in index
    assert 'action="/accounts/logout/"' not in index
    # Signed out: the room asks for a display name again.
    assert 'name="name"' in browser.get("/rooms/lobby/").content.decode()


def test_a_wrong_password_is_refused_with_the_form_again(django_user_model):
    django_user_model.objects.create_user("carol", password=PASSWORD)
    response = Client().post("/accounts/login/", {"username": "carol", "password": "wrong"})
    assert response.status_code == 200
    assert 'class="error" role="alert"' in response.content.decode()
    assert "_auth_user_id" not in response.wsgi_request.session


def test_login_does_not_redirect_off_site(client, django_user_model):
    django_user_model.objects.create_user("carol", password=PASSWORD)
    response = client.post(
        "/accounts/login/", {"username": "carol", "password": PASSWORD, "next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("chat:index")


def test_logout_is_post_only(client, django_user_model):
    django_user_model.objects.create_user("carol", password=PASSWORD)
    client.login(username="carol", password=PASSWORD)
    assert client.get("/accounts/logout/").status_code == 405
    assert client.get("/").wsgi_request.user.is_authenticated
    assert client.post("/accounts/logout/").status_code == 302
    assert not client.get("/").wsgi_request.user.is_authenticated


def test_a_guest_keeps_the_display_name_and_sees_the_log_in_link(client):
    client.post(reverse("chat:guest_name"), {"name": "Ann", "next": "/"})
    index = client.get("/").content.decode()
    assert '<span class="who" id="who">Ann</span>' in index
    assert 'id="login-link"' in index
    assert client.session[GUEST_NAME_KEY] == "Ann"


def test_session_and_csrf_cookies_are_http_only_and_same_site_lax(django_user_model):
    django_user_model.objects.create_user("carol", password=PASSWORD)
    browser = Client()
    csrf_cookie = browser.get("/accounts/login/").cookies["csrftoken"]
    assert csrf_cookie["httponly"] is True
    assert csrf_cookie["samesite"] == "Lax"
    logged_in = browser.post("/accounts/login/", {"username": "carol", "password": PASSWORD})
    session_cookie = logged_in.cookies["sessionid"]
    assert session_cookie["httponly"] is True
    assert session_cookie["samesite"] == "Lax"
