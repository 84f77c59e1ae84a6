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


urlpatterns = [path("__test__/markdown/", markdown_page, name="test_markdown"), *app_urlpatterns]
