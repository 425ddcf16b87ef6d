"""Accessibility checks in the browser: axe-core (npm, package-lock.json) injected by Playwright.

``audit(page, name)`` runs axe on the page at desktop and phone width, saves a full-page
screenshot of each to the artefacts folder and returns the serious and critical violations
(the others are printed). No CDN is reachable from the test machines, so axe comes from
``node_modules/axe-core``, which ``make test`` installs with ``npm ci``.
"""

import os
from pathlib import Path

from tests.support.processes import ROOT
from tests.support.required import require

AXE_SOURCE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
BLOCKING = ("serious", "critical")

# What axe found, trimmed to what a reader of the test output needs.
_RUN = """() => axe.run(document, {resultTypes: ['violations']}).then((result) => ({
    passed: result.passes.length,
    review: result.incomplete.map((v) => `${v.id} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`),
    violations: result.violations.map((v) => ({
        id: v.id,
        impact: v.impact,
        help: v.help,
        nodes: v.nodes.map((n) => ({target: n.target.join(' '), summary: n.failureSummary})),
    })),
}))"""


def require_axe() -> None:
    """Go on when axe-core is installed; fail under CI, else skip loudly."""
    require(
        f"axe-core is not installed ({AXE_SOURCE} is missing): run `npm ci` (make test does it "
        "when Node.js is present); the accessibility browser tests were not run",
        AXE_SOURCE.is_file(),
    )


def artifacts_dir() -> Path:
    """Where screenshots go: RIPPLE_ARTIFACTS_DIR, else test-artifacts/screenshots/ (gitignored)."""
    configured = os.environ.get("RIPPLE_ARTIFACTS_DIR")
    folder = Path(configured) if configured else ROOT / "test-artifacts" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def new_context(browser, **options):
    """A browser context in which axe can be injected.

    The pages' Content-Security-Policy (script-src 'self') refuses the inline script that
    Playwright's add_script_tag adds, so the context bypasses CSP; the pages' own scripts are
    served from 'self' and behave the same either way.
    """
    return await browser.new_context(bypass_csp=True, viewport=VIEWPORTS["desktop"], **options)


def _describe(violation: dict) -> str:
    nodes = "\n".join(f"    {node['target']}: {node['summary']}" for node in violation["nodes"])
    return f"  [{violation['impact']}] {violation['id']}: {violation['help']}\n{nodes}"


async def violations(page, label: str) -> list[str]:
    """Run axe on the page as it is now; print every violation, return the serious and critical ones."""
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.add_script_tag(path=str(AXE_SOURCE))
    result = await page.evaluate(_RUN)
    found = result["violations"]
    print(
        f"axe {label}: {result['passed']} rules passed, {len(found)} violated,"
        f" to review by hand: {', '.join(result['review']) or 'none'}"
    )
    for violation in found:
        print(f"axe {label}:\n{_describe(violation)}")
    return [f"{label}:\n{_describe(v)}" for v in found if v["impact"] in BLOCKING]


async def screenshot(page, name: str) -> Path:
    """A full-page screenshot of the page as ``name``.png in the artefacts folder."""
    path = artifacts_dir() / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


async def audit(page, name: str) -> list[str]:
    """Check the page at each width and screenshot it as ``name-desktop`` and ``name-phone``.

    Returns the serious and critical violations of both widths (empty when there are none).
    """
    blocking: list[str] = []
    for width_name, viewport in VIEWPORTS.items():
        await page.set_viewport_size(viewport)
        # The layout follows the new width before axe measures it.
        await page.evaluate(
            "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"
        )
        blocking += await violations(page, f"{name} at {width_name} {viewport['width']}x{viewport['height']}")
        await screenshot(page, f"{name}-{width_name}")
    await page.set_viewport_size(VIEWPORTS["desktop"])
    return blocking
