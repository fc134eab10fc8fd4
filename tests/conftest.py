"""Shared fixtures: where ../shared lives, and small helpers for building test files."""

from __future__ import annotations

import os
from pathlib import Path

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


def call_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """Run the command line in this process: ``(exit code, stdout, stderr)``."""
    from dwf.interfaces.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse's own errors
        code = e.code if isinstance(e.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err
