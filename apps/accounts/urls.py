from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from apps.accounts import views_keys

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("keys/", views_keys.keys_page, name="api_keys"),
    path("keys/<int:key_id>/revoke/", views_keys.key_revoke, name="api_key_revoke"),
]
