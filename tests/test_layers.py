"""The layers hold: the steps are entry points that import the domain, never the other way
round, and no two parts of the package import each other."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "nextday"
STEPS = "nextday.steps"
# the entry points: the steps themselves and the command line that dispatches to them
ENTRY_POINTS = (PACKAGE / "steps", PACKAGE / "cli.py")


def _module(path: Path) -> str:
    """The dotted name of a source file of the package (a package's __init__ is the package)."""
    parts = ("nextday", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, module) of every import in `tree`, at any depth (inside functions too), with
    relative imports resolved against `module` and `from x import y` counted as x.y too."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _imports_steps(name: str) -> bool:
    return name == STEPS or name.startswith(f"{STEPS}.")


def test_nothing_outside_the_steps_and_the_cli_imports_the_steps():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if any(path == entry or entry in path.parents for entry in ENTRY_POINTS):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        module = _module(path)
        for line, name in _imported(tree, module, path.name == "__init__.py"):
            if _imports_steps(name):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    assert not offenders, "the domain imports the steps:\n" + "\n".join(offenders)


def test_the_import_finder_sees_every_form_of_import():
    source = """
import nextday.steps.train
from nextday import steps
from nextday.models import spec
def late():
    from ..steps.calibrate import load_model_run
    from . import guard
"""
    found = _imported(ast.parse(source), "nextday.backtest.walkforward", is_package=False)
    assert {name for _, name in found if _imports_steps(name)} == {
        "nextday.steps.train",
        "nextday.steps",
        "nextday.steps.calibrate",
        "nextday.steps.calibrate.load_model_run",
    }
    assert (6, "nextday.steps.calibrate") in found  # inside a function, with its line
    assert (7, "nextday.backtest.guard") in found  # relative to the module's package


# shared helpers of the steps (no entry point of their own) and the chain that runs the others
STEP_HELPERS = {"nextday.steps.inputs", "nextday.steps.fitting"}
CHAIN = "nextday.steps.main"


def test_a_step_imports_no_other_step_for_a_helper():
    """Helpers two steps share live in a helper module of the steps (or below, in the
    domain); only `main`, the chain, imports other steps (to run them)."""
    offenders = []
    for path in sorted((PACKAGE / "steps").glob("*.py")):
        module = _module(path)
        if module in STEP_HELPERS | {CHAIN, STEPS}:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, name in _imported(tree, module, path.name == "__init__.py"):
            imported = ".".join(name.split(".")[:3])
            if _imports_steps(name) and imported not in STEP_HELPERS | {STEPS, module}:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    assert not offenders, "a step imports another step:\n" + "\n".join(offenders)


def _package_imports() -> dict[str, dict[str, list[str]]]:
    """For each top-level part of the package (a subpackage or a module), the other parts it
    imports, each with the lines that do."""
    parts = {p.stem for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module(path)
        source = (module.split(".") + [""])[1]
        for line, name in _imported(
            ast.parse(path.read_text()), module, path.name == "__init__.py"
        ):
            target = (name.split(".") + [""])[1] if name.startswith("nextday.") else ""
            if target in parts and target not in {source, "__init__"}:
                where = f"{path.relative_to(PACKAGE.parent)}:{line}"
                lines = graph.setdefault(source, {}).setdefault(target, [])
                if where not in lines:  # `from x import y` names x and x.y on one line
                    lines.append(where)
    return graph


def _cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The groups of parts that reach each other through their imports (Tarjan's strongly
    connected components of more than one part)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_two_parts_of_the_package_import_each_other():
    """The layers run one way: the shared names at the bottom (contracts, pages, timing), then
    the data, the models, serving, the judging and the steps on top. A cycle between two parts
    (however long) means one of them reaches up, and is named with the lines that close it."""
    graph = _package_imports()
    problems = []
    for group in _cycles(graph):
        lines = [
            f"  {source} -> {target}: {', '.join(graph[source][target][:3])}"
            for source in group
            for target in group
            if target in graph.get(source, {})
        ]
        problems.append(f"{' <-> '.join(group)}:\n" + "\n".join(lines))
    assert not problems, "parts of the package import each other:\n" + "\n".join(problems)


def test_the_cycle_finder_finds_a_long_cycle_and_nothing_in_a_chain():
    chain = {"a": {"b": ["x"]}, "b": {"c": ["y"]}}
    assert _cycles(chain) == []
    assert _cycles({**chain, "c": {"a": ["z"]}, "d": {"a": ["w"]}}) == [["a", "b", "c"]]
