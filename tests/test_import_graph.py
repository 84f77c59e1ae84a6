"""The layering of docs/architecture.md, checked on the source: imports go downwards only.

Every import in apps/ counts for the layering, wherever it is written (at the top of a module, inside a
function, under ``TYPE_CHECKING``): an import hidden in a function is still a dependency, only a later one.
Migrations are left out (they are history, frozen). Adding an edge to ``ALLOWED`` is a change of the
architecture: make it in docs/architecture.md too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "apps"

# Higher imports lower, never the other way: the browser-facing apps, then the engine and its web tools,
# then the model clients.
LAYER = {
    "chat": 3,
    "comparisons": 3,
    "api": 3,
    "panels": 3,
    "accounts": 3,
    "core": 3,
    "evaluation": 3,
    "fusion": 2,
    "webtools": 2,
    "providers": 1,
}

# Every app-to-app import there may be, and nothing else.
ALLOWED: dict[str, set[str]] = {
    "api": {"accounts", "chat", "panels", "fusion", "webtools", "providers"},
    # chat starts a turn's single-model baseline (comparisons.services.comparison_start).
    "chat": {"comparisons", "core", "panels", "fusion", "webtools", "providers"},
    # Blind comparisons: the baseline is asked as a panel seat is (fusion's prompts and calls, the providers'
    # gateway); it never imports chat (its rows point at chat's turns by name only), so chat may call it.
    "comparisons": {"core", "panels", "fusion", "providers"},
    # The evaluation bench answers with panels and single models through the engine and the gateway; its share
    # links reuse the chatroom's token helpers (chat.share_tokens only).
    "evaluation": {"chat", "panels", "fusion", "webtools", "providers"},
    # The builder says which web tools each seat gets: the web tools' own rule.
    "panels": {"fusion", "webtools", "providers"},
    "accounts": set(),
    # Home-level things every app may use: so it uses none of them.
    "core": set(),
    # webtools is the engine's Toolbox: it speaks the engine's types.
    "webtools": {"fusion", "providers"},
    "fusion": {"providers"},
    "providers": set(),
}

# Plain async Python, configuration passed in: no Django (nor Channels, nor Daphne) but in these modules.
NO_DJANGO = ("apps.fusion", "apps.providers", "apps.webtools")
DJANGO_ALLOWED = {
    "apps.providers.catalog",  # CatalogConfig.from_settings
    "apps.providers.registry",  # GatewayConfig.from_settings
    "apps.webtools.toolbox",  # toolbox_from_settings
}
DJANGO_PACKAGES = {"django", "channels", "daphne"}

# Cycles between modules (runtime imports: a ``TYPE_CHECKING`` import back is what that block is for) that are
# known and being taken apart; one that disappears must leave this list.
KNOWN_CYCLES: list[set[str]] = []


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. apps.chat.views
    target: str  # what it imports: a module, or the package a name is taken from
    where: str  # path:line
    typing_only: bool = False  # under ``if TYPE_CHECKING:``

    @property
    def source_app(self) -> str:
        return self.module.split(".")[1]

    @property
    def target_app(self) -> str | None:
        parts = self.target.split(".")
        return parts[1] if parts[0] == "apps" and len(parts) > 1 else None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for path in sorted(APPS.rglob("*.py"))
        if "migrations" not in path.relative_to(APPS).parts
    }


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(
    node: ast.AST, typing_only: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement under ``node``, at any depth, and whether it sits in a TYPE_CHECKING block."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, typing_only
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for statement in child.body:
                yield from _import_nodes(ast.Module(body=[statement], type_ignores=[]), True)
            for statement in child.orelse:
                yield from _import_nodes(ast.Module(body=[statement], type_ignores=[]), typing_only)
        else:
            yield from _import_nodes(child, typing_only)


def _imports(module: str, path: Path, known: set[str]) -> Iterator[Import]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node, typing_only in _import_nodes(tree):
        where = f"{shown}:{node.lineno}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, where, typing_only)
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            source = ".".join([*base, node.module] if node.module else base)
        else:
            source = node.module or ""
        for alias in node.names:
            # "from apps.chat import services" imports a module; "from apps.chat.x import name" a name.
            named = f"{source}.{alias.name}"
            yield Import(module, named if named in known else source, where, typing_only)


def _all_imports() -> list[Import]:
    modules = _modules()
    known = set(modules)
    return [found for module, path in modules.items() for found in _imports(module, path, known)]


def _cycles(imports: list[Import], modules: set[str]) -> list[set[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm, iteratively)."""
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for found in imports:
        if found.target in modules and found.target != found.module and not found.typing_only:
            graph[found.module].add(found.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            step = next(successors, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(graph[step]))))
                elif step in on_stack:
                    low[node] = min(low[node], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(group)
    return groups


def test_the_allowed_edges_themselves_go_downwards_or_stay_in_their_layer() -> None:
    apps = {path.name for path in APPS.iterdir() if (path / "__init__.py").exists()}
    assert set(ALLOWED) == set(LAYER) == apps
    upward = [(source, target) for source, targets in ALLOWED.items() for target in targets]
    assert [(s, t) for s, t in upward if LAYER[t] > LAYER[s]] == []


def test_no_app_imports_another_it_is_not_allowed_to() -> None:
    wrong = sorted(
        {
            f"{found.where}: {found.module} imports {found.target} ({found.source_app} -> {found.target_app})"
            for found in _all_imports()
            if found.target_app not in (None, found.source_app)
            and found.target_app not in ALLOWED.get(found.source_app, set())
        }
    )

    assert wrong == [], "imports against the layering of docs/architecture.md:\n" + "\n".join(wrong)


def test_the_engine_the_model_clients_and_the_web_tools_do_not_import_django() -> None:
    wrong = sorted(
        {
            f"{found.where}: {found.module} imports {found.target}"
            for found in _all_imports()
            if found.module.startswith(NO_DJANGO)
            and found.module not in DJANGO_ALLOWED
            and found.target.split(".")[0] in DJANGO_PACKAGES
        }
    )

    assert wrong == []


def test_no_modules_import_each_other_in_a_cycle() -> None:
    imports = _all_imports()

    cycles = _cycles(imports, set(_modules()))

    assert [cycle for cycle in cycles if cycle not in KNOWN_CYCLES] == []
    assert [cycle for cycle in KNOWN_CYCLES if cycle not in cycles] == [], "a known cycle is gone: drop it"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from apps.fusion.prompts import x\n", "apps.fusion.prompts"),
        ("def f():\n    from apps.fusion import schemas\n", "apps.fusion.schemas"),
        ("if TYPE_CHECKING:\n    import apps.fusion.engine\n", "apps.fusion.engine"),
        ("from ...fusion.prompts import x\n", "apps.fusion.prompts"),
    ],
)
def test_the_walker_sees_top_level_function_level_typing_and_relative_imports(
    tmp_path: Path, source: str, expected: str
) -> None:
    path = tmp_path / "module.py"
    path.write_text(source, encoding="utf-8")
    known = {"apps.fusion.prompts", "apps.fusion.schemas", "apps.fusion.engine"}

    found = {item.target for item in _imports("apps.providers.sub.module", path, known)}

    assert expected in found


def test_the_cycle_finder_finds_a_cycle_through_three_modules_and_nothing_else() -> None:
    edges = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "d")]
    imports = [Import(source, target, "") for source, target in edges]

    assert _cycles(imports, {"a", "b", "c", "d", "e"}) == [{"a", "b", "c"}]


def test_an_import_back_under_type_checking_is_no_cycle_but_counts_for_the_layering(tmp_path: Path) -> None:
    path = tmp_path / "module.py"
    path.write_text(
        "if TYPE_CHECKING:\n    from apps.b import x\nelse:\n    import apps.c\n", encoding="utf-8"
    )

    found = {(item.target, item.typing_only) for item in _imports("apps.a", path, set())}

    assert found == {("apps.b", True), ("apps.c", False)}
