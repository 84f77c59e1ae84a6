"""Sign-up, log-in, log-out and the shared layout, used the way a person uses them, in headless Chromium."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from tests.browser.conftest import BrowserLog, LiveServer, PageFactory, login, signup

PASSWORD = "a-long-unusual-passphrase"


def _rgb(page: Page, selector: str, prop: str) -> tuple[int, ...]:
    value: str = page.eval_on_selector(selector, f"(el) => getComputedStyle(el).{prop}")
    return tuple(int(part) for part in value[value.index("(") + 1 : value.index(")")].split(",")[:3])


def test_a_visitor_signs_up_lands_in_the_chatroom_and_logs_out(
    page: Page, page_log: BrowserLog, daphne_server: LiveServer
) -> None:
    signup(page, "alice", PASSWORD)
    assert page.url == f"{daphne_server.url}/"
    expect(page.get_by_role("status").filter(has_text="Welcome to Fusion Room, alice.")).to_be_visible()
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Chat")).to_have_attribute("aria-current", "page")
    assert User.objects.get(username="alice").check_password(PASSWORD)

    page.locator("details.usermenu summary").click()
    with page.expect_navigation():
        page.get_by_role("button", name="Log out").click()
    assert page.url == f"{daphne_server.url}/accounts/login/"
    expect(page.get_by_role("navigation", name="Main")).to_have_count(0)
    page_log.assert_clean()


def test_a_taken_username_is_reported_next_to_the_field(
    page: Page, page_log: BrowserLog, daphne_server: LiveServer
) -> None:
    User.objects.create_user("alice", password=PASSWORD)
    page.goto("/accounts/signup/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Create account").click()
    assert page.url == f"{daphne_server.url}/accounts/signup/"
    expect(page.locator("#id_username_error")).to_have_text("A user with that username already exists.")
    expect(page.get_by_label("Username")).to_have_attribute("aria-invalid", "true")
    assert User.objects.count() == 1
    page_log.assert_clean()


def test_a_wrong_password_is_an_alert_and_the_right_one_logs_in(page: Page, page_log: BrowserLog) -> None:
    User.objects.create_user("bob", password=PASSWORD)
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("bob")
    page.get_by_label("Password").fill("not-the-password")
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Please enter a correct username and password.")
    login(page, "bob", PASSWORD)
    # A signed-in user who opens the log-in or sign-up page again is sent to the chatroom.
    for path in ("/accounts/login/", "/accounts/signup/"):
        page.goto(path)
        assert page.url.endswith("/")
    page_log.assert_clean()


def test_the_skip_link_is_the_first_tab_stop_and_moves_focus_to_the_content(page: Page) -> None:
    page.goto("/__test__/markdown/?text=hello")  # the account forms focus their first field instead
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    # It slides into view (a 0.15 s transition): wait for it to arrive rather than read it mid-way.
    page.wait_for_function(
        "() => document.querySelector('.skip-link').getBoundingClientRect().top >= 0", timeout=2000
    )
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"


def test_the_user_menu_works_from_the_keyboard(page: Page, daphne_server: LiveServer) -> None:
    User.objects.create_user("carol", password=PASSWORD)
    login(page, "carol", PASSWORD)
    summary = page.locator("details.usermenu summary")
    summary.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_text("Signed in as carol")).to_be_visible()
    log_out = page.get_by_role("button", name="Log out")
    log_out.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{daphne_server.url}/accounts/login/"


def test_the_copy_button_puts_the_code_on_the_clipboard(new_page: PageFactory) -> None:
    page = new_page(permissions=["clipboard-read", "clipboard-write"])
    page.goto("/__test__/markdown/?text=" + "%60%60%60python%0Aprint(%22hi%22)%0A%60%60%60")
    button = page.get_by_role("button", name="Copy code")
    button.click()
    expect(button).to_have_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == 'print("hi")\n'
    expect(page.locator("#live-status")).to_have_text("Code copied to the clipboard")
    expect(button).to_have_text("Copy", timeout=4000)
    new_page.log.assert_clean()


def test_a_new_api_key_is_copied_with_its_button(new_page: PageFactory) -> None:
    page = new_page(permissions=["clipboard-read", "clipboard-write"])
    signup(page, "keyholder", PASSWORD)
    page.goto("/accounts/keys/")
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key").input_value()
    assert key.startswith("fr-")
    page.get_by_role("button", name="Copy key").click()
    expect(page.locator("#new-key-copy-status")).to_have_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == key
    # The page itself was never posted: a reload is a plain GET, the key is gone and no second one is made.
    page.reload()
    expect(page.locator("#new-key")).to_have_count(0)
    expect(page.locator("table.keys tbody tr")).to_have_count(1)
    new_page.log.assert_clean()


@pytest.mark.parametrize(("scheme", "dark"), [("light", False), ("dark", True)])
def test_the_colours_follow_the_system_setting(new_page: PageFactory, scheme: str, dark: bool) -> None:
    page = new_page(color_scheme=scheme)
    page.goto("/accounts/login/")
    brightness = sum(_rgb(page, "body", "backgroundColor")) / 3
    text = sum(_rgb(page, "body", "color")) / 3
    assert (brightness < 60) is dark
    assert abs(brightness - text) > 120, "text must stand out from the background"


@pytest.mark.parametrize("path", ["/accounts/login/", "/accounts/signup/", "/__test__/markdown/"])
def test_pages_fit_a_phone_screen(new_page: PageFactory, path: str) -> None:
    page = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.goto(path)
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    expect(page.locator(".topbar")).to_be_visible()
