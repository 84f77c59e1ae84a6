"""``manage.py apikey create|list|revoke``: API keys from the terminal."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.accounts.api_keys import api_key_create, api_key_list_for, api_key_revoke_by_prefix
from apps.accounts.models import ApiKey


class Command(BaseCommand):
    help = "Create, list or revoke API keys for the OpenAI-compatible API."

    def add_arguments(self, parser: ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{create,list,revoke}")
        create = actions.add_parser("create", help="create a key and print it (shown only once)")
        create.add_argument("username")
        create.add_argument("--name", default="command line", help="a label for the key")
        listing = actions.add_parser("list", help="list a user's keys")
        listing.add_argument("username")
        revoke = actions.add_parser("revoke", help="revoke a key by its prefix (or the full key)")
        revoke.add_argument("prefix")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "create":
            _, raw = api_key_create(user=self._user(options["username"]), name=options["name"])
            # Only the key on stdout, so `KEY=$(manage.py apikey create alice)` works.
            self.stdout.write(raw)
            self.stderr.write("Keep it now: only its hash is stored, it cannot be shown again.")
        elif action == "list":
            for key in api_key_list_for(user=self._user(options["username"])):
                state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
                used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
                created = f"{key.created_at:%Y-%m-%d}"
                line = f"fr-{key.prefix}-…  {key.name}  created {created}  last used {used}  {state}"
                self.stdout.write(line)
        else:
            prefix = options["prefix"]
            if prefix.startswith("fr-"):
                prefix = prefix.split("-", 2)[1]
            try:
                key = api_key_revoke_by_prefix(prefix=prefix)
            except ApiKey.DoesNotExist:
                raise CommandError(f"No key with prefix {prefix!r}") from None
            self.stdout.write(f"Revoked fr-{key.prefix}-… ({key.name})")

    @staticmethod
    def _user(username: str) -> Any:
        try:
            return get_user_model().objects.get_by_natural_key(username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user named {username!r}") from None
