"""Read-side queries for panels: what a user may see and run."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import F, Q, QuerySet

from apps.panels.models import Panel


def panel_list_for(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Panel]:
    """Presets first (in their defined order), then the user's own saved panels by name."""
    visible = Q(owner__isnull=True)
    if user.is_authenticated:
        visible |= Q(owner=user)
    return (
        Panel.objects.filter(visible)
        .prefetch_related("members")
        .order_by(F("owner_id").asc(nulls_first=True), F("preset_order").asc(nulls_last=True), "name")
    )


def panel_get_for(*, user: AbstractBaseUser | AnonymousUser, panel_id: int) -> Panel:
    """A preset or one of the user's panels; ``Panel.DoesNotExist`` for anything else (someone else's)."""
    return panel_list_for(user=user).get(pk=panel_id)


def panel_get_owned(*, user: AbstractBaseUser | AnonymousUser, panel_id: int) -> Panel:
    """One of the user's own panels (to edit or delete); ``Panel.DoesNotExist`` for presets and others'."""
    if not user.is_authenticated:
        raise Panel.DoesNotExist("Anonymous users own no panels")
    return Panel.objects.prefetch_related("members").get(pk=panel_id, owner_id=user.pk)
