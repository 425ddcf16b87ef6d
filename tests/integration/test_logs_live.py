"""A production daphne (the Dockerfile's flags, DEBUG off) writes nothing but JSON log lines."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

from websockets.sync.client import connect

from tests.support.processes import ROOT, DaphneServer, wait_until


def dockerfile_flags() -> list[str]:
    """The daphne options of the Dockerfile's CMD that matter here (the access log's)."""
    cmd = re.search(r"^CMD (\[.*?\])$", (ROOT / "Dockerfile").read_text().replace("\\\n", ""), re.M | re.S)
    assert cmd is not None
    argv = json.loads(cmd.group(1))
    return ["--access-log", argv[argv.index("--access-log") + 1]]


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_every_line_a_production_worker_writes_is_one_json_object(live_database_url):
    server = DaphneServer(
        {
            "DJANGO_SECRET_KEY": "ripple-tests-only-not-secret",
            "DJANGO_DEBUG": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": live_database_url,
            "REDIS_URL": "",
            "DJANGO_LOG_LEVEL": "INFO",
            "RIPPLE_LOG_FORMAT": "",  # the default for DEBUG off
            "RIPPLE_DRAIN_S": "0.1",
        }
    )
    server.argv[-1:-1] = dockerfile_flags()
    try:
        server.start()
        assert get_status(f"{server.http_url}/healthz") == 200
        assert get_status(f"{server.http_url}/no-such-page/") == 404
        with connect(f"{server.ws_url}/ws/chat/", origin=server.http_url) as ws:  # type: ignore[arg-type]
            assert json.loads(ws.recv(timeout=5))["type"] == "welcome"
        wait_until(lambda: '"disconnect"' in server.output(), timeout_s=10, what="the disconnect event")
        server.stop()
        lines = [line for line in server.output().splitlines() if line.strip()]
        parsed = []
        for line in lines:
            try:
                parsed.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"not a JSON line: {line!r}\nall output:\n{server.output()}") from None
        for entry in parsed:
            assert {"ts", "level", "logger", "event"} <= entry.keys(), entry
            assert "t" not in entry, entry
        loggers = {entry["logger"] for entry in parsed}
        # daphne's own, Django's and Ripple's: all in one format.
        assert {"daphne.server", "django.request", "ripple.events"} <= loggers, loggers
        not_found = [entry for entry in parsed if entry["logger"] == "django.request"]
        assert len(not_found) == 1 and not_found[0]["status_code"] == 404, not_found
        assert [entry["event"] for entry in parsed if entry["logger"] == "ripple.events"][:2] == [
            "connect",
            "disconnect",
        ]
    finally:
        server.cleanup()
