"""axe-core finds no serious or critical problem on the pages people use, at desktop and phone width.

Each test also leaves full-page screenshots of its page at 1280x800 and 390x844 in the artefacts
folder (RIPPLE_ARTIFACTS_DIR, else test-artifacts/screenshots/) for a reviewer to look at.
"""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from chat import services
from chat.models import Message
from tests.support.axe import audit, new_context, require_axe
from tests.support.moderate import moderate, moderation_env
from tests.support.room_page import send, wait_state

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

PASSWORD = "pw-long-enough-1"
ROOM = "team-room"


@pytest.fixture(autouse=True)
def axe_installed():
    require_axe()


def no_blocking(blocking: list[str]) -> None:
    assert not blocking, "serious or critical accessibility violations:\n" + "\n".join(blocking)


async def log_in(page, server, username: str, next_path: str) -> None:
    await page.goto(f"{server.http_url}/accounts/login/?next={next_path}")
    await page.fill("#id_username", username)
    await page.fill("#id_password", PASSWORD)
    await page.click("#login-form button[type=submit]")


async def guest_in_room(context, server, name: str):
    page = await context.new_page()
    await page.goto(f"{server.http_url}/rooms/{ROOM}/")
    await page.fill("#guest-name", name)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#composer")
    await wait_state(page, "open")
    return page


async def test_the_room_page_with_people_messages_and_an_announcement(
    browser, daphne, live_database_url, redis_url
):
    server = daphne(REDIS_URL=redis_url)
    env = moderation_env(live_database_url, redis_url)
    await database_sync_to_async(User.objects.create_user)("ada", password=PASSWORD)
    await database_sync_to_async(services.room_get_or_create)(slug=ROOM, title="Team room")
    ada_context = await new_context(browser)
    guest_context = await browser.new_context()
    try:
        page = await ada_context.new_page()
        page.on("console", lambda message: print(f"[ada console] {message.text}"))
        await log_in(page, server, "ada", f"/rooms/{ROOM}/")
        await page.wait_for_selector("#composer")
        await wait_state(page, "open")
        guest = await guest_in_room(guest_context, server, "Bob")

        await send(page, "Morning all. The notes for today are at https://example.com/notes")
        await send(guest, "Thanks, reading them now.")
        await send(guest, "oops, wrong room")
        await send(page, "A longer message, to see how a line that does not fit wraps at phone width " * 2)
        await page.wait_for_function(
            "() => document.querySelectorAll('#messages li.msg:not(.pending)').length === 4"
        )
        pk = await database_sync_to_async(lambda: Message.objects.get(body="oops, wrong room").pk)()
        await asyncio.to_thread(moderate, "delete", str(pk), env)
        await asyncio.to_thread(moderate, "announce", ROOM, env)
        await page.wait_for_selector("#messages li.msg.deleted", timeout=10_000)
        await page.wait_for_selector("#messages li.msg.system", timeout=10_000)
        await page.wait_for_function("() => document.querySelectorAll('#members li').length === 2")

        no_blocking(await audit(page, "room"))
        # The same conversation as the server renders it on a reload.
        await page.reload()
        await wait_state(page, "open")
        await page.wait_for_function("() => document.querySelectorAll('#members li').length === 2")
        no_blocking(await audit(page, "room-reloaded"))
    finally:
        await ada_context.close()
        await guest_context.close()


async def test_the_index_with_rooms(browser, daphne):
    server = daphne()
    await database_sync_to_async(services.room_get_or_create)(slug=ROOM, title="Team room")
    context = await new_context(browser)
    try:
        page = await guest_in_room(context, server, "Bob")
        await send(page, "hello")
        await page.wait_for_selector("#messages li.msg:not(.pending)")
        await page.goto(f"{server.http_url}/")
        await page.wait_for_selector("table.rooms")
        no_blocking(await audit(page, "index"))
    finally:
        await context.close()


async def test_the_login_page_and_its_error(browser, daphne):
    server = daphne()
    context = await new_context(browser)
    try:
        page = await context.new_page()
        await page.goto(f"{server.http_url}/accounts/login/")
        no_blocking(await audit(page, "login"))
        await log_in(page, server, "nobody", "/")
        await page.wait_for_selector(".error[role=alert]")
        no_blocking(await audit(page, "login-error"))
    finally:
        await context.close()


async def test_the_staff_dashboard(browser, daphne):
    server = daphne()
    await database_sync_to_async(User.objects.create_user)("operator", password=PASSWORD, is_staff=True)
    await database_sync_to_async(services.room_get_or_create)(slug=ROOM, title="Team room")
    context = await new_context(browser)
    guest_context = await browser.new_context()
    try:
        # Someone in a room, so the busiest rooms and the recent events have a row.
        await guest_in_room(guest_context, server, "Bob")
        page = await context.new_page()
        page.on("console", lambda message: print(f"[dashboard console] {message.text}"))
        await page.goto(f"{server.http_url}/admin/login/?next=/admin/dashboard/")
        await page.fill("#id_username", "operator")
        await page.fill("#id_password", PASSWORD)
        await page.click("input[type=submit]")
        await page.wait_for_url(f"{server.http_url}/admin/dashboard/")
        await page.wait_for_function(
            "() => document.querySelector('#dash-state').dataset.state === 'open'"
            " && /^[0-9]+$/.test(document.querySelector('#total-sockets').textContent)"
            " && document.querySelectorAll('#recent tbody tr').length > 0",
            timeout=10_000,
        )
        no_blocking(await audit(page, "dashboard"))
    finally:
        await context.close()
        await guest_context.close()
