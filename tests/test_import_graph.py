"""The package's import graph points one way: no cycles, and the stated doors hold.

Every ``import``/``from ... import`` of a ``zorro`` module anywhere in a file counts
(imports inside functions and ``TYPE_CHECKING`` blocks too), so a lazy import cannot hide
a dependency the wrong way round.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# (modules, modules they must never import): prefixes, each "zorro.x" also covering "zorro.x.*".
RULES = [
    (("zorro.data", "zorro.demo"), ("zorro.model", "zorro.layers", "zorro.tasks", "zorro.heads", "zorro.hub",
                                    "zorro.train", "zorro.recipes", "zorro.cli")),
    (("zorro.model", "zorro.model_config", "zorro.hub", "zorro.layers"), ("zorro.train", "zorro.recipes", "zorro.cli",
                                                                          "zorro.data", "zorro.demo")),
    (("zorro.hub", "zorro.model_config"), ("zorro.model",)),  # one way: zorro.model -> zorro.hub -> zorro.model_config
    # the modality kinds sit below the config and the model: zorro.model_config -> zorro.modalities -> zorro.layers
    (("zorro.modalities",), ("zorro.model", "zorro.model_config", "zorro.hub", "zorro.train", "zorro.recipes", "zorro.cli",
                             "zorro.data", "zorro.demo")),
    # the byte tokenizer is shared by the data side and the text kind: it imports neither
    (("zorro.tokenizer",), ("zorro.model", "zorro.modalities", "zorro.layers", "zorro.data", "zorro.train")),
    (("zorro.train",), ("zorro.recipes", "zorro.cli")),
    (("zorro.recipes",), ("zorro.cli",)),
]


def module_name(path: Path, root: Path = SRC) -> str:
    """``src/zorro/train/loop.py`` -> ``zorro.train.loop``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(name: str, source: str, known: set[str], *, is_package: bool = False) -> set[str]:
    """The ``known`` modules that ``source`` (module ``name``) imports, resolved to the
    innermost known module (``from zorro.data import x`` is ``zorro.data``, or
    ``zorro.data.x`` when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        for target in targets:
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known and target != name:
                found.add(target)
    return found


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """``module -> modules it imports`` over every ``.py`` file under ``root``."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    known = set(files)
    return {n: imported_modules(n, p.read_text(), known, is_package=p.name == "__init__.py") for n, p in files.items()}


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(graph: dict[str, set[str]], rules=RULES) -> list[str]:
    """Every forbidden edge and every import cycle of ``graph``, as sentences."""
    found = [f"{a} imports {b}" for a, deps in sorted(graph.items()) for b in sorted(deps)
             for sources, banned in rules if _under(a, sources) and _under(b, banned)]
    # Cycles: strongly connected components with more than one module (Tarjan, iterative).
    index, low, stack, on_stack, counter = {}, {}, [], set(), [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next((c for c in children if c in graph), None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append("import cycle: " + " <-> ".join(sorted(component)))
    return found


def test_the_package_imports_one_way():
    graph = import_graph()
    assert {"zorro.model", "zorro.hub", "zorro.train.loop", "zorro.data"} <= set(graph)  # the walk found the package
    assert "zorro.hub" in graph["zorro.model"] and "zorro.model_config" in graph["zorro.hub"]
    assert violations(graph) == []


def test_the_checker_finds_cycles_forbidden_doors_and_lazy_imports(tmp_path):
    pkg = tmp_path / "zorro"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("from .decode import read\n")
    (pkg / "data" / "decode.py").write_text("def read():\n    from zorro.model import Zorro  # lazy, still counted\n")
    (pkg / "model.py").write_text("from zorro.hub import save\n")
    (pkg / "hub.py").write_text("import zorro.model\n")
    graph = import_graph(tmp_path)
    assert graph["zorro.data"] == {"zorro.data.decode"} and graph["zorro.data.decode"] == {"zorro.model"}
    found = violations(graph)
    assert "zorro.data.decode imports zorro.model" in found
    assert "zorro.hub imports zorro.model" in found
    assert "import cycle: zorro.hub <-> zorro.model" in found
