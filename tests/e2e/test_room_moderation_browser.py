"""Two people in a room: typing shows, a moderator closes (with a reason), reopens and removes a guest.

Every moderation step is the admin's own action, POSTed over HTTP to the live daphne as a
moderator's browser does (tests/support/admin_http.py). Screenshots of the dashboard at phone
width and of the admin's rooms and messages lists at 1280 px go to the artefacts folder.
"""

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat.models import Message, Room
from tests.support.admin_http import admin_action, superuser_session
from tests.support.axe import screenshot
from tests.support.room_page import open_room, send, wait_bodies

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

ROOMS_URL = "/admin/chat/room/"
MESSAGES_URL = "/admin/chat/message/"


async def wait_text(page, selector: str, text: str, timeout_ms: float = 10_000) -> None:
    """Wait until the element's text contains ``text``."""
    await page.wait_for_function(
        "([selector, text]) => (document.querySelector(selector)?.textContent ?? '').includes(text)",
        arg=[selector, text],
        timeout=timeout_ms,
    )


async def act(server, key: str, url: str, action: str, ids: list[int], **fields: str) -> None:
    status, page = await asyncio.to_thread(
        admin_action, server.http_url, url, session_key=key, action=action, ids=ids, **fields
    )
    assert status == 302, page[:2000]


async def test_typing_close_reason_reopen_and_a_removed_guest(browser, daphne, redis_url, settings):
    server = daphne(REDIS_URL=redis_url, RIPPLE_REMOVAL_S="600")
    key = await database_sync_to_async(superuser_session)("mod")
    ann = await open_room(browser, server, "porch", "Ann")
    bob = await open_room(browser, server, "porch", "Bob")

    # Typing: Bob sees Ann type, and the line goes when her message arrives.
    await ann.type("#body", "hel", delay=30)
    await wait_text(bob, "#typing", "Ann is typing…")
    await screenshot(bob, "room-typing-desktop")
    assert (await ann.text_content("#typing") or "") == ""
    await ann.fill("#body", "hello")
    await ann.press("#body", "Enter")
    await wait_bodies(bob, ["hello"])
    await bob.wait_for_function("() => document.querySelector('#typing').textContent === ''", timeout=3_000)

    # Closed with a reason: said on the page, the box disabled, the status not "Connected".
    room = await database_sync_to_async(Room.objects.get)(slug="porch")
    await act(server, key, ROOMS_URL, "close_rooms", [room.pk], apply="1", reason="spring cleaning")
    for page in (ann, bob):
        await wait_text(page, "#composer-note", "This room was closed by a moderator: spring cleaning")
        await page.wait_for_selector("#body:disabled", timeout=5_000)
        await wait_text(page, "#conn-state", "Room closed")
        assert await page.get_attribute("#conn-state", "data-state") != "open"
    await screenshot(bob, "room-closed-desktop")

    # Reopened: the open pages carry on without a reload.
    await act(server, key, ROOMS_URL, "reopen_rooms", [room.pk])
    for page in (ann, bob):
        await page.wait_for_selector("#body:enabled", timeout=10_000)
        await wait_text(page, "#conn-state", "Connected")
    await send(bob, "back again")
    await wait_bodies(ann, ["hello", "back again"])

    # Bob (a guest) removed from the messages admin: told so, and kept out after a reload.
    message = await database_sync_to_async(Message.objects.get)(body="back again")
    await act(server, key, MESSAGES_URL, "disconnect_authors", [message.pk])
    await wait_text(bob, "#composer-note", "A moderator removed you from this chat")
    await wait_text(bob, "#conn-state", "Removed by a moderator")
    assert await bob.is_hidden("#retry")
    await screenshot(bob, "room-removed-desktop")
    await bob.reload()
    await wait_text(bob, "#composer-note", "A moderator removed you from this chat")
    assert await bob.is_disabled("#body")
    # Ann is still in.
    await send(ann, "still here")
    await wait_bodies(ann, ["hello", "back again", "still here"])


async def test_screens_of_the_dashboard_on_a_phone_and_the_admin_lists_at_1280(browser, daphne, redis_url):
    server = daphne(REDIS_URL=redis_url)
    key = await database_sync_to_async(superuser_session)("ops")
    page = await open_room(browser, server, "cafe-talk", "Ann")
    for i in range(3):
        await send(page, f"a fairly long message number {i} to fill the body column of the admin list")
    await wait_bodies(
        page,
        [f"a fairly long message number {i} to fill the body column of the admin list" for i in range(3)],
    )
    await page.context.close()

    context = await browser.new_context(viewport={"width": 390, "height": 844})
    await context.add_cookies([{"name": "sessionid", "value": key, "url": server.http_url}])
    phone = await context.new_page()
    await phone.goto(f"{server.http_url}/admin/dashboard/")
    await phone.wait_for_selector("#dash-state[data-state='open']", timeout=10_000)
    await phone.wait_for_function(
        "() => document.querySelectorAll('#recent tbody tr').length > 0", timeout=10_000
    )
    # The chart fits the phone's width; close codes carry their names; events name their room.
    box = await phone.eval_on_selector("#traffic-chart", "svg => svg.getBoundingClientRect().width")
    assert box <= 390
    recent = await phone.text_content("#recent tbody")
    assert "cafe-talk" in (recent or "")
    await screenshot(phone, "moderation-dashboard-phone")
    await phone.goto(f"{server.http_url}/admin/")
    height = await phone.eval_on_selector("#live-dashboard-link", "a => a.getBoundingClientRect().height")
    assert height < 40, "the dashboard link wraps one letter per line"
    await screenshot(phone, "moderation-admin-index-phone")
    await context.close()

    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    await context.add_cookies([{"name": "sessionid", "value": key, "url": server.http_url}])
    desktop = await context.new_page()
    for name, url in (("admin-rooms-1280", ROOMS_URL), ("admin-messages-1280", MESSAGES_URL)):
        await desktop.goto(f"{server.http_url}{url}")
        overflow = await desktop.evaluate(
            "() => { const box = document.querySelector('#changelist .results');"
            " return box.scrollWidth - box.clientWidth; }"
        )
        await screenshot(desktop, name)
        assert overflow <= 1, f"{name}: the list runs {overflow} px past its box"
    await desktop.goto(f"{server.http_url}/admin/")
    height = await desktop.eval_on_selector("#live-dashboard-link", "a => a.getBoundingClientRect().height")
    await screenshot(desktop, "moderation-admin-index-1280")
    assert height < 40, "the dashboard link wraps one letter per line"
    await context.close()
