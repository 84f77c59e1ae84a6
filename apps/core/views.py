"""The page anonymous visitors see at the site root."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def landing(request: HttpRequest) -> HttpResponse:
    """What Fusion Room is, with the way in (sign up, log in).

    The chatroom owns "/": its view returns ``landing(request)`` for visitors who are not signed in.
    """
    return render(request, "core/landing.html")
