"""The site's colour theme: light, dark, or the system's. Stored on the person's preference row when signed in
(so it follows them to another browser) and in a cookie (so a page renders in the right theme from its first
byte, signed in or not: no flash of the other theme, no script needed before paint)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from apps.accounts.models import Preference

THEME_COOKIE = "theme"
THEMES = tuple(Preference.Theme.values)
# A year: a choice of look is not something to ask again.
COOKIE_MAX_AGE = 365 * 24 * 3600


def theme_for(request: HttpRequest) -> str:
    """The theme to render: the signed-in person's stored choice, else the cookie's, else the system's."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        stored = Preference.objects.filter(user=user).values_list("theme", flat=True).first()
        if stored in THEMES:
            return str(stored)
    cookie = request.COOKIES.get(THEME_COOKIE, "")
    return cookie if cookie in THEMES else Preference.Theme.SYSTEM


def theme_save(request: HttpRequest, response: HttpResponse, theme: str) -> None:
    """Remember ``theme`` (one of ``THEMES``) for this person and this browser."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        Preference.objects.update_or_create(user=user, defaults={"theme": theme})
    response.set_cookie(
        THEME_COOKIE, theme, max_age=COOKIE_MAX_AGE, samesite="Lax", httponly=True, secure=request.is_secure()
    )
