"""The worker's garbage collector: what was loaded at startup is frozen, young collections rarer.

A worker holds every socket's objects for as long as the socket lives (a few thousand
container objects each), beside the ~100,000 that Django, Channels and Twisted load at startup.
CPython's default thresholds (700, 10, 10) then run a full collection whenever the surviving
objects grew by a quarter, each walking every object in the process: connecting 5,000 sockets
took eleven of them, up to 420 ms each (an event-loop stall for every socket) and 2 s of CPU
in all (``bench fanout --aftermath 5000``; docs/benchmarks.md).

``apply`` runs once, when the ASGI application has been built (project/asgi.py): a full
collection, then ``gc.freeze()``, which moves every object alive at that point (modules,
classes, settings, URL patterns) out of the collector's sight for good, then the thresholds of
``RIPPLE_GC_THRESHOLDS``. The default (1000, 10, 1000) keeps the young and middle collections
small (the middle one walks at most ~10,000 objects: a pause of a few ms) and makes a full
collection wait for a thousand middle ones. Measured on the same run: two full collections
instead of eleven, the longest 36 ms; GC CPU 0.6 s instead of 2.6 s. A larger young threshold
(20000, 20, 20) saved a little more CPU but made the middle collections walk 400,000 objects
(187 ms pauses). Cyclic garbage is still collected, by the same collector.
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
            f"(young, middle, old: 1000,10,1000) or {PYTHON_DEFAULT!r}, not {','.join(values)!r}"
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
