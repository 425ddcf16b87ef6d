"""The project's own facts agree with each other: versions, licence, changelog, the testing doc."""

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import chat

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "tests" / "unit" / "test_channels_example.py"


def pyproject_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_package_json_names_node_20_and_the_pyproject_version_and_licence():
    package = json.loads((ROOT / "package.json").read_text())
    assert package["engines"] == {"node": ">=20"}
    assert package["version"] == pyproject_version()
    assert package["license"] == "MIT"


def test_chat_version_is_the_pyproject_version():
    assert chat.__version__ == pyproject_version()


def test_the_licence_is_mit_and_the_changelog_has_both_releases():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "Keep a Changelog" in changelog
    releases = re.findall(r"^## \[([^\]]+)\]", changelog, flags=re.MULTILINE)
    assert releases == ["Unreleased", pyproject_version()]


def test_the_testing_doc_shows_the_example_test_file_verbatim():
    doc = (ROOT / "docs" / "testing.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```$", doc, flags=re.MULTILINE | re.DOTALL)
    assert EXAMPLE.read_text() in blocks


def test_the_example_passes_under_project_settings_without_the_suites_fixtures(tmp_path):
    """As a project of one's own runs it: persistent connections, none of tests/conftest.py."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_", "REDIS_"))}
    env.update(
        DJANGO_SECRET_KEY="ripple-tests-only-not-secret",
        # A file path that is never created: the test database of a SQLite file is in memory,
        # so this run cannot touch another run's database.
        DATABASE_URL=f"sqlite:///{tmp_path / 'never-created.sqlite3'}",
    )
    argv = [sys.executable, "-m", "pytest", str(EXAMPLE), "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*argv, "--noconftest", "--ds=project.settings"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"\b3 passed\b", result.stdout), result.stdout[-3000:]
