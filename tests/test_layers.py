"""The package's layers (cropkit/__init__.py): every import points down or sideways inside a layer, no module imports
another that imports it back (directly or around a circle), no module re-exports another's names, and a function
imports cropkit's own modules only to defer a heavy optional dependency, saying so on the line."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cropkit"
LAYERS = ["paths", "core", "tasks", "training", "methods", "experiments", "lessons", "cli"]  # bottom to top
FACE = {"core", "tasks", "training", "methods", "experiments", "lessons"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


def layer(module: str) -> int:
    top = module.split(".")[0]
    return LAYERS.index("cli") if top in ("cli", "__main__", "__init__") else LAYERS.index(top)


def imports(path: Path):
    """(imported module, line, at module level?, the line's text) for every import of a cropkit module."""
    tree = ast.parse(path.read_text())
    lines = path.read_text().splitlines()
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cropkit"):
            base = node.module.removeprefix("cropkit").lstrip(".")
            for alias in node.names:
                target = f"{base}.{alias.name}" if base else alias.name
                if not (PACKAGE.joinpath(*target.split(".")).with_suffix(".py").exists()
                        or PACKAGE.joinpath(*target.split(".")).is_dir()):
                    target = base  # a name from the module, not a module
                yield target, node.lineno, id(node) in top_level, lines[node.lineno - 1]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("cropkit."):
                    name = alias.name.removeprefix("cropkit.")
                    yield name, node.lineno, id(node) in top_level, lines[node.lineno - 1]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import at line {node.lineno}; import from where a name lives")


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "__main__.py"}
EDGES = {m: [(t, line, top, text) for t, line, top, text in imports(p) if t and t != m] for m, p in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    up = [f"line {line}: {target}" for target, line, _, _ in EDGES[module]
          if target.split(".")[0] in LAYERS + ["cli"] and layer(target) > layer(module) and module != "__init__"]
    assert not up, f"cropkit.{module} imports from a higher layer: {up}"


def test_no_import_circles():
    graph = {m: {t for t, *_ in EDGES[m] if t in MODULES} for m in MODULES}
    state, circles = {}, []

    def visit(m, trail):
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                circles.append(trail[trail.index(t):] + [t])
            elif t not in state:
                visit(t, trail + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not circles, "import circles: " + "; ".join(" → ".join(c) for c in circles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_function_level_imports_only_defer_heavy_dependencies(module):
    local = [f"line {line}: {text.strip()}" for target, line, top, text in EDGES[module]
             if not top and "deferred:" not in text and module != "__init__"]
    assert not local, (f"cropkit.{module} imports cropkit modules inside functions: {local}; import at the top, or "
                       f"say on the line why it is deferred ('# deferred: <heavy dependency>')")


@pytest.mark.parametrize("module", sorted(set(MODULES) - {"__init__"}))
def test_no_re_exports_and_no_private_names_across_modules(module):
    """A module imports what it uses and uses what it imports (no ``noqa: F401`` on an import of cropkit), and
    takes no private (``_name``) from another module: a name used elsewhere is public where it lives."""
    re_exports = [text.strip() for _, _, _, text in EDGES[module] if "noqa: F401" in text]
    assert not re_exports, f"cropkit.{module} re-exports names: {re_exports}; callers import where they live"
    tree = ast.parse(MODULES[module].read_text())
    private = [f"{node.module}.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and (node.module or "").startswith("cropkit") for alias in node.names
               if alias.name.startswith("_") and not alias.name.startswith("__")]
    aliases = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and (node.module or "").startswith("cropkit") for alias in node.names}
    private += [f"{node.value.id}.{node.attr}" for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name) and node.value.id in aliases and node.attr.startswith("_")
                and not node.attr.startswith("__")]
    assert not private, f"cropkit.{module} takes private names of other modules: {private}"


def defined(module: str) -> set[str]:
    """The names a module defines at its top level (functions, classes, assignments), not those it imports."""
    names = set()
    for node in ast.parse(MODULES[module].read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


@pytest.mark.parametrize("module", sorted(set(MODULES) - {"__init__"}))
def test_names_are_imported_from_where_they_live(module):
    """``from cropkit.a import name`` takes a name that ``cropkit.a`` defines, not one it imported itself."""
    passed_on = []
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cropkit."):
            source = node.module.removeprefix("cropkit.")
            if source in MODULES and source not in FACE:
                passed_on += [f"{alias.name} from {source}" for alias in node.names
                              if alias.name not in defined(source) | {"__version__"}]
    assert not passed_on, f"cropkit.{module} imports names their module only passes on: {passed_on}"


def test_the_module_map_names_every_module_and_nothing_else():
    """docs/design.md's module map (the one map: README and CONTRIBUTING link to it) against the tree."""
    import re

    text = (PACKAGE.parent / "docs" / "design.md").read_text()
    section = text[text.index("## The layers and the module map"):text.index("## The registry")]
    named = {name for cell in re.findall(r"^\| ([^|]+) \|", section, flags=re.M)
             for name in re.findall(r"`([a-z_]+(?:/[a-z_]+)?)`", cell)}
    modules = {m.replace(".", "/") for m in MODULES if m != "__init__"} - FACE
    method_modules = {f"methods/{t.split('.')[-1]}" for t, *_ in EDGES["methods.registry"]
                      if t.startswith("methods.") and t.split(".")[-1] not in ("method", "options", "context")}
    modules -= method_modules  # one row of the map stands for them: adding a method adds no row
    assert modules - named == set(), f"modules missing from docs/design.md's map: {sorted(modules - named)}"
    assert named - modules == set(), f"docs/design.md's map names modules that do not exist: {sorted(named - modules)}"
