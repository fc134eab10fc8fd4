"""Shared fixtures: where ../shared lives, and small helpers for building test files."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DWF_SHARED", ROOT.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared; skips the test when it is absent (fails in CI, where it must
    be present: .ci/run sets DWF_REQUIRE_SHARED)."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        if os.environ.get("DWF_REQUIRE_SHARED"):
            pytest.fail(f"{p} is missing but DWF_REQUIRE_SHARED is set")
        pytest.skip(f"{p} not present (tests that read ../shared are skipped in a fresh clone)")
    return p


@pytest.fixture
def conformance_dir() -> Path:
    return shared_path("conformance")


@pytest.fixture
def realweights_dir() -> Path:
    return shared_path("realweights")


# -- skips, summarised by reason ------------------------------------------------------------------
# A fresh clone skips every test that reads ../shared (a hundred and more): one line per skipped
# test would bury the failures. The reasons are grouped, with a count each (pyproject's addopts
# leave skips out of pytest's own short summary).


def skip_reason(report: pytest.TestReport) -> str:
    """Why a test was skipped, in the words its group shares: ``../shared`` is one reason
    whichever file under it was missing; an optional package is named without the details."""
    longrepr = report.longrepr
    why = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    why = why.removeprefix("Skipped: ")
    if str(SHARED) in why:
        return f"needs {SHARED} (the conformance corpus and real files), which is not present"
    if why.startswith("could not import "):
        return why.split(":", 1)[0] + " (an optional package, not installed)"
    return why


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if r.skipped]
    if not skipped:
        return
    counts = Counter(skip_reason(r) for r in skipped)
    terminalreporter.section(f"{len(skipped)} skipped, by reason", sep="-")
    for why, n in counts.most_common():
        terminalreporter.write_line(f"{n:5}  {why}")
