"""Fail when a function or method of the package is longer than a limit (default 80 lines, def to last line).

Long functions are split into named steps; `bash run.sh test` runs this with the linters.
Usage: python scripts/function_lengths.py [LIMIT]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rvqgan"


def long_functions(limit: int) -> list[str]:
    """`path:line name length` for every function of the package longer than `limit` lines."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} {length} lines")
    return found


if __name__ == "__main__":
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 80
    found = long_functions(limit)
    for line in found:
        print(f"{line} (over {limit}: split it into named steps)", file=sys.stderr)
    sys.exit(1 if found else 0)
