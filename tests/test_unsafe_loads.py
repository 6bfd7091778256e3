"""No request can make the package deserialize code: every ``torch.load`` asks for
``weights_only=True`` and ``pickle`` is only unpickled where the server's own process sent it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "headrace"
PICKLE_ALLOWED = {"engine/process_worker.py"}
"""The worker process unpickles what its parent server sent over a private socketpair."""


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Name):
                found.append((f"{owner.id}.{node.func.attr}", node))
    return found


def test_torch_load_only_with_weights_only_and_pickle_only_from_our_own_process() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        for name, call in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{relative}:{call.lineno}"
            if name == "torch.load":
                flags = {k.arg: k.value for k in call.keywords}
                weights = flags.get("weights_only")
                if not (isinstance(weights, ast.Constant) and weights.value is True):
                    problems.append(f"{where}: torch.load without weights_only=True")
            unpickles = name in ("pickle.loads", "pickle.load", "cloudpickle.loads")
            if unpickles and relative not in PICKLE_ALLOWED:
                problems.append(f"{where}: {name} outside {sorted(PICKLE_ALLOWED)}")
    assert problems == []
