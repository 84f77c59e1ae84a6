from __future__ import annotations

from django.urls import path

from apps.panels import views

app_name = "panels"

urlpatterns = [
    path("", views.panel_list, name="list"),
    path("new/", views.panel_new, name="new"),
    path("new/models/", views.model_search, name="search"),
    path("estimate/", views.cost_estimate, name="estimate"),
    path("<int:panel_id>/", views.panel_detail, name="detail"),
    path("<int:panel_id>/edit/", views.panel_edit, name="edit"),
    path("<int:panel_id>/edit/models/", views.model_search, name="search_edit"),
    path("<int:panel_id>/duplicate/", views.panel_duplicate_view, name="duplicate"),
    path("<int:panel_id>/delete/", views.panel_delete_view, name="delete"),
]
