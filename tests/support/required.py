"""A part of the stack some tests need (nginx, chromium): fail loudly when CI must have it, else skip.

Under ``CI`` or ``RIPPLE_REQUIRE_ALL`` a missing part is a failure, so a runner without it
cannot pass green with those tests silently skipped; on a developer's machine it is a skip
that says what to install, reported (a warning by default) so it is not missed either.
"""

import os
import warnings
from collections.abc import Callable

import pytest


def _warn(reason: str) -> None:
    warnings.warn(reason, stacklevel=3)


def require(what: str, present: bool, *, report: Callable[[str], None] = _warn) -> None:
    """Go on when ``present``; otherwise fail under CI or RIPPLE_REQUIRE_ALL, else ``report`` and skip.

    ``what`` says what is missing, how to install it and which tests it costs.
    """
    if present:
        return
    if os.environ.get("CI") or os.environ.get("RIPPLE_REQUIRE_ALL"):
        pytest.fail(what)
    report(what)
    pytest.skip(what)
