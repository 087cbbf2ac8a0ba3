"""The library's shape, read from its code: layers that import only downward, no import cycle (imports
inside functions counted), no private name imported across modules, small modules, a short public API."""
import ast
from pathlib import Path

import pytest

import diffgan_lib

PKG = Path(diffgan_lib.__file__).parent
LAYERS = ["core", "data", "sampling", "engine", "eval", "course", "cli"]   # each may import only those before it
MAX_LINES = 350


def _modules():
    """{dotted module name: path} for every module of the package."""
    out = {}
    for f in sorted(PKG.rglob("*.py")):
        parts = f.relative_to(PKG.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


MODULES = _modules()


def _imports(name: str, path: Path):
    """(imported module, [names]) for every import of this package in ``path``, at any depth of the file."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "diffgan_lib" or target.startswith("diffgan_lib."):
                names = [a.name for a in node.names]
                for n in names:          # "from . import x" / "from .pkg import module"
                    if f"{target}.{n}" in MODULES:
                        yield f"{target}.{n}", []
                rest = [n for n in names if f"{target}.{n}" not in MODULES]
                if rest:
                    yield target, rest
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("diffgan_lib"):
                    yield a.name, []


GRAPH = {m: {t for t, _ in _imports(m, p) if t in MODULES and t != m} for m, p in MODULES.items()}


def _layer(module: str):
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_no_import_cycle_counting_imports_inside_functions():
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for t in GRAPH[m]:
            if not (m == "diffgan_lib" or t == "diffgan_lib"):      # the package's own __init__ re-exports
                visit(t)
        stack.pop()

    for m in sorted(GRAPH):
        visit(m)
    assert not cycles, f"import cycles: {cycles[:3]}"


def test_every_sub_package_imports_only_the_layers_below_it():
    upward = [f"{m} -> {t}" for m in GRAPH for t in GRAPH[m]
              if _layer(m) is not None and _layer(t) is not None and _layer(t) > _layer(m)]
    assert not upward, f"imports that run upward ({' < '.join(LAYERS)}): {upward}"
    assert not [m for m in GRAPH if _layer(m) is not None and "diffgan_lib" in GRAPH[m]]   # nothing imports the top


def test_no_private_name_is_imported_across_modules():
    private = [f"{m} imports {t}.{n}" for m, p in MODULES.items() for t, names in _imports(m, p)
               for n in names if n.startswith("_") and t != m]
    assert not private, private


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_are_small(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module]} has {lines} lines (at most {MAX_LINES}): split it by concept"


def test_the_public_api_is_short_and_keeps_the_seeds_names():
    assert 15 <= len(diffgan_lib.__all__) <= 25
    for name in ("DiffusionScheduler", "UNet", "Discriminator", "train", "sample", "load_checkpoint",
                 "generate_and_visualize"):
        assert name in diffgan_lib.__all__ and hasattr(diffgan_lib, name)


def test_the_training_loop_fits_on_one_screen():
    from diffgan_lib.engine import loop
    import inspect
    assert len(inspect.getsource(loop).splitlines()) <= 40


LONG_ALLOWED = {"make_phantom": "the phantom's drawing recipe, nine numbered steps read top to bottom"}


def test_functions_are_short():
    long = []
    for f in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in LONG_ALLOWED:
                if node.end_lineno - node.lineno + 1 > 65:
                    long.append(f"{f.relative_to(PKG)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long
