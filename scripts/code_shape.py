"""The shape of the code: lines in steps/ and the longest functions of src/ (issue 16's figures).

python scripts/code_shape.py [--top 10]
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "nextday"


def _defined(node: ast.AST, prefix: str) -> list[tuple[int, str]]:
    """(lines, qualified name) of the functions under `node`, nested ones included."""
    out = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{child.name}"
            out.append((child.end_lineno - child.lineno + 1, name))
            out += _defined(child, f"{name}.")
        elif isinstance(child, ast.ClassDef):
            out += _defined(child, f"{prefix}{child.name}.")
    return out


def functions(root: Path) -> list[tuple[int, str]]:
    """(lines, module:qualified name) of every function under `root`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        module = path.relative_to(root).with_suffix("").as_posix()

        found += [(n, f"{module}:{name}") for n, name in _defined(tree, "")]
    return sorted(found, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    lines = {p: len(p.read_text().splitlines()) for p in SRC.rglob("*.py")}
    steps = sum(n for p, n in lines.items() if p.parent.name == "steps")
    print(f"src/: {sum(lines.values()):,} lines; steps/: {steps:,}")
    runs = [(n, name) for n, name in functions(SRC) if name.startswith("steps/")]
    print("\nrun_* functions:")
    for n, name in sorted((n, name) for n, name in runs if ":run_" in name)[::-1]:
        print(f"  {n:4d}  {name}")
    print(f"\nlongest {args.top} functions:")
    for n, name in functions(SRC)[: args.top]:
        print(f"  {n:4d}  {name}")


if __name__ == "__main__":
    main()
