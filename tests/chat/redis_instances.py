"""Two application instances sharing Redis, for the chat tests over channels-redis (run with REDIS_URL only).

Each instance is the full ASGI stack on its own channel-layer instance (its own Redis connections and client
prefix), as two Daphne processes would be. Both layers are built by ``redis_channel_layer`` in
fusionroom/settings.py, the function that builds the real one: the tests run on a deployment's configuration.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from django.urls import path

from apps.chat.consumers import ConversationConsumer
from apps.chat.origin import SameOriginValidator
from fusionroom.settings import redis_channel_layer

REDIS_URL = os.environ.get("REDIS_URL", "")


class SecondInstanceConsumer(ConversationConsumer):
    channel_layer_alias = "second"


def second_instance() -> Any:
    """The ASGI application of a second server process: its sockets use the ``second`` layer."""
    routes = [path("ws/conversations/<int:conversation_id>/", SecondInstanceConsumer.as_asgi())]
    return SameOriginValidator(AuthMiddlewareStack(URLRouter(routes)))


def two_instance_layers() -> dict[str, Any]:
    """``CHANNEL_LAYERS`` for both instances, under a prefix of this test's own."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    return {
        "default": redis_channel_layer(REDIS_URL, prefix=prefix),
        "second": redis_channel_layer(REDIS_URL, prefix=prefix),
    }
