"""What an API request runs, decided before anything is sent (``services.completion_plan``) and read by the
paths that run it (``fusion_runs``, ``server_tool``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from apps.api.schemas import ChatCompletionRequest
from apps.panels.models import Panel

User = AbstractBaseUser | AnonymousUser


@dataclass
class ApiPanelChoice:
    """The panel a fusion run of the API uses, as the snapshot the turn freezes."""

    snapshot: dict[str, Any]
    # The saved panel, None when the request's plugin changed it (then only the snapshot ran).
    panel: Panel | None
    label: str


@dataclass
class Plan:
    mode: Literal["plain", "fusion", "tool"]
    # The model called directly (plain and tool modes); the requested id in fusion mode.
    model: str
    request: ChatCompletionRequest
    choice: ApiPanelChoice | None = None
