"""Sign-up (log-in and log-out are Django's views, configured in urls.py)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.forms import SignUpForm
from apps.accounts.theme import THEMES, theme_save


def _next_url(request: HttpRequest) -> str:
    """Where to go after signing up: a same-site ``next`` if one was given, else the chatroom."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    # Only a path: a bare word would be taken for a URL name by redirect().
    if candidate.startswith("/") and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return str(settings.LOGIN_REDIRECT_URL)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect(_next_url(request))
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        messages.success(request, f"Welcome to Fusion Room, {user.get_username()}.")
        return redirect(_next_url(request))
    return render(request, "registration/signup.html", {"form": form, "next": request.GET.get("next", "")})


@require_POST
def theme_set(request: HttpRequest) -> HttpResponse:
    """Choose light, dark or the system's theme. A script's request gets 204 (it has already repainted the
    page); a plain form post goes back where it came from."""
    theme = request.POST.get("theme", "")
    if theme not in THEMES:
        return HttpResponseBadRequest("Choose light, dark or system.")
    if request.headers.get("X-Requested-With") == "fetch":
        response: HttpResponse = HttpResponse(status=204)
    else:
        response = redirect(_next_url(request))
    theme_save(request, response, theme)
    return response
