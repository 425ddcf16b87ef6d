"""The Content-Security-Policy in a real browser: the chat, the login and the admin run under it
with no violation, and hostile message text stays text on both rendering paths."""

from dataclasses import dataclass, field

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from playwright.async_api import Page

from chat import services
from chat.middleware import CONTENT_SECURITY_POLICY

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

PASSWORD = "pw-long-enough-1"
HOSTILE_BODY = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'

# Runs in every document of the context before the page's own scripts.
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener('securitypolicyviolation', (event) => {
  window.cspViolations.push({
    directive: event.effectiveDirective, blocked: event.blockedURI, sample: event.sample,
    source: event.sourceFile, line: event.lineNumber,
  });
});
"""


@dataclass
class Tab:
    """A page in its own browser context, with every policy violation it reports."""

    page: Page
    # Chromium's console line for each violation, kept across navigations (the page's own
    # record starts again with each document).
    console: list[str] = field(default_factory=list)

    async def violations(self) -> list:
        """The current document's violations, and every console report since the tab opened."""
        recorded = await self.page.evaluate("() => window.cspViolations")
        return [*recorded, *self.console]


async def new_tab(browser, name: str) -> Tab:
    context = await browser.new_context()
    await context.add_init_script(RECORD_VIOLATIONS)
    tab = Tab(await context.new_page())

    def on_console(message) -> None:
        print(f"[{name} console] {message.text}")
        if "Content Security Policy" in message.text:
            tab.console.append(message.text)

    tab.page.on("console", on_console)
    return tab


async def wait_open(page: Page) -> None:
    await page.wait_for_selector('#conn-state[data-state="open"]', timeout=10_000)


async def open_room_as_guest(browser, server, room: str, name: str) -> Tab:
    tab = await new_tab(browser, name)
    response = await tab.page.goto(f"{server.http_url}/rooms/{room}/")
    assert response is not None
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    await tab.page.fill("#guest-name", name)
    await tab.page.click("main button[type=submit]")
    await tab.page.wait_for_selector("#composer")
    await wait_open(tab.page)
    return tab


async def send(page: Page, text: str) -> None:
    await page.fill("#body", text)
    await page.press("#body", "Enter")


async def wait_bodies(page: Page, expected: list[str], timeout_ms: float = 10_000) -> None:
    await page.wait_for_function(
        """expected => {
            const items = document.querySelectorAll('#messages li.msg:not(.pending) .body');
            return JSON.stringify([...items].map(i => i.textContent)) === JSON.stringify(expected);
        }""",
        arg=expected,
        timeout=timeout_ms,
    )


async def test_two_pages_chat_under_the_policy_with_no_violation(browser, daphne):
    server = daphne()
    ann = await open_room_as_guest(browser, server, "policy", "Ann")
    bob = await open_room_as_guest(browser, server, "policy", "Bob")
    await send(ann.page, "hello from ann")
    await wait_bodies(bob.page, ["hello from ann"])
    await send(bob.page, "hello from bob")
    await wait_bodies(ann.page, ["hello from ann", "hello from bob"])
    await wait_bodies(bob.page, ["hello from ann", "hello from bob"])
    # The socket (ws:// to this origin) is allowed by connect-src 'self'; nothing else was refused.
    assert await ann.violations() == []
    assert await bob.violations() == []

    # The policy is in force and the recorder hears it: an inline script is refused.
    directive = await ann.page.evaluate(
        """() => new Promise((resolve) => {
            const heard = (event) => resolve(event.effectiveDirective);
            document.addEventListener('securitypolicyviolation', heard, {once: true});
            const script = document.createElement('script');
            script.textContent = 'window.inlineRan = true';
            document.body.append(script);
        })"""
    )
    assert directive == "script-src-elem"
    assert await ann.page.evaluate("() => window.inlineRan") is None


async def assert_text_not_markup(tab: Tab) -> None:
    page = tab.page
    assert await page.evaluate("() => typeof window.pwned") == "undefined"
    assert await page.locator("#messages img").count() == 0
    assert await page.locator("#messages script").count() == 0
    # Nothing even tried to run: an <img onerror> made from the text would be refused, and reported.
    assert await tab.violations() == []


