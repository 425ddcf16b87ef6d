"""The room page as a place to stay: it keeps the newest message in view, reads like a chat,
and says when a message did not go out (Chromium against a live daphne)."""

import asyncio
import datetime
import json
import os
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chat import services
from chat.models import Message
from tests.support.processes import ROOT
from tests.support.room_page import bodies, open_room, send, wait_bodies, wait_state

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# How far the message log is from its bottom, in px.
GAP = """() => {
    const log = document.querySelector('#message-log');
    return log.scrollHeight - log.scrollTop - log.clientHeight;
}"""


def artifacts() -> Path:
    """Where screenshots go: RIPPLE_ARTIFACTS_DIR, else test-artifacts/screenshots/ (gitignored)."""
    configured = os.environ.get("RIPPLE_ARTIFACTS_DIR")
    folder = Path(configured) if configured else ROOT / "test-artifacts" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@database_sync_to_async
def seed(slug: str, count: int, *, title: str = "") -> None:
    """``count`` messages in ``slug``: runs of one author, a link, a multi-line one, the first days ago."""
    room = services.room_get_or_create(slug=slug, title=title)
    authors = ["Bob", "Bob", "Cleo", "Cleo", "Cleo", "Dan"]
    for i in range(count):
        body = f"message {i}"
        if i % 7 == 3:
            body = f"message {i}: the notes are at https://example.com/notes/{i}."
        if i % 11 == 5:
            body = f"message {i}, in two lines\nsecond line of {i}"
        services.message_store(
            room=room, author=authors[i % len(authors)], user_id=None, body=body, client_id=f"seed-{i}"
        )
    now = timezone.now()
    # Today's messages must all fall on today's date: in the first minutes after midnight the
    # run's last ``count`` minutes began yesterday (an extra day separator), so they end just
    # after ``count`` minutes past midnight instead.
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    latest = max(now, midnight + datetime.timedelta(minutes=count + 1))
    for i, message in enumerate(Message.objects.filter(room=room).order_by("seq")):
        days = 2 if i < 4 else 1 if i < 10 else 0
        sent_at = latest - datetime.timedelta(days=days, minutes=count - i)
        Message.objects.filter(pk=message.pk).update(sent_at=sent_at)


async def at_bottom(page) -> None:
    await page.wait_for_function(f"() => ({GAP})() < 4", timeout=5_000)


async def post(page, text: str) -> None:
    """Send from ``page`` and wait until the server confirmed it there."""
    await send(page, text)
    await page.wait_for_function(
        """text => [...document.querySelectorAll('#messages li.msg:not(.pending) .body')]
            .some((b) => b.textContent === text)""",
        arg=text,
    )


async def test_opens_at_the_newest_and_follows_unless_scrolled_up(browser, daphne):
    server = daphne()
    await seed("follow", 40)
    ann = await open_room(browser, server, "follow", "Ann")
    bob = await open_room(browser, server, "follow", "Bob")
    await ann.set_viewport_size(DESKTOP)
    # Opens at the newest; only the log scrolls: the header and the composer stay in view.
    await at_bottom(ann)
    assert await ann.evaluate("() => document.scrollingElement.scrollHeight <= window.innerHeight + 1")
    assert await ann.evaluate("() => document.querySelector('#room-title').getBoundingClientRect().top >= 0")
    assert await ann.evaluate(
        "() => document.querySelector('#composer').getBoundingClientRect().bottom <= window.innerHeight"
    )

    await post(bob, "the newest one")
    await ann.wait_for_function(
        "() => [...document.querySelectorAll('#messages .body')].at(-1).textContent === 'the newest one'"
    )
    await at_bottom(ann)

    # Scrolled up: the list stays put and a hint counts what arrived below.
    await ann.evaluate("() => { document.querySelector('#message-log').scrollTop = 0; }")
    await ann.wait_for_function(f"() => ({GAP})() > 200")
    for text in ("one", "two", "three"):
        await post(bob, text)
    hint = ann.locator("#new-messages")
    await hint.wait_for(state="visible")
    await ann.wait_for_function(
        "() => document.querySelector('#new-messages').textContent.startsWith('3 new')"
    )
    assert await ann.evaluate("() => document.querySelector('#message-log').scrollTop") < 50
    await ann.screenshot(path=str(artifacts() / "room-desktop-new-messages-hint.png"))
    await hint.click()
    await at_bottom(ann)
    await hint.wait_for(state="hidden")

    # Scrolled up again, the reader's own message brings them down to it.
    await ann.evaluate("() => { document.querySelector('#message-log').scrollTop = 0; }")
    await ann.wait_for_function(f"() => ({GAP})() > 200")
    await post(ann, "mine")
    await at_bottom(ann)

    # A reload opens at the newest message again.
    await ann.reload()
    await wait_state(ann, "open")
    await at_bottom(ann)


