"""Moderation reaches an open page: a deleted message loses its text, a closed room stops."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat.models import Message
from tests.support.moderate import moderate, moderation_env
from tests.support.room_page import open_room, send, wait_bodies

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


async def test_a_page_shows_deletions_and_a_closed_room_live(browser, daphne, live_database_url, redis_url):
    server = daphne(REDIS_URL=redis_url)
    env = moderation_env(live_database_url, redis_url)
    page = await open_room(browser, server, "moderated-page", "Ann")
    await send(page, "regrettable")
    await send(page, "fine")
    await wait_bodies(page, ["regrettable", "fine"])
    pk = await database_sync_to_async(lambda: Message.objects.get(body="regrettable").pk)()

    await asyncio.to_thread(moderate, "delete", str(pk), env)
    await page.wait_for_selector('#messages li.msg.deleted[data-seq="1"]', timeout=10_000)
    assert await page.text_content('#messages li[data-seq="1"] .body') == "message deleted"
    assert await page.text_content('#messages li[data-seq="2"] .body') == "fine"
    # The page as the server renders it after a reload: the text is gone there too.
    await page.reload()
    await page.wait_for_selector('#conn-state[data-state="open"]', timeout=10_000)
    assert await page.text_content('#messages li.deleted[data-seq="1"] .body') == "message deleted"
    assert "regrettable" not in await page.content()

    await asyncio.to_thread(moderate, "close", "moderated-page", env)
    await page.wait_for_selector("#body:disabled", timeout=10_000)
    assert await page.text_content("#history-note") == (
        "This room was closed by a moderator: closed for the night"
    )
