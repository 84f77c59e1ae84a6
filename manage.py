#!/usr/bin/env python
"""Django's command-line utility for Fusion Room."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fusionroom.settings")
    # In a shell where nothing is configured, manage.py is the developer's tool: the README's commands work as
    # written, with the development secret key. A deployment sets SECRET_KEY, and then DEBUG stays off unless
    # it says otherwise. The server (fusionroom.asgi under Daphne) has no such default: without SECRET_KEY and
    # DEBUG it refuses to start.
    if not os.environ.get("SECRET_KEY"):
        os.environ.setdefault("DEBUG", "1")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
