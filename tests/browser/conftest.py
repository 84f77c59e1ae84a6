"""Browser tests: the full ASGI app (HTTP and WebSockets) under Daphne, driven by headless Chromium.

Fixtures
- ``daphne_server``: a :class:`LiveServer` (``url``, ``ws_url``) for one test. Daphne runs in a subprocess for
  the whole session (``tests/live_server.py``), against the test database; tests are transactional (both
  processes must see committed rows) and each starts with the preset panels in place (``tests/conftest.py``).
- ``browser``: one headless Chromium for the session (``/usr/bin/chromium``).
- ``page``: a fresh context and page whose relative URLs resolve against the live server; ``page_log`` is
  what that page did (console errors, uncaught errors, failed requests, every requested URL, dialogs).
- ``new_page``: more isolated pages (a second user), each with its own :class:`BrowserLog` (``new_page.log``).
- Helpers: ``signup(page, username, password)`` and ``login(page, username, password)``.

The server runs with ``tests.browser.server_settings``: the app's settings plus test-only pages, such as
``/__test__/markdown/?text=...`` (Markdown through ``|markdown`` in the base layout; without ``text``, the XSS
corpus of tests/security/payloads.py).

Every test in this folder is marked ``browser``. Without ``/usr/bin/chromium`` they are skipped, except in CI
(``CI=true``), where a missing browser fails them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    Request,
    Response,
    WebError,
    sync_playwright,
)

from tests.live_server import LiveServer, live_server_session, live_server_start

HERE = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
# Seconds per streamed word of the demo models: small enough to keep tests fast, large enough that a stream is
# a stream (several frames, not one burst).
LIVE_SERVER_DEMO_MODEL_DELAY = 0.002
# Playwright's default of 30 s turns a broken page into a long wait; nothing here should need more than this.
PAGE_TIMEOUT_MS = 10_000


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)
    # While the session's browser is open, Playwright's sync API keeps an event loop running in the main
    # thread, where no asyncio test can run its own: so browser tests run last (after pytest-django's order).
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


# --- The live server ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _daphne_process(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server_start(
        settings_module="tests.browser.server_settings",
        ready_path="/accounts/login/",
        log_dir=tmp_path_factory.mktemp("daphne"),
        env={"DEMO_MODEL_DELAY": str(LIVE_SERVER_DEMO_MODEL_DELAY)},
    ) as server:
        yield server


@pytest.fixture
def daphne_server(
    request: pytest.FixtureRequest, _daphne_process: LiveServer, transactional_db: None
) -> Iterator[LiveServer]:
    """The running app for this test; rows the test writes are committed, so the server sees them."""
    with live_server_session(request, _daphne_process) as server:
        yield server


# --- The browser -------------------------------------------------------------------------------------------


@dataclass
class BrowserLog:
    """Everything a browser context did that a test may want to assert on."""

    base_url: str
    console_errors: list[str] = field(default_factory=list)
    console_messages: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    bad_responses: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def attach(self, context: BrowserContext) -> None:
        context.on("console", self._on_console)
        context.on("weberror", self._on_web_error)
        context.on("request", self._on_request)
        context.on("requestfailed", self._on_request_failed)
        context.on("response", self._on_response)
        context.on("dialog", self._on_dialog)

    def external_requests(self) -> list[str]:
        """Requested URLs that left the live server (data: and blob: URLs stay in the page)."""
        origin = urlsplit(self.base_url)
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme not in {"data", "blob", "about"}
            and (urlsplit(url).hostname, urlsplit(url).port) != (origin.hostname, origin.port)
        ]

    def assert_clean(self) -> None:
        """No console error, uncaught exception, failed request, HTTP error, dialog or request elsewhere."""
        problems = {
            "console errors": self.console_errors,
            "uncaught errors": self.page_errors,
            "failed requests": self.failed_requests,
            "HTTP errors": self.bad_responses,
            "dialogs": self.dialogs,
            "external requests": self.external_requests(),
        }
        found = {name: items for name, items in problems.items() if items}
        assert not found, f"the browser reported problems: {found}"

    def _on_console(self, message: ConsoleMessage) -> None:
        self.console_messages.append(f"{message.type}: {message.text}")
        if message.type == "error":
            self.console_errors.append(message.text)

    def _on_web_error(self, error: WebError) -> None:
        self.page_errors.append(str(error.error))

    def _on_request(self, request: Request) -> None:
        self.requests.append(request.url)

    def _on_request_failed(self, request: Request) -> None:
        # Requests still in flight when the page navigates away, or that the page cancels, end as aborted.
        if request.failure != "net::ERR_ABORTED":
            self.failed_requests.append(f"{request.method} {request.url}: {request.failure}")

    def _on_response(self, response: Response) -> None:
        if response.status >= 400:
            self.bad_responses.append(f"{response.status} {response.request.method} {response.url}")

    def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{reason}; CI must run the browser tests")
        pytest.skip(reason)
    # Playwright's loop runs in this thread from here on, so Django's async-safety check would refuse the ORM
    # calls of sync test code; the loop is Playwright's, not ours, so the check is off while it runs.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class PageFactory:
    """Opens isolated pages (own cookies, own log) on the live server; closes them after the test."""

    def __init__(self, browser: Browser, server: LiveServer) -> None:
        self._browser = browser
        self._server = server
        self._contexts: list[BrowserContext] = []
        self.logs: list[BrowserLog] = []

    def __call__(self, **context_options: Any) -> Page:
        """A page in a new context; ``context_options`` go to ``Browser.new_context`` (e.g. bypass_csp)."""
        options = {
            "base_url": self._server.url,
            "viewport": {"width": 1280, "height": 800},
            **context_options,
        }
        context = self._browser.new_context(**options)
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        log = BrowserLog(base_url=self._server.url)
        log.attach(context)
        self._contexts.append(context)
        self.logs.append(log)
        return context.new_page()

    @property
    def log(self) -> BrowserLog:
        """The log of the page opened last."""
        return self.logs[-1]

    def close(self) -> None:
        for context in self._contexts:
            context.close()


@pytest.fixture
def new_page(browser: Browser, daphne_server: LiveServer) -> Iterator[PageFactory]:
    factory = PageFactory(browser, daphne_server)
    yield factory
    factory.close()


@pytest.fixture
def page(new_page: PageFactory) -> Page:
    return new_page()


@pytest.fixture
def page_log(page: Page, new_page: PageFactory) -> BrowserLog:
    return new_page.logs[0]


# --- Helpers ----------------------------------------------------------------------------------------------


def signup(page: Page, username: str, password: str) -> None:
    """Create an account through the sign-up form; the page ends signed in, on the chatroom."""
    page.goto("/accounts/signup/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password confirmation").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Create account").click()
    _assert_signed_in(page, username)


def login(page: Page, username: str, password: str) -> None:
    """Log in through the log-in form; the page ends signed in."""
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    _assert_signed_in(page, username)


def _assert_signed_in(page: Page, username: str) -> None:
    who = page.locator("[data-testid=current-user]")
    if who.count() == 0 or (who.text_content() or "").strip() != username:
        errors = page.locator(".errorlist").all_inner_texts()
        raise AssertionError(f"not signed in as {username!r} at {page.url}; form errors: {errors}")
