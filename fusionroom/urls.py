from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("apps.accounts.urls")),
    path("panels/", include("apps.panels.urls")),
    path("api/v1/", include("apps.api.urls")),
    path("comparisons/", include("apps.comparisons.urls")),
    path("evaluations/", include("apps.evaluation.urls")),
    path("", include("apps.chat.urls")),
]
