from __future__ import annotations

from django.urls import path

from apps.comparisons import views

app_name = "comparisons"

urlpatterns = [
    path("", views.win_rates, name="index"),
    path("option/", views.option, name="option"),
    path("turns/<int:turn_id>/", views.turn_block, name="turn"),
    path("<int:comparison_id>/vote/", views.vote, name="vote"),
]
