"""Start-up warm-up: what a worker's first runs would load on its event loop, loaded before it serves.

Django, its template engine and anyio load lazily. In a new worker the first turn's snapshot compiled the chat
templates and imported every template tag library (20-40 ms), the first finished turn's ``{% url %}`` imported
the whole URLconf with the API's request schemas (about 130 ms), and the first upstream request imported
anyio's asyncio backend (about 20 ms; httpcore's locks and events use it), and the first model request
loaded the CA bundle into the TLS context that every upstream connection shares (40 ms of CPU in a thread,
holding the interpreter lock as 30 runs started at once). Each of those held up every token
of every run in the process: with two workers, the one that had served no page yet stalled for 150-230 ms as
its first turns ended. ``fusionroom/asgi.py`` calls ``warm_up`` once, before ``gc.freeze``, so what it loads
is frozen too. ``python -m bench --only measures`` prices it (``SPEED_MEASURES_OFF=warm_up``).
"""

from __future__ import annotations

import asyncio
import logging
import threading

import anyio
from django.urls import reverse

from apps.providers.http import tls_context_ready

logger = logging.getLogger(__name__)


def warm_up() -> None:
    """Load the URLconf and its reverse tables, render a sample turn, start anyio's asyncio backend, load the
    TLS context of the upstream connections.

    A failure is logged and otherwise ignored: the first runs then load what they need, as they would without.
    """
    try:
        reverse("chat:home")
    except Exception:
        logger.warning("warm-up: the URLconf did not load", exc_info=True)
    # On an event loop of its own, in a thread of its own (the caller may have a loop of its own, running or
    # not): the recorder renders on a loop, and anyio picks its backend from the running loop.
    thread = threading.Thread(target=asyncio.run, args=(_on_a_loop(),), name="warm-up")
    thread.start()
    thread.join()


async def _on_a_loop() -> None:
    from apps.chat import rendering

    try:
        rendering.warm_up()
    except Exception:
        logger.warning("warm-up: the sample turn did not render", exc_info=True)
    try:
        anyio.Event()
    except Exception:
        logger.warning("warm-up: anyio's backend did not load", exc_info=True)
    try:
        await tls_context_ready()
    except Exception:
        logger.warning("warm-up: the TLS context did not load", exc_info=True)