async def test_unread_count_in_the_title_while_the_tab_is_hidden(browser, daphne):
    server = daphne()
    await database_sync_to_async(services.room_get_or_create)(slug="general", title="General")
    ann = await open_room(browser, server, "general", "Ann")
    bob = await open_room(browser, server, "general", "Bob")
    assert await ann.title() == "General – Ripple"
    await ann.evaluate(
        """() => {
            Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
            document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    for text in ("a", "b", "c"):
        await post(bob, text)
    await ann.wait_for_function("() => document.title === '(3) General – Ripple'")
    await ann.evaluate(
        """() => {
            Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'visible'});
            document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    await ann.wait_for_function("() => document.title === 'General – Ripple'")


async def test_links_are_clickable_only_for_http_and_https(browser, daphne):
    server = daphne()
    ann = await open_room(browser, server, "links", "Ann")
    bob = await open_room(browser, server, "links", "Bob")
    text = "see https://example.com/a?b=1&c=2, or javascript:alert(1) and <a href=x>x</a>"
    await post(bob, text)
    for page in (ann, bob):
        await wait_bodies(page, [text])
    await ann.reload()  # the server-rendered history gets the same links
    await wait_state(ann, "open")
    for page in (ann, bob):
        links = await page.eval_on_selector_all(
            "#messages .body a",
            "links => links.map((a) => [a.getAttribute('href'), a.rel, a.target, a.textContent])",
        )
        assert links == [
            [
                "https://example.com/a?b=1&c=2",
                "noopener noreferrer",
                "_blank",
                "https://example.com/a?b=1&c=2",
            ]
        ]
        assert await bodies(page) == [text]


async def test_shift_enter_makes_a_new_line_enter_sends_and_the_box_keeps_the_focus(browser, daphne):
    server = daphne()
    ann = await open_room(browser, server, "lines", "Ann")
    assert await ann.evaluate("() => document.activeElement.id") == "body"
    await ann.type("#body", "line one")
    await ann.keyboard.press("Shift+Enter")
    await ann.type("#body", "line two")
    assert await ann.input_value("#body") == "line one\nline two"
    await ann.keyboard.press("Enter")
    await wait_bodies(ann, ["line one\nline two"])
    assert await ann.input_value("#body") == ""
    # Shown on two lines.
    heights = await ann.evaluate(
        """() => { const b = [...document.querySelectorAll('#messages .body')].at(-1);
                   return [b.getBoundingClientRect().height, parseFloat(getComputedStyle(b).lineHeight)]; }"""
    )
    assert heights[0] >= 1.8 * heights[1]
    await ann.fill("#body", "clicked")
    await ann.click("#composer button[type=submit]")
    await wait_bodies(ann, ["line one\nline two", "clicked"])
    assert await ann.evaluate("() => document.activeElement.id") == "body"


async def test_a_refused_message_says_so_and_edit_puts_it_back(browser, daphne):
    server = daphne(RIPPLE_MAX_BODY_CHARS="20")
    ann = await open_room(browser, server, "refused", "Ann")
    await send(ann, "this message is far too long for the limit")
    failed = ann.locator("#messages li.msg.failed")
    await failed.wait_for()
    assert "Not sent — too long" in await failed.locator(".send-state").text_content()
    await failed.locator("button", has_text="Edit").click()
    assert await ann.input_value("#body") == "this message is far too long for the limit"
    assert await failed.count() == 0


