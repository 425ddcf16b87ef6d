"""The worker's garbage-collector policy (chat/gc_policy.py), as project/asgi.py applies it."""

import gc
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from chat import gc_policy


@pytest.mark.parametrize(
    ("values", "expected"),
    [(["20000", "20", "20"], (20000, 20, 20)), (["default"], None), ([], None), (["1", "1", "1"], (1, 1, 1))],
)
def test_thresholds_are_read(values, expected):
    assert gc_policy.thresholds(values) == expected


@pytest.mark.parametrize("values", [["20000", "20"], ["a", "b", "c"], ["0", "10", "10"], ["700", "-1", "10"]])
def test_bad_thresholds_are_refused_with_the_setting_named(values):
    with pytest.raises(ImproperlyConfigured, match="RIPPLE_GC_THRESHOLDS must be three whole numbers"):
        gc_policy.thresholds(values)


def worker_gc(env: dict[str, str]) -> tuple[tuple[int, int, int], int]:
    """(thresholds, frozen objects) in a fresh process that loaded the ASGI application."""
    code = "import gc, project.asgi; print(*gc.get_threshold(), gc.get_freeze_count())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={
            "DJANGO_DEBUG": "1",
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "PATH": "/usr/bin:/bin",
            **env,
        },
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    numbers = [int(value) for value in out]
    return (numbers[0], numbers[1], numbers[2]), numbers[3]


def test_the_asgi_application_freezes_its_startup_and_sets_the_thresholds():
    thresholds, frozen = worker_gc({})
    assert thresholds == (1000, 10, 1000)
    # Django, Channels and the app's modules: tens of thousands of objects out of every pass.
    assert frozen > 20_000
    thresholds, frozen = worker_gc({"RIPPLE_GC_THRESHOLDS": "default"})
    assert thresholds == (700, 10, 10)
    assert frozen > 20_000


def test_a_bad_value_stops_the_worker_with_the_reason():
    with pytest.raises(subprocess.CalledProcessError) as failed:
        worker_gc({"RIPPLE_GC_THRESHOLDS": "lots"})
    assert "RIPPLE_GC_THRESHOLDS must be three whole numbers" in failed.value.stderr


def test_apply_returns_what_is_in_force():
    before = gc.get_threshold()
    try:
        assert gc_policy.apply(["30000", "15", "12"]) == (30000, 15, 12) == gc.get_threshold()
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
