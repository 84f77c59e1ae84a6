"""What the chatroom's layout tests share: the two screen sizes, sending, and panels of 1 to 8 demo seats."""

from __future__ import annotations

import re

from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from apps.panels.models import Panel, PanelMember

PASSWORD = "correct horse battery staple"
RUN_TIMEOUT_MS = 30_000
LAPTOP = {"width": 1280, "height": 720}
PHONE = {"width": 390, "height": 844}
SIZES = {"laptop": LAPTOP, "phone": PHONE}
DEMO_SEATS = ("demo/atlas", "demo/birch", "demo/cedar")


def send(page: Page, prompt: str) -> None:
    box = page.get_by_role("textbox", name="Prompt")
    box.fill(prompt)
    box.press("Enter")


def panel_make(username: str, seats: int, name: str = "") -> Panel:
    """A panel of ``seats`` demo seats (the three demo models in turn, so more than three repeat them)."""
    owner = User.objects.get(username=username)
    panel = Panel.objects.create(
        owner=owner,
        name=name or f"{seats} seats",
        slug=f"seats-{seats}",
        judge_model="demo/judge",
        writer_model="demo/writer",
    )
    PanelMember.objects.bulk_create(
        PanelMember(panel=panel, position=position, model_id=DEMO_SEATS[(position - 1) % len(DEMO_SEATS)])
        for position in range(1, seats + 1)
    )
    return panel


def run(page: Page, prompt: str, panel: Panel | None = None) -> None:
    """Send ``prompt`` (on ``panel`` if given) from a new conversation and wait for the turn to finish."""
    if panel is not None:
        page.reload()  # the panel was made after the page was rendered
        page.get_by_label("Panel").select_option(str(panel.pk))
    send(page, prompt)
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    expect(page.locator(".turn").last).to_have_attribute("data-turn-status", "done", timeout=RUN_TIMEOUT_MS)
