"""Users' code type-checks against dwf's public names (``py.typed``, a lazy facade that type
checkers must still see through)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

USER_CODE = """\
import dwf

f: dwf.WeightsFile = dwf.open("x.weights")
w = f["conv_0"].weights
r: dwf.DiffReport = dwf.diff(f, "y.weights")
c: dwf.CheckReport = dwf.check(f)
s: dwf.StatsReport = dwf.stats("x.weights")
p: str = dwf.cut("a", "b", 3)
h: dwf.Header = dwf.Header.written_by("pjreddie")
e: type[dwf.DwfError] = dwf.SizeMismatchError
i: dwf.Identification = dwf.identify("x.weights")
"""
WRONG = 'import dwf\nx: int = dwf.open("x.weights")\n'


def _mypy(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("mypy")
    src = tmp_path / "user.py"
    src.write_text(code)
    root = Path(__file__).resolve().parents[1]
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(src)],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
    )


@pytest.mark.slow  # runs mypy on a snippet (~15 s)
def test_public_names_type_check(tmp_path: Path) -> None:
    r = _mypy(tmp_path, USER_CODE)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow  # runs mypy on a snippet (~15 s)
def test_a_wrong_use_is_caught(tmp_path: Path) -> None:
    r = _mypy(tmp_path, WRONG)
    assert r.returncode == 1 and "Incompatible types" in r.stdout, r.stdout + r.stderr
