"""The architecture the folder layout promises: imports run one way between layers, functions stay short."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hf_specdecpp"

# A module may import its own layer and lower ones only (the top-level __init__ re-exports lazily).
LAYERS = {
    "utils": 0,
    "core": 1,
    "head": 2, "assets": 2,
    "methods": 3, "testing": 3,
    "integration": 4,
    "training": 5, "bench": 5,
    "cli": 6,
}
# Within a layer, these may not import each other.
SEPARATE = {("training", "bench"), ("bench", "training"), ("head", "assets"), ("assets", "head")}
MAX_FUNCTION_LINES = 60
# What training, bench and cli may use of the layers below them: package-level names and the documented modules.
PUBLIC_MODULES = {
    "hf_specdecpp", "hf_specdecpp.head", "hf_specdecpp.head.shipped", "hf_specdecpp.methods",
    "hf_specdecpp.methods.specdecpp.calibration", "hf_specdecpp.assets", "hf_specdecpp.assets.prompts",
    "hf_specdecpp.core.costs", "hf_specdecpp.core.device", "hf_specdecpp.core.pair", "hf_specdecpp.core.validation",
    "hf_specdecpp.core.cpu_linear", "hf_specdecpp.core.compat", "hf_specdecpp.core.cost_aware", "hf_specdecpp.testing",
    "hf_specdecpp.integration.hub_method",
}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts == ("__init__.py",):
            continue
        yield path, rel


def _imported_packages(path: Path, rel: Path) -> set[str]:
    """The top-level subpackages of hf_specdecpp that `path` imports (absolute or relative)."""
    return {name.split(".")[1] for name in _imported_modules(path, rel) if name.count(".")}


def _imported_modules(path: Path, rel: Path) -> set[str]:
    """The hf_specdecpp modules that `path` imports from (absolute or relative)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names = [_from_module(node, rel)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        out.update(name for name in names if name == "hf_specdecpp" or name.startswith("hf_specdecpp."))
    return out


def _from_module(node: ast.ImportFrom, rel: Path) -> str:
    """The absolute name of the module a `from ... import` statement in the file `rel` imports from."""
    if not node.level:
        return node.module or ""
    package = ["hf_specdecpp", *rel.with_suffix("").parts][:-1]  # a module's package, or the package __init__ is
    base = package[:len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def test_every_subpackage_has_a_layer():
    packages = {rel.parts[0] if len(rel.parts) > 1 else rel.stem for _, rel in _modules()}
    assert packages <= set(LAYERS), sorted(packages - set(LAYERS))


@pytest.mark.parametrize("path,rel", list(_modules()), ids=lambda v: str(v) if isinstance(v, Path) else None)
def test_imports_run_one_way(path, rel):
    own = rel.parts[0] if len(rel.parts) > 1 else rel.stem
    for other in _imported_packages(path, rel) - {own}:
        assert other in LAYERS, f"{rel} imports unknown hf_specdecpp.{other}"
        assert LAYERS[other] < LAYERS[own] or (LAYERS[other] == LAYERS[own] and (own, other) not in SEPARATE), (
            f"{rel} ({own}, layer {LAYERS[own]}) imports hf_specdecpp.{other} (layer {LAYERS[other]})")
        assert (own, other) not in SEPARATE, f"{rel}: {own} must not import {other}"


@pytest.mark.parametrize("path,rel", [m for m in _modules() if m[1].parts[0] in ("training", "bench", "cli")],
                         ids=lambda v: str(v) if isinstance(v, Path) else None)
def test_training_bench_and_cli_use_the_public_modules(path, rel):
    own = f"hf_specdecpp.{rel.parts[0]}"
    for module in _imported_modules(path, rel):
        if module == own or module.startswith(own + ".") or module.startswith("hf_specdecpp.utils"):
            continue
        if rel.parts[0] == "cli" and module.startswith(("hf_specdecpp.training", "hf_specdecpp.bench")):
            continue  # the CLI is the front of training and bench
        assert module in PUBLIC_MODULES, f"{rel} imports {module}, not one of the public modules"


def test_functions_are_short():
    long = []
    for path, rel in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{rel}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "functions over 60 lines: " + ", ".join(long)


def test_the_checker_sees_a_wrong_way_import(tmp_path):
    """The rule can fail: a core module importing methods is reported."""
    bad = tmp_path / "core" / "bad.py"
    bad.parent.mkdir()
    bad.write_text("from ..methods import registry\nimport hf_specdecpp.bench.runner\n")
    assert _imported_packages(bad, Path("core/bad.py")) == {"methods", "bench"}


def _module_name(rel: Path) -> str:
    parts = ["hf_specdecpp", *rel.with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph(modules) -> dict[str, set[str]]:
    """module -> the package's modules it imports, anywhere in its file (inside functions too); `from .x import y`
    counts as an import of `x.y` when that is a module, else of `x`."""
    names = {_module_name(rel) for _, rel in modules}
    graph = {}
    for path, rel in modules:
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = _from_module(node, rel)
                targets = [f"{base}.{alias.name}" for alias in node.names]
                edges.update(t if t in names else base for t in targets)
            elif isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
        graph[_module_name(rel)] = {e for e in edges if e in names and e != _module_name(rel)}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_no_import_cycles():
    """No two modules import each other, directly or through others, not even from inside a function."""
    cycles = _cycles(_import_graph([(path, path.relative_to(PACKAGE)) for path in sorted(PACKAGE.rglob("*.py"))]))
    assert not cycles, f"modules that import each other: {cycles}"


def test_the_cycle_checker_sees_a_cycle_inside_a_function(tmp_path):
    """The rule can fail: two modules importing each other, one of them inside a function, are reported."""
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "a.py").write_text("from .b import thing\n")
    (tmp_path / "bench" / "b.py").write_text("def f():\n    from . import a\n    from .a import x\n")
    modules = [(tmp_path / "bench" / n, Path("bench") / n) for n in ("a.py", "b.py")]
    assert _cycles(_import_graph(modules)) == [["hf_specdecpp.bench.a", "hf_specdecpp.bench.b"]]
