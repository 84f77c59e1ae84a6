"""HTML form input of the chatroom pages (the WebSocket's frames are pydantic models in ``frames.py``)."""

from __future__ import annotations

from django import forms

from apps.fusion.schemas import MAX_PROMPT_CHARS


class SendForm(forms.Form):
    # The length limit is checked by ``prompt_clean`` so the page and the socket say the same thing; this
    # bound only keeps absurd posts from being cleaned at all, and says the same limit.
    prompt = forms.CharField(
        strip=True,
        required=False,
        max_length=MAX_PROMPT_CHARS * 2,
        error_messages={
            "max_length": f"That prompt is far too long; the limit is {MAX_PROMPT_CHARS:,} characters. "
            "Shorten it and send again."
        },
    )
    panel = forms.IntegerField(min_value=1, error_messages={"required": "Choose a panel."})


class RenameForm(forms.Form):
    title = forms.CharField(
        strip=True, max_length=200, error_messages={"required": "A title cannot be empty."}
    )
