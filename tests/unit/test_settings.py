"""Settings from the environment: documented values are accepted, bad ones refused clearly."""

import subprocess
import sys

from tests.support.processes import ROOT

PRINT_CONN_MAX_AGE = (
    "import django; django.setup(); from django.conf import settings; "
    "print(settings.DATABASES['default']['CONN_MAX_AGE'])"
)


def load_settings(**env: str) -> subprocess.CompletedProcess:
    """Import project.settings in a fresh interpreter with ``env`` on top of a debug setup."""
    full_env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "project.settings", "DJANGO_DEBUG": "1"}
    return subprocess.run(
        [sys.executable, "-c", PRINT_CONN_MAX_AGE],
        cwd=ROOT,
        env={**full_env, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_database_conn_max_age_defaults_to_persistent_and_accepts_zero():
    assert load_settings().stdout.strip() == "600"
    # .env.example documents 0 as "a new connection per query".
    assert load_settings(DATABASE_CONN_MAX_AGE="0").stdout.strip() == "0"


def test_a_negative_or_non_numeric_conn_max_age_is_refused_by_name():
    for value in ("-1", "soon"):
        completed = load_settings(DATABASE_CONN_MAX_AGE=value)
        assert completed.returncode != 0
        assert "DATABASE_CONN_MAX_AGE" in completed.stderr
