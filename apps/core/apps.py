from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class CoreConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "apps.core"
    label = "core"

    def ready(self) -> None:
        from apps.core.speed import MEASURES

        unknown = sorted(set(getattr(settings, "SPEED_MEASURES_OFF", ())) - set(MEASURES))
        if unknown:
            raise ImproperlyConfigured(
                f"SPEED_MEASURES_OFF names unknown measures {', '.join(unknown)}; "
                f"known: {', '.join(MEASURES)}"
            )
