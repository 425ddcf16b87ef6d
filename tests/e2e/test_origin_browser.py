"""A page on another origin cannot open a chat socket, even to a server its user is logged in to."""

import http.server
import json
import threading

import pytest

from tests.support.processes import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

# Opens a chat socket from the page and reports what happened first: its welcome, or its close.
TRY_SOCKET = """
(url) => new Promise((resolve) => {
  const ws = new WebSocket(url);
  ws.onmessage = (event) => { resolve({outcome: 'message', type: JSON.parse(event.data).type}); ws.close(); };
  ws.onclose = (event) => resolve({outcome: 'closed', code: event.code});
})
"""


class AnotherSite(http.server.BaseHTTPRequestHandler):
    """A page on another origin (another port), with no Content-Security-Policy of its own."""

    def do_GET(self) -> None:
        body = b"<!doctype html><p>another site</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("allowlist", [True, False], ids=["allowlist", "default-same-origin"])
async def test_only_allowed_origins_can_open_a_socket(daphne, browser, allowlist):
    port = free_port()
    # The default admits the site's own origin only: a page on another port of the same host
    # (the "other site" below) is refused as it is with an explicit allowlist.
    env = {"RIPPLE_ALLOWED_ORIGINS": f"http://127.0.0.1:{port}"} if allowlist else {}
    server = daphne(port=port, **env)
    socket_url = f"ws://127.0.0.1:{port}/ws/chat/"
    context = await browser.new_context()
    # Another site's page (Ripple's own CSP already forbids its pages to connect elsewhere; an
    # attacker's page has no such policy).
    evil_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AnotherSite)
    threading.Thread(target=evil_server.serve_forever, daemon=True).start()
    evil = f"http://127.0.0.1:{evil_server.server_address[1]}"
    try:
        page = await context.new_page()
        await page.goto(f"http://127.0.0.1:{port}/echo/")
        assert await page.evaluate(TRY_SOCKET, socket_url) == {"outcome": "message", "type": "welcome"}
        await page.goto(f"{evil}/")
        assert await page.evaluate(TRY_SOCKET, socket_url) == {"outcome": "closed", "code": 1006}
    finally:
        await context.close()
        evil_server.shutdown()
        evil_server.server_close()
    refused = [
        json.loads(line[line.index("{") :])
        for line in server.output().splitlines()
        if '"event": "refused"' in line and '"reason": "origin_not_allowed"' in line
    ]
    assert [event["origin"] for event in refused] == [evil]
