"""A staff member logs in to the admin and watches the live dashboard count a new socket."""

import pytest
import websockets
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from tests.support.origins import same_origin

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-long-enough-1"


async def staff_page(browser, server):
    """A page logged in to the admin as a staff member, on the admin index."""
    await database_sync_to_async(User.objects.create_user)("operator", password=PASSWORD, is_staff=True)
    page = await (await browser.new_context()).new_page()
    page.on("console", lambda message: print(f"[dashboard console] {message.text}"))
    await page.goto(f"{server.http_url}/admin/login/?next=/admin/")
    await page.fill("#id_username", "operator")
    await page.fill("#id_password", PASSWORD)
    await page.click("input[type=submit]")
    await page.wait_for_selector("#live-dashboard-link")
    return page


async def wait_live(page, timeout_ms: float = 10_000) -> None:
    await page.wait_for_function(
        "() => document.querySelector('#dash-state').dataset.state === 'open'"
        " && /^[0-9]+$/.test(document.querySelector('#total-sockets').textContent)",
        timeout=timeout_ms,
    )


async def test_dashboard_counts_a_new_chat_socket_within_seconds(browser, daphne):
    server = daphne()
    page = await staff_page(browser, server)
    await page.click("#live-dashboard-link")
    await page.wait_for_url(f"{server.http_url}/admin/dashboard/")
    await wait_live(page)
    before = int(await page.text_content("#total-sockets"))
    assert await page.text_content("#total-processes") == "1"

    async with websockets.connect(
        f"{server.ws_url}/ws/chat/", origin=same_origin(f"{server.ws_url}/ws/chat/")
    ) as ws:
        await ws.recv()  # welcome
        await page.wait_for_function(
            "before => Number(document.querySelector('#total-sockets').textContent) > before",
            arg=before,
            timeout=5_000,
        )
        assert int(await page.text_content("#total-sockets")) == before + 1
        await page.wait_for_function(
            "() => [...document.querySelectorAll('#recent tbody tr td:nth-child(2)')]"
            ".some(td => td.textContent === 'connect')",
            timeout=5_000,
        )
    await page.wait_for_function(
        "before => Number(document.querySelector('#total-sockets').textContent) === before",
        arg=before,
        timeout=5_000,
    )
    # The chart has its two lines, one point per second of the window.
    points = await page.get_attribute("#chart-in", "points")
    assert len(points.split()) == 300
    assert await page.locator("#processes tbody tr").count() == 1


async def test_dashboard_page_sends_a_non_staff_user_to_the_login(browser, daphne):
    server = daphne()
    await database_sync_to_async(User.objects.create_user)("viewer", password=PASSWORD)
    page = await browser.new_page()
    await page.goto(f"{server.http_url}/admin/dashboard/")
    assert page.url.startswith(f"{server.http_url}/admin/login/")
    await page.fill("#id_username", "viewer")
    await page.fill("#id_password", PASSWORD)
    await page.click("input[type=submit]")
    # A non-staff login is refused by the admin login form itself.
    await page.wait_for_selector(".errornote")
    assert page.url.startswith(f"{server.http_url}/admin/login/")