async def test_hostile_text_is_shown_as_text_live_and_after_a_reload(browser, daphne):
    server = daphne()
    ann = await open_room_as_guest(browser, server, "hostile", "Ann")
    bob = await open_room_as_guest(browser, server, "hostile", "Bob")
    await send(ann.page, HOSTILE_BODY)
    await wait_bodies(bob.page, [HOSTILE_BODY])
    await wait_bodies(ann.page, [HOSTILE_BODY])
    await assert_text_not_markup(bob)
    await assert_text_not_markup(ann)

    # Server-rendered: read as soon as the document is parsed, before the socket could redraw it.
    await bob.page.reload(wait_until="domcontentloaded")
    body = await bob.page.text_content('#messages li.msg[data-seq="1"] .body')
    assert body == HOSTILE_BODY
    await wait_open(bob.page)
    await wait_bodies(bob.page, [HOSTILE_BODY])
    await assert_text_not_markup(bob)


async def test_a_user_logs_in_through_the_form_and_the_socket_knows_them(browser, daphne):
    server = daphne()
    await database_sync_to_async(User.objects.create_user)("carol", password=PASSWORD)
    tab = await new_tab(browser, "carol")
    page = tab.page
    await page.goto(f"{server.http_url}/rooms/members/")
    await page.click("#login-link")
    await page.wait_for_url(f"{server.http_url}/accounts/login/?next=/rooms/members/")
    await page.fill("#id_username", "carol")
    await page.fill("#id_password", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_url(f"{server.http_url}/rooms/members/")
    await wait_open(page)

    welcome = await page.wait_for_function("() => window.ripple?.welcome?.user ?? false", timeout=10_000)
    assert await welcome.json_value() == {"name": "carol", "authenticated": True}
    assert await page.text_content("#who") == "carol"
    assert await tab.violations() == []

    await page.click("#logout")
    await page.wait_for_url(f"{server.http_url}/")
    await page.wait_for_selector("#login-link")
    assert await page.locator("#logout").count() == 0
    assert await tab.violations() == []


async def test_the_admin_and_the_live_dashboard_work_under_the_policy(browser, daphne):
    server = daphne()
    await database_sync_to_async(User.objects.create_superuser)("operator", password=PASSWORD)
    room = await database_sync_to_async(services.room_get_or_create)(slug="audited", title="Audited")
    await database_sync_to_async(services.message_post)(
        room=room, author="ann", body=HOSTILE_BODY, client_id="a1"
    )
    tab = await new_tab(browser, "admin")
    page = tab.page
    await page.goto(f"{server.http_url}/admin/login/?next=/admin/")
    await page.fill("#id_username", "operator")
    await page.fill("#id_password", PASSWORD)
    await page.click("input[type=submit]")
    await page.wait_for_selector("#live-dashboard-link")
    assert await tab.violations() == []

    pages = [
        ("/admin/chat/room/", "#result_list"),
        (f"/admin/chat/room/{room.pk}/change/", "#room_form"),
        ("/admin/chat/room/add/", "#room_form"),
        ("/admin/chat/message/", "#result_list"),
        ("/admin/chat/message/?room=audited", "#result_list"),
        ("/admin/auth/user/add/", "#user_form"),
    ]
    for path, ready in pages:
        response = await page.goto(f"{server.http_url}{path}")
        assert response is not None
        assert response.status == 200, path
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        await page.wait_for_selector(ready)
        assert await tab.violations() == [], path

    # The changelist's scripts run: select every row, pick an action, reach its intermediate page.
    await page.goto(f"{server.http_url}/admin/chat/room/")
    await page.check("#action-toggle")
    await page.wait_for_selector(".action-counter:has-text('1 of 1 selected')")
    await page.select_option("select[name=action]", "announce")
    await page.click("button[name=index]")
    await page.wait_for_selector("input[name=apply]")
    assert await tab.violations() == []

    # The dashboard: its module loads and its socket (connect-src 'self') goes live.
    await page.goto(f"{server.http_url}/admin/dashboard/")
    await page.wait_for_function(
        "() => document.querySelector('#dash-state').dataset.state === 'open'"
        " && /^[0-9]+$/.test(document.querySelector('#total-sockets').textContent)",
        timeout=10_000,
    )
    assert await page.locator("#chart-in").count() == 1
    assert await tab.violations() == []
