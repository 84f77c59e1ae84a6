"""Revoking an API key asks first, in the browser: a "no" keeps the key and posts nothing."""

from __future__ import annotations

from django.contrib.auth.models import User
from playwright.sync_api import expect

from tests.browser.chat_layout_helpers import PASSWORD
from tests.browser.conftest import LiveServer, PageFactory, signup

QUESTION = (
    "confirm: Revoke the key “deploy script”? "
    "Programs using it stop working at once, and this cannot be undone."
)


def test_revoking_a_key_asks_first_and_a_no_keeps_it(
    new_page: PageFactory, daphne_server: LiveServer
) -> None:
    page = new_page()
    signup(page, "dee", PASSWORD)
    page.goto("/accounts/keys/")
    page.get_by_label("Name").fill("deploy script")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#new-key")).to_be_visible()
    key = User.objects.get(username="dee").api_keys.get()

    # The page log answers every dialog "no" (tests/browser/conftest.py, BrowserLog._on_dialog).
    page.get_by_role("button", name="Revoke deploy script").click()
    for _ in range(50):
        if new_page.log.dialogs:
            break
        page.wait_for_timeout(50)
    assert new_page.log.dialogs == [QUESTION]
    page.wait_for_timeout(300)
    assert not any("/revoke/" in url for url in new_page.log.requests)
    key.refresh_from_db()
    assert key.revoked_at is None
    expect(page.get_by_role("button", name="Revoke deploy script")).to_be_visible()
