"""The layout holds: no import circle among product modules (type-only imports included), and no
import that runs back up the layers docs/architecture.md draws. An AST read of the sources."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("cioaudience", "connections", "cio_standin")

# connections/services/ packages, lowest first: each may import only itself and those before it.
SERVICE_LAYERS = ("outbox", "connection", "erasure", "forwarding", "resync", "ingest", "imports", "visibility")
# Edges call services; services, models and the client never import an edge.
EDGES = (
    "connections.admin",
    "connections.admin_site",
    "connections.firehose",
    "connections.management",
    "connections.tasks",
    "connections.views_health",
    "connections.views_metrics",
    "connections.middleware",
    "cioaudience.urls",
)


def product_modules() -> dict[str, Path]:
    found = {}
    for top in PRODUCT:
        for path in (ROOT / top).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = product_modules()


def owner(name: str) -> str | None:
    """The product module an imported name lives in (a module, or the package of a name)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str, path: Path) -> Iterator[str]:
    """Every product module this one imports, wherever the import stands (TYPE_CHECKING blocks too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*kept, base] if base else kept)
            targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
        else:
            continue
        for target in targets:
            found = owner(target)
            if found and found != name:
                yield found


GRAPH = {name: set(imports_of(name, path)) for name, path in MODULES.items()}


def circles() -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in GRAPH[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return groups


def under(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in prefixes)


def layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[:2] == ["connections", "services"] and len(parts) > 2:
        return SERVICE_LAYERS.index(parts[2])
    return None


def test_no_module_imports_another_that_imports_it_back() -> None:
    assert circles() == []


def test_every_services_module_sits_in_a_known_package() -> None:
    loose = [
        m
        for m, path in MODULES.items()
        if under(m, "connections.services") and m.count(".") == 2 and path.stem != "__init__"
    ]
    assert loose == [], "services are grouped in packages by capability"
    packages = {m.split(".")[2] for m in MODULES if under(m, "connections.services") and m.count(".") >= 2}
    assert packages == set(SERVICE_LAYERS)


def test_services_import_only_their_own_layer_or_the_ones_below() -> None:
    upward = [
        (module, imported)
        for module, targets in GRAPH.items()
        if (mine := layer(module)) is not None
        for imported in targets
        if (theirs := layer(imported)) is not None and theirs > mine
    ]
    assert upward == []


def test_services_models_and_the_client_never_import_an_edge() -> None:
    inner = ("connections.services", "connections.models", "connections.customerio", "connections.crypto")
    found = [
        (module, imported)
        for module, targets in GRAPH.items()
        if under(module, *inner)
        for imported in targets
        if under(imported, *EDGES)
    ]
    assert found == []


def test_the_customerio_client_imports_nothing_of_the_product_above_it() -> None:
    found = [
        (module, imported)
        for module, targets in GRAPH.items()
        if under(module, "connections.customerio")
        for imported in targets
        if not under(imported, "connections.customerio", "connections.scrubbing") and imported != "connections"
    ]
    assert found == []


def test_models_import_only_models_and_the_encryption() -> None:
    found = [
        (module, imported)
        for module, targets in GRAPH.items()
        if under(module, "connections.models")
        for imported in targets
        if not under(imported, "connections.models", "connections.crypto")
    ]
    assert found == []


def test_the_standin_imports_nothing_of_the_product() -> None:
    found = [
        (module, imported)
        for module, targets in GRAPH.items()
        if under(module, "cio_standin")
        for imported in targets
        if not under(imported, "cio_standin")
    ]
    assert found == []


def test_the_checks_see_a_circle_and_an_upward_import(tmp_path: Path) -> None:
    """The detector itself: a made-up pair of modules importing each other is a circle."""
    GRAPH["connections.services.outbox.bulk"].add("connections.services.visibility.metrics")
    GRAPH["connections.services.visibility.metrics"].add("connections.services.outbox.bulk")
    try:
        assert ["connections.services.outbox.bulk", "connections.services.visibility.metrics"] in circles()
        assert layer("connections.services.outbox.bulk") < layer("connections.services.visibility.metrics")
    finally:
        GRAPH["connections.services.outbox.bulk"].discard("connections.services.visibility.metrics")
        GRAPH["connections.services.visibility.metrics"].discard("connections.services.outbox.bulk")
