"""Settings from the environment: documented values are accepted, bad ones refused clearly."""

import json
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


def test_the_makefile_and_dockerfile_start_daphne_through_the_launcher_with_the_serving_flags():
    import re

    from project.serving import DAPHNE_FLAGS

    makefile = (ROOT / "Makefile").read_text()
    make_flags = re.search(r"^DAPHNE_FLAGS := (.*)$", makefile, re.M)
    assert make_flags is not None and make_flags.group(1).split() == DAPHNE_FLAGS
    cmd = re.search(r"^CMD (\[.*?\])$", (ROOT / "Dockerfile").read_text().replace("\\\n", ""), re.M | re.S)
    assert cmd is not None
    docker_argv = json.loads(cmd.group(1))
    for flag, value in zip(DAPHNE_FLAGS[::2], DAPHNE_FLAGS[1::2], strict=True):
        assert docker_argv[docker_argv.index(flag) + 1] == value, flag
    # Both start daphne through the launcher that puts it on uvloop (project/serve.py), as the
    # tests, the benchmark and deploy/cluster.py do (bench/processes.py daphne_argv).
    assert docker_argv[:3] == ["python", "-m", "project.serve"]
    assert "$(BIN)/python -m project.serve -b $(HOST) -p $(PORT) $(DAPHNE_FLAGS)" in makefile
