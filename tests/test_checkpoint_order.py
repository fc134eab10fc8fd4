"""Checkpoint order: a folder (or glob) of checkpoints given to ``diff``/``drift`` is ordered by
``seen``, then the iteration number in the name, then the modification time — not by name; an
order the user gives that makes ``seen`` go backwards is kept, and said (in the report and on
stderr). Two files of different networks: said, and only what both share is compared."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from remote_helpers import small_checkpoint

import dwf
from dwf.interfaces.cli import main


def _checkpoint(folder: Path, name: str, seen: int, mtime: float, seed: int) -> Path:
    plan = dwf.plan(folder / "x.cfg")
    rng = np.random.default_rng(seed)
    arrays = {}
    for lp, a in plan.arrays():
        v = rng.standard_normal(a.shape).astype(np.float32)
        arrays[f"{lp.name}.{a.name}"] = np.abs(v) + 0.1 if a.name == "rolling_variance" else v
    out = folder / name
    dwf.save(out, plan, arrays, header=dwf.Header(0, 2, 5, seen, 20))
    os.utime(out, (mtime, mtime))
    return out


@pytest.fixture
def backup(tmp_path: Path) -> Path:
    """Darknet's backup folder; by name: x.backup, x_1000, x_2000, x_best, x_final, x_last."""
    folder = tmp_path / "backup"
    _, _cfg = small_checkpoint(folder, "x_0", seed=0)
    os.unlink(folder / "x_0.weights")
    t = 1_700_000_000
    _checkpoint(folder, "x_1000.weights", 64_000, t + 10, 1)
    _checkpoint(folder, "x_best.weights", 128_000, t + 5, 2)  # same seen as x_2000: no number
    _checkpoint(folder, "x_2000.weights", 128_000, t + 20, 3)
    _checkpoint(folder, "x.backup", 192_000, t + 30, 4)
    _checkpoint(folder, "x_final.weights", 256_000, t + 50, 5)  # same seen: newer than _last
    _checkpoint(folder, "x_last.weights", 256_000, t + 40, 6)
    return folder


ORDER = [
    "x_1000.weights",
    "x_2000.weights",
    "x_best.weights",
    "x.backup",
    "x_last.weights",
    "x_final.weights",
]


def _names(series: list[dwf.DiffReport]) -> list[str]:
    return [Path(series[0].a).name] + [Path(r.b).name for r in series]


def test_a_folder_is_ordered_by_seen_then_iteration_then_mtime(backup: Path) -> None:
    series = dwf.drift(backup)
    assert _names(series) == ORDER
    assert [r.seen_b >= r.seen_a for r in series] == [True] * 5
    assert all(not r.warnings for r in series)
    assert _names(dwf.drift(str(backup / "x*[!g]"))) == ORDER  # a glob alike (not x.cfg)


def test_dwf_diff_of_a_folder_in_checkpoint_order(
    backup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diff", str(backup), "--json"]) == 0
    out, err = capsys.readouterr()
    series = json.loads(out)["series"]
    assert [Path(series[0]["a"]).name] + [Path(r["b"]).name for r in series] == ORDER
    assert [r["warnings"] for r in series] == [[]] * 5
    assert err == ""
    assert main(["diff", str(backup)]) == 0
    out = capsys.readouterr().out
    assert [ln.split("] ", 1)[1].rsplit("/", 1)[-1] for ln in out.splitlines()[:6]] == ORDER


def test_an_explicit_order_that_goes_back_is_kept_and_said(
    backup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    late, early = backup / "x_2000.weights", backup / "x_1000.weights"
    (report,) = dwf.drift([late, early])
    assert (report.seen_a, report.seen_b) == (128_000, 64_000)
    assert len(report.warnings) == 1 and "seen goes backwards" in report.warnings[0]
    assert "128,000" in report.warnings[0] and "64,000" in report.warnings[0]
    assert dwf.diff(late, early).warnings == report.warnings
    assert not dwf.diff(early, late).warnings
    assert main(["diff", str(late), str(early), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["warnings"] == list(report.warnings)
    assert err.startswith("dwf: warning: ") and "seen goes backwards" in err
    assert len(err.splitlines()) == 1


def test_two_different_networks_say_so_and_compare_only_what_they_share(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dwf.tools.demo import write_demo

    _cfg, demo = write_demo(tmp_path)
    small, _ = small_checkpoint(tmp_path / "other", "small_1000", seed=1)
    report = dwf.diff(small, demo)
    # the small net's conv_0 (8×3×3×3) and conv_2 (16×8×3×3) have the demo's shapes; the rest
    # of either network has no counterpart
    assert sorted({d.layer for d in report.arrays}) == ["conv_0", "conv_2"]
    assert len(report.warnings) == 1
    warning = report.warnings[0]
    assert "different networks" in warning
    assert "compared only the 2 layers" in warning
    assert not report.identical
    assert main(["diff", small, str(demo)]) == 0
    _out, err = capsys.readouterr()
    assert "different networks" in err and err.startswith("dwf: warning: ")
    assert main(["diff", small, str(demo), "--exit-code"]) == 1
    capsys.readouterr()
    # the same network: no warning
    assert not dwf.diff(demo, demo).warnings
