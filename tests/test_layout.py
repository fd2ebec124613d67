"""The shape of the code base, checked from its source (no imports run): layers point one way,
no import cycles, Ray only where it belongs, COMPOSER_* read in one module, short modules
and functions, and a contract docstring at the top of every module.

Layers, lowest first (a module may import its own layer and those below, never above):
registry < composer's leaf helpers (errors, progress, settings, priority) < composer.host
< routers < composer's core (api, adapters, executor, models, eval, demo, introspect) <
composer.serving < ray_cluster < composer.cli. Imports inside functions count too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("registry", "composer", "routers", "ray_cluster")
LAYERS = {  # module prefix -> layer; the longest matching prefix wins
    "registry": 0,
    "composer.errors": 1,
    "composer.progress": 1,
    "composer.settings": 1,
    "composer.priority": 1,
    "composer.host": 2,
    "routers": 3,
    "composer": 4,
    "composer.serving": 5,
    "ray_cluster": 6,
    "composer.cli": 7,
    "composer.__main__": 7,
}
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 100


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = modules()


def imports(name: str, path: Path) -> set[str]:
    """Project modules that `name` imports anywhere in its source (function bodies included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


GRAPH = {name: imports(name, path) for name, path in MODULES.items()}


def layer(name: str) -> int:
    prefix = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len)
    return LAYERS[prefix]


def test_layers_point_one_way():
    upward = [
        f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
        for m, targets in GRAPH.items()
        for t in sorted(targets)
        if layer(t) > layer(m)
    ]
    assert not upward, "\n".join(upward)
    assert not [
        (m, t) for m, ts in GRAPH.items() if m.startswith("routers") for t in ts if t.startswith("composer")
    ]
    assert not [
        (m, t)
        for m, ts in GRAPH.items()
        if m.startswith("registry")
        for t in ts
        if not t.startswith("registry")
    ]


def test_no_import_cycles():
    """Tarjan's strongly connected components over the module graph: every one is a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while (w := stack.pop()) != v:
                scc.append(w)
            if scc:
                cycles.append(sorted([v, *scc]))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_no_test_folder_can_shadow_a_package():
    """tests/ is on sys.path (its conftest): a folder there named like a package (tests/composer)
    would be imported instead of the package whenever the project root is not on sys.path
    (the `pytest` script run from elsewhere)."""
    assert not [p for p in PACKAGES if (ROOT / "tests" / p).exists()]


def test_test_modules_have_unique_names():
    """The test folders are not packages: pytest imports each test module by its file name, so
    two of one name in different folders stop the collection ("import file mismatch")."""
    seen: dict[str, list[str]] = {}
    for f in (ROOT / "tests").rglob("test_*.py"):
        seen.setdefault(f.name, []).append(str(f.relative_to(ROOT)))
    assert not {n: fs for n, fs in seen.items() if len(fs) > 1}


def test_ray_is_imported_only_by_ray_cluster_and_the_cli():
    pattern = re.compile(r"^\s*(from ray\b|import ray\b)", re.MULTILINE)
    offenders = [
        n
        for n, p in MODULES.items()
        if pattern.search(p.read_text()) and not n.startswith(("ray_cluster", "composer.cli"))
    ]
    assert not offenders


def environment_reads(tree: ast.AST) -> list[str]:
    """COMPOSER_* names read through os.environ / os.getenv (calls, subscripts, `in` tests)."""

    def named(node) -> str | None:
        ok = (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("COMPOSER_")
        )
        return node.value if ok else None

    def environ(node) -> bool:
        return isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")

    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and node.args
            and (environ(node.func) or (isinstance(node.func, ast.Attribute) and environ(node.func.value)))
        ):
            found.append(named(node.args[0]))
        elif isinstance(node, ast.Subscript) and environ(node.value):
            found.append(named(node.slice))
        elif isinstance(node, ast.Compare) and any(environ(c) for c in node.comparators):
            found.append(named(node.left))
    return [f for f in found if f]


def test_composer_variables_are_read_in_one_module():
    offenders = {
        n: environment_reads(ast.parse(p.read_text())) for n, p in MODULES.items() if n != "composer.settings"
    }
    assert not {n: r for n, r in offenders.items() if r}
    settings = ast.parse(MODULES["composer.settings"].read_text())
    assert "os.environ.get(var)" in ast.unparse(settings)  # the one reader (by field name: env_name)


@pytest.mark.parametrize(
    "path",
    sorted([*ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/*.py")]),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_test_and_bench_modules_are_short_and_documented(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, (
        f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines"
    )
    assert ast.get_docstring(ast.parse(text)), f"{path.relative_to(ROOT)} does not say what it tests"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_short_documented_and_their_functions_short(name):
    path = MODULES[name]
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, (
        f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines"
    )
    tree = ast.parse(text)
    assert ast.get_docstring(tree), f"{path.relative_to(ROOT)} does not open with its contract"
    long = [
        f"{f.name} ({f.end_lineno - f.lineno + 1} lines)"
        for f in ast.walk(tree)
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
        and f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.relative_to(ROOT)}: {', '.join(long)}"
