"""Two real pages chatting, surviving a server kill and a frozen server."""

import signal

import pytest
from channels.db import database_sync_to_async

from chat import services
from tests.support.room_page import (
    HEARTBEAT,
    bodies,
    open_room,
    send,
    state_mark,
    wait_bodies,
    wait_entered,
    wait_state,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


async def test_two_pages_chat_in_one_room(browser, daphne):
    server = daphne(**HEARTBEAT)
    ann = await open_room(browser, server, "lobby", "Ann")
    bob = await open_room(browser, server, "lobby", "Bob")
    await send(ann, "hello from ann")
    await wait_bodies(bob, ["hello from ann"])
    await send(bob, "<b>hi</b> ann")
    await wait_bodies(ann, ["hello from ann", "<b>hi</b> ann"])
    # Text stays text: no element was made from the body.
    assert await ann.locator("#messages b").count() == 0
    seqs = await ann.eval_on_selector_all("#messages li.msg", "items => items.map(i => i.dataset.seq)")
    assert seqs == ["1", "2"]


async def test_pages_reconnect_after_a_server_kill_and_show_everything_once(
    browser, daphne, live_database_url
):
    server = daphne(**HEARTBEAT)
    ann = await open_room(browser, server, "restart", "Ann")
    bob = await open_room(browser, server, "restart", "Bob")
    await send(ann, "before")
    await wait_bodies(bob, ["before"])

    marks = [await state_mark(ann), await state_mark(bob)]
    server.signal(signal.SIGKILL)
    server.proc.wait(timeout=10)
    await wait_entered(ann, "reconnecting", marks[0])
    await wait_entered(bob, "reconnecting", marks[1])
    # While the server is down: Ann sends (queued in the page), and another writer posts.
    await send(ann, "queued while down")
    room = await database_sync_to_async(services.room_get_or_create)(slug="restart")
    await database_sync_to_async(services.message_store)(
        room=room, author="cron", user_id=None, body="posted while down", client_id="cron-1"
    )

    restarted = daphne(port=server.port, **HEARTBEAT)
    assert restarted.alive()
    expected = ["before", "posted while down", "queued while down"]
    await wait_state(ann, "open", timeout_ms=40_000)
    await wait_state(bob, "open", timeout_ms=40_000)
    await wait_bodies(ann, expected, timeout_ms=20_000)
    await wait_bodies(bob, expected, timeout_ms=20_000)
    await send(bob, "after")
    await wait_bodies(ann, [*expected, "after"])
    assert await bodies(ann) == [*expected, "after"]
    assert await bodies(bob) == [*expected, "after"]


async def test_a_frozen_server_is_detected_within_interval_plus_timeout(browser, daphne):
    server = daphne(**HEARTBEAT)
    page = await open_room(browser, server, "frozen", "Ann")
    mark = await state_mark(page)
    server.signal(signal.SIGSTOP)
    try:
        # Measured by the page's clock from just before the freeze, whatever the polling delay.
        detected_after = await wait_entered(page, "reconnecting", mark, timeout_ms=10_000)
    finally:
        server.signal(signal.SIGCONT)
    print(f"frozen server detected after {detected_after:.2f} s")
    # Interval + timeout is 2 s; the margin covers the page's polling and a busy machine.
    assert detected_after < 2.75
    await wait_state(page, "open", timeout_ms=30_000)


async def test_echo_playground_shows_the_tutorial_event_sequence(browser, daphne):
    server = daphne()
    page = await browser.new_page()
    await page.goto(f"{server.http_url}/echo/")
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#log li')].some(li => li.textContent.startsWith('@close'))",
        timeout=20_000,
    )
    log = await page.eval_on_selector_all("#log li", "items => items.map(i => i.textContent)")
    assert log[0].startswith("@open")
    assert log[1] == "@message: Hello Client"
    assert any(line.startswith("@message: received: Hello Server") for line in log)
    assert log[-1].startswith("@close")
    assert "3" in await page.text_content("#ready-state")


async def members(page) -> list[str]:
    return await page.eval_on_selector_all("#members li", "items => items.map(i => i.textContent)")


async def wait_members(page, expected: list[str], timeout_ms: float = 10_000) -> None:
    await page.wait_for_function(
        """expected => {
            const got = [...document.querySelectorAll('#members li')].map(i => i.textContent).sort();
            return JSON.stringify(got) === JSON.stringify(expected);
        }""",
        arg=sorted(expected),
        timeout=timeout_ms,
    )


async def test_pages_on_two_workers_share_messages_and_the_member_list(browser, daphne, redis_url):
    env = {**HEARTBEAT, "REDIS_URL": redis_url, "RIPPLE_PRESENCE_GRACE_S": "0.5"}
    first, second = daphne(**env), daphne(**env)
    ann = await open_room(browser, first, "cluster", "Ann")
    bob = await open_room(browser, second, "cluster", "Bob")
    await wait_members(ann, ["Ann", "Bob"])
    await wait_members(bob, ["Ann", "Bob"])
    assert await ann.text_content("#members li.me") == "Ann"
    assert await ann.text_content("#member-count") == "2"
    await send(bob, "across processes")
    await wait_bodies(ann, ["across processes"])
    await bob.context.close()
    await wait_members(ann, ["Ann"])
