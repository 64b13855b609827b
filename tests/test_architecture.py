"""The house: layers import only downward (no cycle, counting imports inside functions), the maths packages
import light, submodules load lazily from `import jaxlab`."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "jaxlab"

# Layer of each top-level part of jaxlab, bottom to top (README "Architecture"). An import goes to a lower
# layer, or stays inside its own part (a package's modules may import each other).
LAYERS = {
    "errors": 0, "registry": 1, "config": 2, "parallel": 3,
    "data": 4, "models": 4, "augment": 4,
    "train": 5,
    "kprior": 6, "dreg": 6, "classwise": 6,
    "experiments": 7,
    "main": 8,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def import_graph() -> dict[str, set[str]]:
    """module -> the jaxlab modules it imports, from every import statement (module level and inside functions)."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    edges.add(f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base)
        graph[name] = {e for e in edges if e.split(".")[0] == "jaxlab" and e != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "d": {"a", "c"}}) is None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40 and {"jaxlab.train.checkpoint", "jaxlab.train.step"} <= graph["jaxlab.train.loop"]
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_every_import_goes_down_the_layers():
    upward = []
    for module, imports in import_graph().items():
        if module == "jaxlab":
            continue
        for target in imports:
            if target == "jaxlab" or _part(target) == _part(module):
                continue
            if LAYERS[_part(target)] >= LAYERS[_part(module)]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that do not go down a layer:\n" + "\n".join(sorted(upward))


def test_every_part_of_the_package_has_a_layer():
    assert {_part(m) for m in import_graph() if m != "jaxlab"} == set(LAYERS)


def _imports_jaxlab(node) -> bool:
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] == "jaxlab" for alias in node.names)
    return isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").split(".")[0] == "jaxlab")


def test_no_jaxlab_import_inside_a_function():
    """jaxlab's own imports sit at module level: none placed in a function to dodge a cycle. (Optional or slow
    third-party packages, e.g. tensorflow_datasets or scikit-learn, may load where they are used.)"""
    inside = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inside += [f"{path.relative_to(PACKAGE.parent)}:{n.lineno}" for n in ast.walk(node)
                           if _imports_jaxlab(n)]
    assert not inside, f"jaxlab imports inside functions: {inside}"


def _modules_after(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("package", ["kprior", "augment", "dreg", "classwise"])
def test_maths_packages_import_light(package):
    loaded = _modules_after(f"import jaxlab.{package}")
    assert f"jaxlab.{package}" in loaded
    heavy = sorted(m for m in loaded if m.split(".")[0] in ("orbax", "tqdm", "matplotlib")
                   or m.startswith(("jaxlab.train.loop", "jaxlab.experiments")))
    assert not heavy, f"import jaxlab.{package} loads {heavy}"


def test_import_jaxlab_loads_submodules_lazily():
    loaded = _modules_after("import jaxlab\nassert callable(jaxlab.classwise.analyze)")
    assert "jaxlab.classwise.analysis" in loaded
    assert not any(m.startswith(("jaxlab.kprior", "jaxlab.dreg", "jaxlab.train.loop")) for m in loaded)
