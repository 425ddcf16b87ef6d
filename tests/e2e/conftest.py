"""Browser tests: headless Debian chromium driven by Playwright against a live daphne."""

import os
import shutil

import pytest

from tests.support.required import require

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SKIPPED: list[str] = []


def chromium_path() -> str | None:
    return os.environ.get("RIPPLE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
async def browser():
    path = chromium_path()
    missing = "Debian's chromium is not installed (apt-get install chromium); browser tests not run"
    # Reported in the banner below rather than as a warning.
    require(missing, path is not None, report=SKIPPED.append)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


def pytest_terminal_summary(terminalreporter):
    if SKIPPED:
        terminalreporter.write_sep("!", "BROWSER TESTS SKIPPED", red=True, bold=True)
        terminalreporter.write_line(SKIPPED[0], red=True)
