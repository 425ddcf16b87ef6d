"""Deployable as Django people deploy: locked installs, pinned images, one log format, clean checks."""

from __future__ import annotations

import json
import logging
import re
import secrets
import subprocess
import sys
from importlib import metadata

import pytest

from chat.logs import JsonFormatter, TextFormatter
from tests.support.processes import ROOT

LOCK_ENTRY = re.compile(r"^([A-Za-z0-9._-]+)==(\S+) \\\n((?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", re.M)
SHELL_NAME = re.compile(r"^([A-Z][A-Z0-9_]*)=", re.M)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock(path: str) -> dict[str, str]:
    """Name -> version of every entry of a lock file; each must carry at least one sha256 hash."""
    text = (ROOT / path).read_text()
    entries = {normalized(m.group(1)): m.group(2) for m in LOCK_ENTRY.finditer(text)}
    pinned = re.findall(r"^([A-Za-z0-9._-]+)==", text, re.M)
    assert len(entries) == len(pinned), f"{path}: an entry without hashes"
    return entries


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` with project.settings in a fresh interpreter and only ``env`` set."""
    full_env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "project.settings", **env}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def setting(name: str, **env: str) -> object:
    """One setting's value, as project.settings computes it from ``env``."""
    code = f"import json; from django.conf import settings; print(json.dumps(settings.{name}, default=str))"
    completed = run_python(code, **env)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def production_env(**extra: str) -> dict[str, str]:
    return {"DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_DEBUG": "0", **extra}


# Installs that repeat.


def test_the_dev_lock_is_exactly_what_is_installed_with_hashes():
    installed = {
        normalized(dist.metadata["Name"]): dist.version
        for dist in metadata.distributions()
        if normalized(dist.metadata["Name"]) != "pip"
    }
    assert lock("requirements-dev.lock") == installed


def test_the_runtime_lock_is_the_dev_locks_runtime_part_and_covers_requirements_txt():
    runtime, dev = lock("requirements.lock"), lock("requirements-dev.lock")
    assert {name: dev.get(name) for name in runtime} == runtime
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            assert runtime[normalized(name.split("[")[0])] == version, line
    # Twisted's private transport attributes are read by chat/limits.py: it must never float.
    assert "twisted" in runtime


def test_make_the_dockerfile_and_ci_install_from_the_locks():
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet --require-hashes -r requirements.lock" in makefile
    assert "pip install --quiet --require-hashes -r requirements-dev.lock" in makefile
    assert not re.search(r"pip install .*-r requirements(-dev)?\.txt", makefile)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --require-hashes --no-deps -r requirements.lock" in dockerfile
    assert "requirements.txt" not in re.findall(r"^(?:COPY|RUN) .*$", dockerfile, re.M)[0]


def test_every_image_is_pinned_to_a_release():
    dockerfile = (ROOT / "Dockerfile").read_text()
    compose = (ROOT / "docker-compose.yml").read_text()
    images = re.findall(r"^FROM (\S+)", dockerfile, re.M) + re.findall(r"^\s+image: (\S+)", compose, re.M)
    pulled = [image for image in images if image != "ripple:local"]  # built here, never pulled
    assert len(pulled) >= 4
    for image in pulled:
        # A release, not a series (python:3.11, redis:7): major.minor.patch; PostgreSQL numbers
        # its releases major.minor (16.9).
        version = re.search(r":v?(\d+(?:\.\d+)*)(?:-[a-z0-9-]+)?$", image)
        parts = 2 if image.startswith("postgres:") else 3
        assert version is not None and len(version.group(1).split(".")) == parts, f"{image} floats"


def test_the_compose_file_has_no_obsolete_version_key():
    assert not re.search(r"^version:", (ROOT / "docker-compose.yml").read_text(), re.M)


# One log format.


def record(message: str = "hello %s", *, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    made = logging.getLogger("django.request").makeRecord(
        "django.request", logging.ERROR, __file__, 1, message, ("there",), exc_info, extra=extra
    )
    return made


def test_json_lines_have_one_timestamp_the_fields_and_the_exception():
    line = json.loads(JsonFormatter().format(record(exc=True, status_code=500, request=object())))
    assert line["event"] == "hello there" and line["level"] == "error" and line["logger"] == "django.request"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["ts"])
    assert "t" not in line and "request" not in line
    assert line["status_code"] == 500
    assert "ValueError: boom" in line["exc"]


def test_event_lines_carry_no_second_timestamp(caplog):
    from chat.logs import log_event

    caplog.set_level(logging.INFO, logger="ripple.events")
    log_event("connect", id="c1", user="bob")
    line = json.loads(JsonFormatter().format(caplog.records[-1]))
    assert {key for key in line if key in ("t", "ts", "time")} == {"ts"}
    assert line["id"] == "c1" and line["user"] == "bob"


def test_text_lines_are_readable_and_keep_the_exception():
    text = TextFormatter().format(record(exc=True, status_code=500))
    first, *rest = text.splitlines()
    assert re.fullmatch(r"\S+ ERROR\s+django\.request: hello there status_code=500", first)
    assert "ValueError: boom" in rest[-1]


LOG_A_REQUEST_ERROR = (
    "import django, logging; django.setup(); "
    "logging.getLogger('django.request').error('Internal Server Error: /x'); "
    "logging.getLogger('daphne.server').info('Listening'); "
    "logging.getLogger('ripple.events').info('connect')"
)


@pytest.mark.parametrize("debug", ["0", "1"])
def test_every_logger_writes_one_line_per_record_in_the_chosen_format(debug):
    completed = run_python(LOG_A_REQUEST_ERROR, **production_env(DJANGO_DEBUG=debug))
    lines = completed.stderr.splitlines()
    # Django's own console handler used to print request errors a second time with DEBUG on.
    assert len(lines) == 3, lines
    if debug == "0":
        assert [json.loads(line)["logger"] for line in lines] == [
            "django.request",
            "daphne.server",
            "ripple.events",
        ]
    else:
        assert [line.split()[2] for line in lines] == ["django.request:", "daphne.server:", "ripple.events:"]


def test_log_format_follows_debug_unless_set_and_refuses_others():
    assert setting("RIPPLE_LOG_FORMAT", **production_env()) == "json"
    assert setting("RIPPLE_LOG_FORMAT", DJANGO_DEBUG="1") == "text"
    assert setting("RIPPLE_LOG_FORMAT", DJANGO_DEBUG="1", RIPPLE_LOG_FORMAT="json") == "json"
    refused = run_python("import django; django.setup()", **production_env(RIPPLE_LOG_FORMAT="xml"))
    assert refused.returncode != 0 and "RIPPLE_LOG_FORMAT" in refused.stderr


# A clean deploy check.


@pytest.mark.parametrize(
    "https",
    [{}, {"DJANGO_HTTPS": "1", "DJANGO_HSTS_SECONDS": "31536000"}],
    ids=["plain-http", "behind-tls"],
)
def test_check_deploy_passes_with_the_documented_production_settings(https):
    completed = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "project.settings",
            **production_env(**https),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "no issues" in completed.stdout


def test_check_deploy_still_warns_about_what_is_not_deliberate():
    """Behind TLS without HSTS, HSTS is the one warning left: nothing real is silenced."""
    completed = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "project.settings",
            **production_env(DJANGO_HTTPS="1"),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert set(re.findall(r"\(security\.W\d+\)", completed.stderr + completed.stdout)) == {"(security.W004)"}


def test_static_files_are_served_by_the_app_only_with_debug_by_default():
    assert setting("RIPPLE_SERVE_STATIC", **production_env()) is False
    assert setting("RIPPLE_SERVE_STATIC", DJANGO_DEBUG="1") is True
    assert setting("RIPPLE_SERVE_STATIC", **production_env(RIPPLE_SERVE_STATIC="1")) is True


def env_example() -> dict[str, str]:
    """.env.example as `make run` reads it: sourced by the shell (set -a; . ./.env)."""
    completed = subprocess.run(
        ["sh", "-c", "set -a; . ./.env.example; set +a; env -0"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return dict(item.split("=", 1) for item in completed.stdout.split("\0") if "=" in item)


def test_env_example_names_every_setting_the_settings_read():
    read = set(
        re.findall(
            r"env(?:_bool|_int|_float|_list)?\(\s*\"([A-Z][A-Z0-9_]*)\"",
            (ROOT / "project/settings.py").read_text(),
        )
    )
    # The launcher reads its own before Django starts (project/serve.py).
    read |= set(
        re.findall(r"environ\.get\(\s*\"(RIPPLE_[A-Z0-9_]*)\"", (ROOT / "project/serve.py").read_text())
    )
    assert "RIPPLE_EVENT_LOOP" in read
    documented = set(SHELL_NAME.findall((ROOT / ".env.example").read_text()))
    assert read - documented == set()
    assert documented - read == set()


def test_env_example_works_as_a_dot_env_for_make_run():
    """`cp .env.example .env && make run`: the Makefile turns DEBUG on unless .env sets it."""
    example = {
        name: value
        for name, value in env_example().items()
        if name in SHELL_NAME.findall((ROOT / ".env.example").read_text())
    }
    example["DJANGO_DEBUG"] = example.get("DJANGO_DEBUG") or "1"  # Makefile: $${DJANGO_DEBUG:-1}
    completed = run_python("import django; django.setup(); print('ok')", **example)
    assert completed.returncode == 0, completed.stderr


def test_env_example_states_the_frame_limit_daphne_enforces():
    from project.serving import MAX_WEBSOCKET_FRAME_BYTES

    line = next(
        line
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.startswith("RIPPLE_MAX_FRAME_CHARS=")
    )
    assert f"{MAX_WEBSOCKET_FRAME_BYTES // 1024} KiB" in line
