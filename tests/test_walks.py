"""Walks that end: globs and folders never follow a symlink into a directory already visited,
and each file is reported once (by device and inode), however the tree loops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from remote_helpers import small_checkpoint

import dwf
from dwf.tools import batch


def expand(sources: list[str | Path], seconds: float = 30) -> list[str]:
    """:func:`dwf.tools.batch.expand`, failing (rather than hanging the suite) past a deadline."""
    import threading

    out: list[list[str]] = []
    worker = threading.Thread(target=lambda: out.append(batch.expand(sources)), daemon=True)
    worker.start()
    worker.join(seconds)
    if not out:
        pytest.fail(f"expand({sources}) did not end within {seconds} s")
    return out[0]


pytestmark = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="symlinks")


@pytest.fixture
def loop(tmp_path: Path) -> Path:
    """loop/net_1000.weights, loop/sub/net_2000.weights, and links that make cycles:
    loop/cur -> ., loop/sub/up -> .., loop/sub/again -> ../sub; loop/alias.weights -> the file
    beside it."""
    root = tmp_path / "loop"
    small_checkpoint(root, "net_1000", seed=1)
    small_checkpoint(root / "sub", "net_2000", seed=2)
    os.symlink(".", root / "cur")
    os.symlink("..", root / "sub" / "up")
    os.symlink("../sub", root / "sub" / "again")
    os.symlink("net_1000.weights", root / "alias.weights")
    return root


def _inodes(paths: list[str]) -> list[tuple[int, int]]:
    return [(os.stat(p).st_dev, os.stat(p).st_ino) for p in paths]


def test_a_recursive_glob_over_symlink_loops_ends_with_each_file_once(loop: Path) -> None:
    found = expand([str(loop / "**" / "*.weights")])
    assert len(found) == 2, found
    assert len(set(_inodes(found))) == 2
    # the real names, not the names through a link, where both exist
    assert sorted(Path(p).name for p in found) == ["net_1000.weights", "net_2000.weights"]
    assert sorted(found) == sorted(
        [str(loop / "net_1000.weights"), str(loop / "sub" / "net_2000.weights")]
    )


def test_a_folder_lists_each_file_once(loop: Path) -> None:
    found = expand([loop])
    assert found == [str(loop / "net_1000.weights")]
    assert expand([loop / "sub"]) == [str(loop / "sub" / "net_2000.weights")]


def test_hard_links_are_one_file(loop: Path) -> None:
    os.link(loop / "sub" / "net_2000.weights", loop / "sub" / "hard.weights")
    found = expand([loop / "sub"])
    assert len(found) == 1 and _inodes(found) == _inodes([str(loop / "sub" / "hard.weights")])


def test_a_glob_keeps_shell_rules(loop: Path) -> None:
    (loop / ".hidden").mkdir()
    small_checkpoint(loop / ".hidden", "net_9000", seed=9)
    small_checkpoint(loop / "sub" / "deeper", "net_3000", seed=3)
    found = expand([str(loop / "**" / "net_*.weights")])  # sorted by path, as glob sorts
    assert [os.path.relpath(p, loop) for p in found] == [
        "net_1000.weights",
        os.path.join("sub", "deeper", "net_3000.weights"),
        os.path.join("sub", "net_2000.weights"),
    ]
    assert [Path(p).name for p in expand([str(loop / "*" / "net_*.weights")])] == [
        "net_2000.weights"
    ]
    assert expand([str(loop / "nothing_*.weights")]) == [str(loop / "nothing_*.weights")]
    rel = os.path.relpath(loop / "sub" / "*.weights")
    assert expand([rel]) == [os.path.join(os.path.dirname(rel), "net_2000.weights")]


def test_dwf_check_over_a_looping_tree_ends(loop: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(dwf.__file__).parents[1])}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "dwf", "check", str(loop / "**" / "*.weights"), "-j", "1"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("dwf check did not end on a tree with symlink loops")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": scanned") == 2
