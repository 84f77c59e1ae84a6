"""Sign-up and log-in forms: Django's own, with labels that read as plain words (no trailing colon)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.forms import AuthenticationForm, UserCreationForm

_USERNAME_ATTRS = {"autocapitalize": "none", "spellcheck": "false"}


class SignUpForm(UserCreationForm):
    """Username and the password twice; Django's password validators apply."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update(_USERNAME_ATTRS)


class LogInForm(AuthenticationForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update(_USERNAME_ATTRS)
