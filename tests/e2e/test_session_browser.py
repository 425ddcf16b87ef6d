"""Logging out in one tab closes the same session's sockets in every other tab (4401)."""

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(40)]

PASSWORD = "pw-long-enough-1"


async def test_logging_out_in_one_tab_signs_out_the_socket_in_another(browser, daphne):
    server = daphne()
    await database_sync_to_async(User.objects.create_user)("dora", password=PASSWORD)
    await database_sync_to_async(User.objects.create_user)("ezra", password=PASSWORD)

    async def logged_in_tabs(name: str, count: int):
        context = await browser.new_context()
        pages = [await context.new_page() for _ in range(count)]
        await pages[0].goto(f"{server.http_url}/accounts/login/?next=/rooms/hall/")
        await pages[0].fill("#id_username", name)
        await pages[0].fill("#id_password", PASSWORD)
        await pages[0].click("#login-form button[type=submit]")
        await pages[0].wait_for_url(f"{server.http_url}/rooms/hall/")
        for page in pages[1:]:
            await page.goto(f"{server.http_url}/rooms/hall/")
        for page in pages:
            await page.wait_for_selector('#conn-state[data-state="open"]', timeout=10_000)
        return pages

    dora_room, dora_other = await logged_in_tabs("dora", 2)
    (ezra_room,) = await logged_in_tabs("ezra", 1)

    await dora_other.click("#logout")
    await dora_other.wait_for_url(f"{server.http_url}/")
    # The other tab's socket spoke for the ended session: closed with 4401, and the page says so
    # instead of reconnecting as a guest.
    await dora_room.wait_for_selector('#conn-state[data-state="closed"]', timeout=10_000)
    assert await dora_room.text_content("#conn-state") == "Signed out. Reload the page."
    # Another user's socket is untouched.
    assert await ezra_room.get_attribute("#conn-state", "data-state") == "open"
    ended = [line for line in server.output().splitlines() if '"event": "session_ended"' in line]
    # dora's sockets only (the tab that logged out may have closed its own first, navigating).
    assert 1 <= len(ended) <= 2 and all('"user": "dora"' in e and '"reason": "logout"' in e for e in ended)
