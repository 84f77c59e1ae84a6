"""The server's speed measures, each of which can be switched off, so that ``make bench`` prices every one of
them in the same run (``python -m bench --only measures``): the load with all of them on, then with each off.

``SPEED_MEASURES_OFF`` (comma-separated names from ``MEASURES``) switches measures off; unknown names are a
configuration error. Nothing outside the benchmark needs it: every measure is on by default.
"""

from __future__ import annotations

from django.conf import settings

# Name -> what it does (and where), as the benchmark prints it.
MEASURES: dict[str, str] = {
    "gc_freeze": "objects loaded at start-up are frozen out of the garbage collector (fusionroom/asgi.py)",
    "flush_batch": "the flusher writes each tick as a few batched statements (apps/chat/flusher.py)",
    "warm_up": "what the first runs would load on the event loop loads at start-up (fusionroom/warmup.py)",
}


def measure_on(name: str) -> bool:
    """Whether the speed measure ``name`` is on (it is unless ``SPEED_MEASURES_OFF`` names it)."""
    if name not in MEASURES:
        raise KeyError(f"unknown speed measure {name!r}")
    return name not in getattr(settings, "SPEED_MEASURES_OFF", ())
