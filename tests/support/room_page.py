"""Driving Ripple's room page in a browser (Playwright pages), for the browser tests."""

# A short heartbeat, so that a dead or frozen server shows within seconds.
HEARTBEAT = {"RIPPLE_HEARTBEAT_INTERVAL_S": "1", "RIPPLE_HEARTBEAT_TIMEOUT_S": "1"}


async def open_room(browser, server, room: str, name: str, *, init_script: str | None = None):
    """A new page in the room as guest ``name``, once its socket is open; ``init_script`` runs first."""
    context = await browser.new_context()
    if init_script is not None:
        await context.add_init_script(init_script)
    page = await context.new_page()
    page.on("console", lambda message: print(f"[{name} console] {message.text}"))
    await page.goto(f"{server.http_url}/rooms/{room}/")
    await page.fill("#guest-name", name)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#composer")
    # Every state the indicator takes, in order: a short-lived one ("reconnecting" for the few
    # milliseconds of a jittered backoff) can fall between two polls of the current state.
    await page.evaluate(
        """() => {
            const indicator = document.querySelector('#conn-state');
            window.rippleStates = [[indicator.dataset.state, performance.now()]];
            new MutationObserver(() => window.rippleStates.push([indicator.dataset.state, performance.now()]))
                .observe(indicator, {attributes: true, attributeFilter: ['data-state']});
        }"""
    )
    await wait_state(page, "open")
    return page


async def wait_state(page, state: str, timeout_ms: float = 10_000) -> None:
    """Wait until the connection indicator shows ``state``."""
    await page.wait_for_function(
        "state => document.querySelector('#conn-state').dataset.state === state",
        arg=state,
        timeout=timeout_ms,
    )


async def state_mark(page) -> tuple[int, float]:
    """Where the state record stands now, and the page's clock (ms)."""
    return tuple(await page.evaluate("() => [window.rippleStates.length, performance.now()]"))


async def wait_entered(page, state: str, mark: tuple[int, float], timeout_ms: float = 10_000) -> float:
    """Wait until the indicator has entered ``state`` since ``mark``, however briefly.

    Returns the seconds from the mark to that change, by the page's own clock.
    """
    handle = await page.wait_for_function(
        """([state, index, since]) => {
            const found = window.rippleStates.slice(index).find(([seen]) => seen === state);
            return found ? (found[1] - since) / 1000 : false;
        }""",
        arg=[state, *mark],
        timeout=timeout_ms,
    )
    return float(await handle.json_value())


async def send(page, text: str) -> None:
    await page.fill("#body", text)
    await page.press("#body", "Enter")


async def bodies(page) -> list[str]:
    return await page.eval_on_selector_all("#messages li.msg .body", "items => items.map(i => i.textContent)")


async def wait_bodies(page, expected: list[str], timeout_ms: float = 15_000) -> None:
    await page.wait_for_function(
        """expected => {
            const items = document.querySelectorAll('#messages li.msg:not(.pending) .body');
            const got = [...items].map(i => i.textContent);
            return JSON.stringify(got) === JSON.stringify(expected);
        }""",
        arg=expected,
        timeout=timeout_ms,
    )
