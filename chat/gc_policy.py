"""The worker's garbage collector: what was loaded at startup is frozen, young collections rarer.

A worker holds every socket's objects for as long as the socket lives (about 3,000 container
objects each), beside the tens of thousands Django, Channels and Twisted load at startup.
CPython's default thresholds (700, 10, 10) then run a young collection every 700 allocations
and a full one whenever the surviving objects grew by a quarter, each full one walking every
object in the process. Measured with ``bench capacity`` (3,000 sockets): eight full
collections of ~150 ms each (event-loop stalls for every socket) and 16 % of the worker's CPU
while the sockets connected (docs/benchmarks.md).

``apply`` runs once, when the ASGI application has been built (project/asgi.py): a full
collection, then ``gc.freeze()``, which moves every object alive at that point (modules,
classes, settings, URL patterns) out of the collector's sight for good, then the thresholds of
``RIPPLE_GC_THRESHOLDS``. Cyclic garbage made later is still collected, by the same collector,
only in larger steps.
"""

from __future__ import annotations

import gc

from django.core.exceptions import ImproperlyConfigured

# Python's own thresholds, for RIPPLE_GC_THRESHOLDS=default.
PYTHON_DEFAULT = "default"


def thresholds(values: list[str]) -> tuple[int, int, int] | None:
    """``RIPPLE_GC_THRESHOLDS`` as ``gc.set_threshold`` takes it; None keeps Python's own."""
    if values in ([], [PYTHON_DEFAULT]):
        return None
    try:
        numbers = tuple(int(value) for value in values)
    except ValueError:
        numbers = ()
    if len(numbers) != 3 or numbers[0] < 1 or min(numbers) < 1:
        raise ImproperlyConfigured(
            f"RIPPLE_GC_THRESHOLDS must be three whole numbers of at least 1 "
            f"(young, middle, old: 20000,20,20) or {PYTHON_DEFAULT!r}, not {','.join(values)!r}"
        )
    return numbers[0], numbers[1], numbers[2]


def apply(values: list[str]) -> tuple[int, int, int]:
    """Freeze what is alive now and set the thresholds; the thresholds in force afterwards."""
    chosen = thresholds(values)
    gc.collect()
    gc.freeze()
    if chosen is not None:
        gc.set_threshold(*chosen)
    young, middle, old = gc.get_threshold()
    return young, middle, old
