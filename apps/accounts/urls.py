from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from apps.accounts import views, views_keys
from apps.accounts.forms import LogInForm

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path(
        "login/",
        auth_views.LoginView.as_view(authentication_form=LogInForm, redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("theme/", views.theme_set, name="theme"),
    path("keys/", views_keys.keys_page, name="api_keys"),
    path("keys/<int:key_id>/revoke/", views_keys.key_revoke, name="api_key_revoke"),
]
