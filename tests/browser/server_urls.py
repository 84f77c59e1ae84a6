"""The app's URLs plus test-only pages (served only by the browser tests' Daphne, see server_settings)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from fusionroom.urls import urlpatterns as app_urlpatterns
from tests.security.payloads import XSS_PAYLOADS


def markdown_page(request: HttpRequest) -> HttpResponse:
    """Markdown through the app's ``|markdown`` filter in the app's layout: ``?text=``, or the XSS corpus."""
    text = request.GET.get("text")
    blocks = [("text", text)] if text is not None else list(XSS_PAYLOADS.items())
    return render(request, "browser_tests/markdown.html", {"blocks": blocks})


def live_markdown_page(request: HttpRequest) -> HttpResponse:
    """The chatroom's live Markdown scripts (static/js/render.js and its libraries) on an empty page of the
    app's layout, for tests that render in the browser and compare with the server."""
    return render(request, "browser_tests/live_markdown.html")


urlpatterns = [
    path("__test__/markdown/", markdown_page, name="test_markdown"),
    path("__test__/live-markdown/", live_markdown_page, name="test_live_markdown"),
    *app_urlpatterns,
]
