"""Settings for the test run: the project's own, with a throwaway secret key."""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("DJANGO_SECRET_KEY", "ripple-tests-only-not-secret")
# Pages render with plain static names (no collectstatic manifest), as with DEBUG (issue 16).
os.environ.setdefault("RIPPLE_SERVE_STATIC", "1")

from project.settings import *  # noqa: F403
from project.settings import DATABASES

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that daphne processes started by the tests share the test
    # database; one per test run, so that two runs on one machine do not collide.
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / f"ripple-test-{os.getpid()}.sqlite3")
    }

# In this process only: connections opened in asgiref's worker threads by in-process consumer
# tests would outlive the test database (PostgreSQL refuses to drop a database in use). The
# daphne processes the tests start use project.settings, persistent connections included.
DATABASES["default"]["CONN_MAX_AGE"] = 0
