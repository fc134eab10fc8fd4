"""The kinds of mismatch causes: the type, what the code can produce and docs/api.md agree."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import get_args

import dwf
from dwf.format import diagnosis
from dwf.format.causes import Cause, CauseKind

ROOT = Path(__file__).resolve().parents[1]


def _strings(node: ast.expr) -> set[str]:
    """The string constants an expression can evaluate to (a literal, or either arm of a
    conditional expression)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _strings(node.body) | _strings(node.orelse)
    raise AssertionError(f"a Cause kind that is not a literal: {ast.unparse(node)}")


def produced() -> set[str]:
    """Every kind a ``Cause(...)`` in dwf/ is made with."""
    kinds: set[str] = set()
    for path in (ROOT / "dwf").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "Cause"
            ):
                kind = (
                    node.args[0]
                    if node.args
                    else next(k.value for k in node.keywords if k.arg == "kind")
                )
                kinds |= _strings(kind)
    return kinds


def documented() -> set[str]:
    """The kinds docs/api.md's ``cause.kind`` row lists."""
    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    (row,) = [line for line in api.splitlines() if line.startswith("| `cause.kind` |")]
    return set(re.findall(r'`"([^"`]+)"`', row))


def test_every_kind_the_code_produces_is_typed_and_documented_and_only_those() -> None:
    typed = set(get_args(CauseKind))
    assert produced() == typed
    assert documented() == typed


def test_the_docstring_lists_the_same_kinds() -> None:
    doc = Cause.__doc__ or ""
    listed = set(re.findall(r'``"([^"]+)"``', doc.split("summary:")[0]))
    assert listed == set(get_args(CauseKind))


def test_a_checker_is_one_function_of_the_context() -> None:
    """Adding a cause is adding a function to CHECKERS: the diagnosis runs them in order, each
    seeing the causes found before it."""
    plan = dwf.Plan.from_text("[net]\nwidth=4\nheight=4\nchannels=1\n[convolutional]\nfilters=2\n")
    header = dwf.Header()
    seen: list[tuple[str, ...]] = []

    def spy(ctx: diagnosis.Context, found: tuple[Cause, ...]) -> list[Cause]:
        seen.append(tuple(c.kind for c in found))
        return [Cause("truncated", "spied", exact=False)]

    ctx = diagnosis.Context("x.weights", header.encode(), header, 20 + 4, plan)
    old = diagnosis.CHECKERS
    try:
        diagnosis.CHECKERS = (spy, *old)
        got = diagnosis.diagnose(ctx)
    finally:
        diagnosis.CHECKERS = old
    assert seen == [()]
    assert got.causes[0].summary == "spied"
