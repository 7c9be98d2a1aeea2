"""train/ is layered: no import circle, and no function-level import of a project module (the circle's glue)."""

from __future__ import annotations

import ast
from pathlib import Path

TRAIN = Path(__file__).resolve().parents[2] / "llava_structlora" / "train"
PROJECT = ("llava_structlora", "recipes", "data_prep", "experiments", "benchmarks")


def _imports(path: Path) -> tuple[set[str], list[str]]:
    """(train/ modules imported at module level, project imports inside functions) of one file."""
    top, inner = set(), []

    def visit(node: ast.AST, in_func: bool) -> None:
        for child in ast.iter_child_nodes(node):
            func = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom):
                mod = child.module or ""
                local = child.level == 1 or mod.startswith("llava_structlora.train")
                name = mod.removeprefix("llava_structlora.train.") if child.level == 0 else mod
                if func and (child.level or mod.split(".")[0] in PROJECT):
                    inner.append(f"line {child.lineno}: from {'.' * child.level}{mod}")
                elif local and not func and name:
                    top.add(name.split(".")[0])
            elif isinstance(child, ast.Import) and func:
                names = [a.name for a in child.names if a.name.split(".")[0] in PROJECT]
                inner.extend(f"line {child.lineno}: import {n}" for n in names)
            visit(child, func)

    visit(ast.parse(path.read_text()), False)
    return top, inner


def test_no_function_level_project_imports_in_train():
    found = {p.name: _imports(p)[1] for p in TRAIN.glob("*.py")}
    assert not {k: v for k, v in found.items() if v}, found


def test_train_modules_form_no_circle():
    graph = {p.stem: _imports(p)[0] & {q.stem for q in TRAIN.glob("*.py")} for p in TRAIN.glob("*.py")}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, f"import circle: {' -> '.join(path + [node, nxt])}"
            if nxt not in state:
                walk(nxt, path + [node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [])
    assert "config" not in set().union(*(deps for m, deps in graph.items() if m != "__main__")), (
        "config.py is the public facade: modules inside train/ import the module that defines a name"
    )
