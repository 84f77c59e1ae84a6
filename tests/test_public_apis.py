"""The app uses only the public, documented APIs of its network and realtime dependencies.

Private members (a leading underscore, or undocumented internals such as Channels' session wrapper) change
in any upgrade without notice. These checks read apps/: the names once used to reach inside httpx, httpcore
and Channels, any import of a dependency's private module or name, and any subclass of a dependency's class
that overrides one of its private members (which counts as using it) or replaces Channels' consumer loop.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import apps

APPS = Path(apps.__file__).resolve().parent
DEPENDENCIES = ("channels", "daphne", "httpx", "httpcore", "asgiref")


def _sources() -> list[Path]:
    return sorted(path for path in APPS.rglob("*.py") if "migrations" not in path.parts)


def _uses(pattern: str) -> list[str]:
    found = []
    for path in _sources():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(pattern, line):
                found.append(f"{path.relative_to(APPS.parent)}:{number}: {line.strip()}")
    return found


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param(r"\._pool\b", id="httpx transport._pool"),
        pytest.param(r"\b_network_backend\b", id="httpcore pool._network_backend"),
        pytest.param(r"\breal_send\b", id="InstanceSessionWrapper.real_send"),
        pytest.param(r"\bInstanceSessionWrapper\b", id="channels.sessions.InstanceSessionWrapper"),
        pytest.param(r"\bawait_many_dispatch\b", id="channels.utils.await_many_dispatch"),
        pytest.param(r"\b_clean_expired\b", id="InMemoryChannelLayer._clean_expired"),
        pytest.param(r"\b_remove_from_groups\b", id="InMemoryChannelLayer._remove_from_groups"),
        pytest.param(r"\b(?:layer|channel_layer)\.(?:channels|groups)\b", id="an in-memory layer's channels"),
    ],
)
def test_no_known_private_member_of_a_dependency_is_used(pattern: str) -> None:
    assert _uses(pattern) == []


def test_the_scan_reads_the_apps_sources() -> None:
    assert _uses(r"class ConversationConsumer\(AsyncWebsocketConsumer\)"), "the scan found nothing"


def test_nothing_is_imported_from_a_private_module_or_name_of_a_dependency() -> None:
    found = []
    for path in _sources():
        tree = ast.parse(path.read_text())
        typing_only = {
            id(node)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for statement in block.body
            for node in ast.walk(statement)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue  # names of type stubs, never loaded at run time
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
                names = []
            else:
                continue
            for module in modules:
                if module.split(".")[0] not in DEPENDENCIES:
                    continue
                private = [part for part in module.split(".") if part.startswith("_")]
                private += [name for name in names if name.startswith("_")]
                if private:
                    found.append(f"{path.relative_to(APPS.parent)}:{node.lineno}: {module} {private}")
    assert found == []


def _app_classes() -> list[type]:
    classes = []
    for module_info in pkgutil.walk_packages(apps.__path__, prefix="apps."):
        if ".migrations" in module_info.name:
            continue
        module = importlib.import_module(module_info.name)
        classes += [
            value
            for value in vars(module).values()
            if inspect.isclass(value) and value.__module__ == module.__name__
        ]
    return classes


def _from_dependency(cls: type) -> bool:
    return cls.__module__.split(".")[0] in DEPENDENCIES


def test_no_subclass_overrides_a_private_member_of_a_dependency() -> None:
    found = []
    for cls in _app_classes():
        for name in vars(cls):
            if not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
                continue
            for base in cls.__mro__[1:]:
                if _from_dependency(base) and name in vars(base):
                    found.append(f"{cls.__module__}.{cls.__qualname__}.{name} overrides {base.__qualname__}")
    assert found == []


def test_channels_consumers_keep_channels_own_message_loop() -> None:
    """``__call__`` runs Channels' receive loop over its internals: ours would have to copy them. ``dispatch``
    is a public method a consumer may extend (the chatroom's relays frames itself, then defers to it)."""
    from channels.consumer import AsyncConsumer

    consumers = [cls for cls in _app_classes() if issubclass(cls, AsyncConsumer)]
    assert consumers, "the chatroom consumer should be among the classes read"
    replaced = [f"{cls.__module__}.{cls.__qualname__}" for cls in consumers if "__call__" in vars(cls)]
    assert replaced == []
