"""The layers of DESIGN.md hold: the steps are entry points that import the domain, never the
other way round."""

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
