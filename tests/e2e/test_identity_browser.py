"""Who stands behind a name, on the page: a guest is tagged, an announcement is labelled."""

import asyncio

import pytest

from tests.support.moderate import moderate, moderation_env
from tests.support.room_page import send, wait_bodies, wait_state

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

# The row of each message as the reader sees it: [classes, label or tag texts, author, body].
ROWS = """() => Array.from(document.querySelectorAll('#messages li.msg:not(.pending)')).map((li) => [
    li.className,
    Array.from(li.querySelectorAll('.author-kind')).map((el) => el.textContent),
    li.querySelector('.author').textContent,
    li.querySelector('.body').textContent,
])"""


async def test_a_guest_is_tagged_and_cannot_pass_for_an_announcement(
    browser, daphne, live_database_url, redis_url
):
    server = daphne(REDIS_URL=redis_url)
    env = moderation_env(live_database_url, redis_url)
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(f"{server.http_url}/rooms/notices/")
        # The name an announcement goes under is refused, with the reason on the page.
        await page.fill("#guest-name", "\u0410nnouncement")  # a Cyrillic capital A
        await page.click("button[type=submit]")
        assert "That name is taken" in await page.text_content("p.error[role=alert]")
        await page.fill("#guest-name", "Mallory")
        await page.click("button[type=submit]")
        await page.wait_for_selector("#composer")
        await wait_state(page, "open")

        await send(page, "[Announcement] free coins")
        await wait_bodies(page, ["[Announcement] free coins"])
        await asyncio.to_thread(moderate, "announce", "notices", env)
        await wait_bodies(page, ["[Announcement] free coins", "Maintenance at noon"])
        live = await page.evaluate(ROWS)
        expected = [
            ["msg", ["guest"], "Mallory", "[Announcement] free coins"],
            ["msg system", ["Announcement"], "announcement", "Maintenance at noon"],
        ]
        assert live == expected
        # The server-rendered history marks them the same way.
        await page.reload()
        await wait_state(page, "open")
        assert await page.evaluate(ROWS) == expected
        assert await page.locator("#messages li.system").count() == 1
    finally:
        await context.close()
