"""The name dwf is installed by: a distribution name of its own.

``dwf`` on the package index is another project (a wrapper of Digilent's WaveForms library), so
``pip install`` of ``dwf`` with an extra installs that project and ``import dwf`` then fails.
dwf is published as :data:`dwf.version.DISTRIBUTION` (the import name stays ``dwf``, as
``pip install pillow`` gives ``import PIL``); every install line and every "needs the optional
package" message names that distribution, or the checkout (``pip install '.[plot]'``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dwf
from dwf.extras import require
from dwf.version import DISTRIBUTION

ROOT = Path(__file__).resolve().parents[1]
# dwf with an extra as an install target, not as part of a longer name ("dwf-darknet[" is fine)
OTHER_PROJECT = re.compile(r"(?<![\w.-])" + "dwf" + r"\[")
# Where users read install lines: the package (its messages and docstrings), the docs, the
# README, the CHANGELOG, the benchmarks, the scripts, CI and the tests (whose skip reasons say
# what to install).
TEXT = (".py", ".md", ".ipynb", ".sh", ".toml", ".txt", ".cfg", ".json")


def _texts() -> list[Path]:
    found = [ROOT / name for name in ("README.md", "CHANGELOG.md", "pyproject.toml")]
    found.append(ROOT / ".ci" / "run")
    for folder in ("dwf", "docs", "benchmarks", "scripts", "tests"):
        found += [p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in TEXT]
    return [p for p in found if p.is_file()]


def test_no_text_tells_users_to_install_the_other_projects_dwf() -> None:
    hits = []
    for path in _texts():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if OTHER_PROJECT.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:80]}")
    assert not hits, "\n".join(hits)


def test_the_distribution_is_named_in_pyproject_and_is_not_dwf() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == DISTRIBUTION != "dwf"
    # the command and the import name stay dwf
    assert project["scripts"] == {"dwf": "dwf.interfaces.cli:main"}


def test_a_missing_optional_package_names_the_distribution_and_the_checkout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(dwf.DwfError) as info:
        require("matplotlib", "plot")
    message = str(info.value)
    assert f"pip install '{DISTRIBUTION}[plot]'" in message
    assert "pip install '.[plot]'" in message  # from a checkout
    assert "'matplotlib'" in message and len(message.splitlines()) == 1


def _depth(text: str) -> int:
    depth = most = 0
    for c in text:
        depth += (c == "(") - (c == ")")
        most = max(most, depth)
    return most


def test_install_advice_reads_without_nested_parentheses(monkeypatch: pytest.MonkeyPatch) -> None:
    # Failed before: "onnxruntime (pip install 'dwf-darknet[detect]' (from a checkout: ...)) or
    # PyTorch (...)": install_line's own parentheses nested inside the message's
    import importlib.util

    from dwf.tools.detect import default_runtime

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(dwf.DwfError) as info:
        require("matplotlib", "plot")
    assert _depth(str(info.value)) == 0, info.value
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(dwf.DwfError) as info:
        default_runtime()
    message = str(info.value)
    assert _depth(message) <= 1, message
    for extra in ("detect", "torch"):
        assert f"pip install '{DISTRIBUTION}[{extra}]'" in message
        assert f"pip install '.[{extra}]'" in message


def test_the_readme_says_under_which_name_dwf_is_published() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"pip install {DISTRIBUTION}" in readme or f"pip install '{DISTRIBUTION}" in readme


@pytest.mark.slow  # a pytest run in a subprocess (~5 s)
def test_a_fresh_clone_sees_its_skips_grouped_by_reason(tmp_path: Path) -> None:
    """Without ../shared, every test that reads it is skipped: one line says so, with a count,
    instead of one line per test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DWF_")}
    env["DWF_SHARED"] = str(tmp_path / "no-shared")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "tests/test_realweights.py", "tests/test_conformance.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "skipped, by reason" in out
    lines = [ln for ln in out.splitlines() if "no-shared" in ln]
    assert len(lines) == 1 and "which is not present" in lines[0], out
    assert "SKIPPED [" not in out  # pytest's own line per skip location is not printed