async def open_routed(browser, server, room: str, name: str, close_code: int):
    """A page whose socket passes through a route that closes it with ``close_code`` on its
    first message frame, and lets everything through after that."""
    context = await browser.new_context()
    page = await context.new_page()
    page.on("console", lambda message: print(f"[{name} console] {message.text}"))
    routed = {"closed": False, "sockets": 0}
    closing: list[asyncio.Future] = []

    def handle(ws):
        routed["sockets"] += 1
        upstream = ws.connect_to_server()

        def from_page(message):
            frame = json.loads(message) if isinstance(message, str) else {}
            if frame.get("type") == "message" and not routed["closed"]:
                routed["closed"] = True
                closing.append(asyncio.ensure_future(ws.close(code=close_code, reason="refused by the test")))
                return
            upstream.send(message)

        ws.on_message(from_page)

    await page.route_web_socket("**/ws/chat/", handle)
    await page.goto(f"{server.http_url}/rooms/{room}/")
    await page.fill("#guest-name", name)
    await page.click("button[type=submit]")
    await wait_state(page, "open")
    return page, routed


async def test_a_send_lost_with_its_socket_shows_not_sent_and_retry_sends_it_once(browser, daphne):
    server = daphne()
    bob = await open_room(browser, server, "retry", "Bob")
    # 4409 (too many connections): the client does not come back by itself.
    ann, routed = await open_routed(browser, server, "retry", "Ann", 4409)
    await send(ann, "are you there?")
    failed = ann.locator("#messages li.msg.failed")
    await failed.wait_for()
    assert "Not sent — disconnected" in await failed.locator(".send-state").text_content()
    await ann.screenshot(path=str(artifacts() / "room-desktop-not-sent.png"))
    await failed.locator("button", has_text="Retry").click()
    await wait_bodies(ann, ["are you there?"])
    await wait_bodies(bob, ["are you there?"])
    assert routed["sockets"] == 2
    assert await ann.locator("#messages li.msg").count() == 1
    assert await ann.locator("#messages .send-state").count() == 0


async def test_a_signed_out_page_disables_the_box_and_says_why(browser, daphne):
    server = daphne()
    ann, _ = await open_routed(browser, server, "signedout", "Ann", 4401)
    await send(ann, "hello?")
    await ann.wait_for_selector("#body:disabled")
    assert await ann.is_disabled("#composer button[type=submit]")
    assert "signed out" in await ann.text_content("#composer-note")
    assert await ann.is_visible("#composer-note")


async def test_a_room_name_in_the_address_reaches_the_room_and_a_guest_can_change_name(browser, daphne):
    server = daphne()
    await database_sync_to_async(services.room_get_or_create)(slug="general", title="General Chat")
    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    await page.goto(f"{server.http_url}/rooms/General/")
    assert page.url.endswith("/rooms/general/")
    assert "General Chat" in await page.text_content("#name-for")
    await page.fill("#guest-name", "Ann")
    await page.click("button[type=submit]")
    await wait_state(page, "open")
    assert await page.text_content("#room-title") == "General Chat"
    await page.click("#change-name")
    await page.fill("#guest-name", "Annie")
    await page.click("main button[type=submit]")
    await wait_state(page, "open")
    assert page.url.endswith("/rooms/general/")
    assert await page.text_content("#who") == "Annie"
    favicon = await page.request.get(f"{server.http_url}/favicon.ico")
    assert favicon.ok and "svg" in favicon.headers["content-type"]
    assert errors == []


async def test_the_echo_start_button_says_stop_while_running(browser, daphne):
    server = daphne()
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{server.http_url}/echo/")
    await page.wait_for_function("() => document.querySelector('#start').textContent === 'Stop'")
    await page.click("#start")
    await page.wait_for_function("() => document.querySelector('#start').textContent === 'Start'")
    assert "@stopped" in await page.text_content("#log")


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
async def test_screenshots_of_a_busy_room(browser, daphne, viewport):
    server = daphne()
    await seed("busy", 36, title="Café Talk ☕")
    page = await open_room(browser, server, "busy", "Ann")
    await page.set_viewport_size(DESKTOP if viewport == "desktop" else PHONE)
    await send(page, "a message of my own with a link https://ripple.example/docs")
    await at_bottom(page)
    await page.evaluate("() => { document.querySelector('#message-log').scrollTop = 0; }")
    await page.screenshot(path=str(artifacts() / f"room-{viewport}-top.png"))
    await page.evaluate(
        "() => { const log = document.querySelector('#message-log'); log.scrollTop = log.scrollHeight; }"
    )
    await at_bottom(page)
    path = artifacts() / f"room-{viewport}.png"
    await page.screenshot(path=str(path))
    print(f"screenshot: {path}")
    assert await page.text_content("#room-title") == "Café Talk ☕"
    assert await page.locator("#messages .day-separator").count() == 3
    assert await page.locator("#messages li.msg.continued").count() > 5
