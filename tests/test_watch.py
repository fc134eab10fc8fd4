"""``dwf watch`` / ``dwf.watch``: follow a training run while a Darknet-like writer, in another
process, saves checkpoints (open "wb", header, arrays layer by layer, small sleeps; ``_last``
rewritten in place). One record per complete checkpoint, in the order they completed, each with
its drift from the previous one and the findings that appeared."""

from __future__ import annotations

import json
import mmap
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from remote_helpers import SMALL_CFG
from training_writer import values, write_like_darknet

import dwf
from dwf.interfaces.cli import main

TESTS = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}


@pytest.fixture
def backup(tmp_path: Path) -> Path:
    """backup/x.cfg (about 600 KB of weights) and the checkpoint x_1000 (seen 1000); the
    writer starts from its values (start.npz)."""
    folder = tmp_path / "backup"
    folder.mkdir()
    (folder / "x.cfg").write_text(SMALL_CFG.format(f1=64, f2=256))
    plan = dwf.plan(folder / "x.cfg")
    arrays = values(plan)
    np.savez(folder / "start.npz", **arrays)
    write_like_darknet(folder / "x_1000.weights", plan, arrays, 1000, 0)
    return folder


def _writer(folder: Path, steps: list[dict[str, Any]]) -> subprocess.Popen[bytes]:
    for s in steps:
        s["path"] = str(folder / s["path"])
    return subprocess.Popen(
        [
            sys.executable,
            str(TESTS / "training_writer.py"),
            str(folder / "x.cfg"),
            json.dumps(steps),
        ],
        env=ENV,
    )


def _line(stream: Any, deadline: float) -> bytes:
    """One line from a child's pipe, failing at the deadline instead of waiting forever."""
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([stream], [], [], max(left, 0))
        if not ready:
            pytest.fail(f"no line within the deadline (got {buf!r})")
        c = os.read(stream.fileno(), 1)
        if not c:
            break
        buf += c
    return buf


def _moves(main: str, factor: float) -> dict[str, float]:
    """Every layer moves a little (as in training), ``main`` by ``factor``."""
    return {"conv_0": 1.001, "conv_2": 1.001, "conv_3": 1.001, main: factor}


THREE = [
    {"path": "x_last.weights", "seen": 1100, "scale": _moves("conv_0", 1.02)},
    {"path": "x_last.weights", "seen": 1200, "scale": _moves("conv_2", 1.01)},  # rewritten
    {"path": "x_2000.weights", "seen": 2000, "scale": _moves("conv_3", 1.03)},
]


@pytest.mark.slow  # a writer and a watcher process (~2 s)
def test_dwf_watch_prints_each_checkpoint_as_it_completes_with_its_drift(backup: Path) -> None:
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dwf",
            "watch",
            str(backup),
            "--count",
            "3",
            "--json",
            "--interval",
            "0.05",
            "--timeout",
            "120",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        note = _line(watcher.stderr, time.monotonic() + 60).decode()
        assert note.startswith("dwf: watching ") and "x_1000.weights" in note
        writer = _writer(backup, THREE)
        out, err = watcher.communicate(timeout=120)
        assert writer.wait(timeout=60) == 0
    finally:
        watcher.kill()
    assert watcher.returncode == 0, err
    lines = [json.loads(ln) for ln in out.decode().splitlines()]
    assert len(lines) == 3
    assert [(Path(d["path"]).name, d["seen"]) for d in lines] == [
        ("x_last.weights", 1100),
        ("x_last.weights", 1200),
        ("x_2000.weights", 2000),
    ]
    assert [(Path(d["previous"]).name, d["previous_seen"]) for d in lines] == [
        ("x_1000.weights", 1000),
        ("x_last.weights", 1100),
        ("x_last.weights", 1200),
    ]
    for d, (layer, rel) in zip(
        lines, [("conv_0", 0.02), ("conv_2", 0.01), ("conv_3", 0.03)], strict=False
    ):
        top = d["changes"][0]
        assert top["layer"] == layer and top["rel_l2"] == pytest.approx(rel, rel=1e-3)
        assert [c["rel_l2"] for c in d["changes"][1:]] == pytest.approx([0.001, 0.001], rel=1e-2)
        assert d["findings"] == [] and d["error"] is None


@pytest.mark.slow  # a watched run (~2 s)
def test_findings_appear_once_and_the_map_is_never_used(
    backup: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_map(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("dwf.watch mapped a file")

    monkeypatch.setattr(mmap, "mmap", no_map)
    seen = dwf.watch(backup, count=3, interval=0.05, timeout=120)
    writer = _writer(
        backup,
        [
            {"path": "x_last.weights", "seen": 1100, "scale": {"conv_0": 1.02, "conv_2": 1.01}},
            # conv_2 stops changing; a NaN appears in conv_3
            {"path": "x_last.weights", "seen": 1200, "scale": {"conv_0": 1.02}, "nan": "conv_3"},
            # the NaN is still there (not said again); conv_2's variances collapse
            {
                "path": "x_2000.weights",
                "seen": 2000,
                "scale": {"conv_0": 1.02, "conv_3": 1.01},
                "collapse": "conv_2",
            },
        ],
    )
    try:
        records = list(seen)
    finally:
        writer.wait(timeout=60)
    assert [r.seen for r in records] == [1100, 1200, 2000]
    kinds = [sorted((f.layer, f.kind) for f in r.findings) for r in records]
    assert kinds == [
        [],
        [("conv_2", "stopped-changing"), ("conv_3", "nan")],
        [("conv_2", "variance-collapse")],
    ]
    assert records[1].serious and not records[0].serious
    line = records[1].explain()
    assert "\n" not in line and "x_last.weights" in line and "NaN" in line
    assert records[1].to_dict()["findings"][0]["kind"] in ("nan", "stopped-changing")


def test_timeout_existing_and_count(backup: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start = time.monotonic()
    assert list(dwf.watch(backup, interval=0.05, timeout=0.3)) == []
    assert time.monotonic() - start < 30
    (first,) = dwf.watch(backup, interval=0.05, timeout=30, existing=True, count=1)
    assert (Path(first.path).name, first.seen, first.previous, first.changes) == (
        "x_1000.weights",
        1000,
        None,
        (),
    )
    assert (
        main(["watch", str(backup), "--count", "1", "--timeout", "0.3", "--interval", "0.05"]) == 2
    )
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[-1].startswith("dwf: error: ") and "0 of 1" in err
    assert main(["watch", str(backup / "missing_dir")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.slow  # waits for the file to hold still (~1.5 s)
def test_a_stable_file_that_does_not_fit_is_one_error_record(backup: Path) -> None:
    (backup / "x_500.weights").write_bytes((backup / "x_1000.weights").read_bytes()[:-6])
    records = list(dwf.watch(backup, interval=0.05, timeout=1.5, patience=0.2, count=1))
    assert [(Path(r.path).name, r.error is not None) for r in records] == [("x_500.weights", True)]
    assert "x.cfg" in (records[0].error or "")


def test_ctrl_c_ends_the_watch_cleanly(backup: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dwf",
            "watch",
            str(backup),
            "--interval",
            "0.05",
            "--workdir",
            str(work),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        _line(watcher.stderr, time.monotonic() + 60)
        assert len(os.listdir(work)) == 1  # the copy of the newest checkpoint
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=60)
    finally:
        watcher.kill()
    assert watcher.returncode == 130
    assert b"Traceback" not in err and len(err.splitlines()) <= 1
    assert out == b""
    assert os.listdir(work) == []


def test_a_rewrite_during_the_copy_is_never_reported_mixed(
    backup: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dwf.io import source
    from dwf.tools import watch as watching

    src = backup / "x_1000.weights"
    plan = dwf.plan(backup / "x.cfg")
    monkeypatch.setattr(source, "_COPY_STEP", 4096)  # the kernel's copy, in small steps
    monkeypatch.setattr(source, "_STEP", 4096)  # the copy through a buffer, the same
    calls = []

    def rewriting(real: Any) -> Any:
        def step(*args: Any) -> int:
            calls.append(1)
            if len(calls) == 3:  # Darknet starts saving again, in place, mid-copy
                write_like_darknet(src, plan, values(plan, seed=5), 1100, 0)
            n: int = real(*args)
            return n

        return step

    w = watching._Watcher([str(backup)], None, dwf.ALEXEYAB, 5, 10.0, tmp_path)
    try:
        with monkeypatch.context() as patched:  # whichever way the source copies
            for name in ("_kernel_copy", "_read_into"):
                real = getattr(source.LocalSource, name)
                patched.setattr(source.LocalSource, name, rewriting(real))
            v = watching._version(str(src))
            assert v is not None
            assert w._copy(str(src), v) is None
            assert len(calls) > 3 and os.listdir(w.folder) == []  # the partial copy is gone
        v = watching._version(str(src))
        assert v is not None
        copy = w._copy(str(src), v)
        assert copy is not None and Path(copy).read_bytes() == src.read_bytes()
    finally:
        w.close()
    assert not os.path.exists(w.folder)


def test_closing_the_generator_removes_the_copies(backup: Path, tmp_path: Path) -> None:
    records = dwf.watch(backup, interval=0.05, timeout=30, workdir=tmp_path / "w")
    assert len(os.listdir(tmp_path / "w")) == 1
    records.close()  # type: ignore[attr-defined]
    assert os.listdir(tmp_path / "w") == []


def test_live_table_updates_one_table_in_place(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import types

    from dwf.tools.check import Finding

    shown: list[str] = []

    class Handle:
        def update(self, obj: Any) -> None:
            shown.append(obj.data)

    class HTML:
        def __init__(self, data: str) -> None:
            self.data = data

    handles: list[Handle] = []

    def display(obj: Any, display_id: bool = False) -> Handle:
        assert display_id
        handles.append(Handle())
        shown.append(obj.data)
        return handles[-1]

    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: object()  # type: ignore[attr-defined]
    ipy_display = types.ModuleType("IPython.display")
    ipy_display.display = display  # type: ignore[attr-defined]
    ipy_display.HTML = HTML  # type: ignore[attr-defined]
    nan = Finding(3, "conv_3", "convolutional", "weights", "nan", "error", 1, "1 NaN values")
    records = [
        dwf.Checkpoint("b/x_last.weights", 100 * i, 10, 0.0, "b/x_1000.weights", 1000, (), ())
        for i in range(1, 4)
    ]
    records[2] = attrs_evolve(records[2], findings=(nan,))
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", ipy_display)
    assert dwf.live_table(iter(records), rows=2) == records
    assert len(handles) == 1 and len(shown) == 4  # one table, then three updates of it
    assert shown[-1].count("<tr>") == 3 and "NaN" in shown[-1] and "300" in shown[-1]
    assert capsys.readouterr().out == ""
    monkeypatch.delitem(sys.modules, "IPython")  # no notebook: a line each
    assert len(dwf.live_table(records)) == 3
    assert capsys.readouterr().out.count("x_last.weights: seen") == 3


def attrs_evolve(record: dwf.Checkpoint, **changes: Any) -> dwf.Checkpoint:
    import attrs

    return attrs.evolve(record, **changes)


def test_a_layer_that_was_all_zeros_changed_from_zeros(backup: Path) -> None:
    # Failed before: the line said "conv_2 inf" and JSON "rel_l2": null with nothing to say why
    plan = dwf.plan(backup / "x.cfg")
    arrays = values(plan)
    zeros = {k: np.zeros_like(v) if k.startswith("conv_2.") else v for k, v in arrays.items()}
    write_like_darknet(backup / "x_1000.weights", plan, zeros, 1000, 0)
    write_like_darknet(backup / "x_2000.weights", plan, arrays, 2000, 0)
    _, second = dwf.watch(backup, existing=True, count=2, interval=0.05, timeout=30)
    (top, *_) = second.changes
    assert (top.layer, top.from_zeros, top.rel_l2) == ("conv_2", True, float("inf"))
    assert "conv_2 from zeros" in second.explain() and "inf" not in second.explain()
    assert top.to_dict()["rel_l2"] is None and top.to_dict()["from_zeros"] is True
    assert [c.to_dict()["from_zeros"] for c in second.changes[1:]] == [False] * (
        len(second.changes) - 1
    )


@pytest.mark.slow  # waits for the file to hold still (~1 s)
def test_a_file_of_another_network_says_what_the_cfg_needs_at_its_header_width(
    backup: Path,
) -> None:
    # Failed before: "needs 612,356 (with its 16-byte header)" — whose header?
    plan = dwf.plan(backup / "x.cfg")
    body = np.zeros(1000, "<f4").tobytes()
    (backup / "x_500.weights").write_bytes(dwf.Header(0, 1, 0, 500, 16).encode() + body)
    records = list(dwf.watch(backup, interval=0.05, timeout=5, patience=0.2, count=1))
    (error,) = [r.error for r in records]
    n = plan.total_floats
    needs = f"needs {16 + 4 * n:,} bytes (16-byte header + {n:,} float32)"
    assert f"4,016 bytes, but x.cfg {needs}: not a checkpoint" in (error or ""), error


def test_without_a_cfg_the_watch_fails_at_once_or_says_where_it_looks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Failed before: the error came as a record after patience (10 s), and the first line
    # did not say that no cfg was given
    folder = tmp_path / "backup"
    folder.mkdir()
    (folder / "x_1000.weights").write_bytes(dwf.Header(0, 2, 5, 1000, 20).encode())
    with pytest.raises(dwf.DwfError, match=r"x_1000.weights: no cfg given and none found beside"):
        dwf.watch(folder, interval=0.05, timeout=0.1)
    with pytest.raises(dwf.DwfError, match=r"looked for .*y\.cfg.*--cfg"):
        dwf.watch(tmp_path / "y_last.weights", interval=0.05, timeout=0.1)
    assert main(["watch", str(folder), "--timeout", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no cfg given" in err and "--cfg" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    records = dwf.watch(empty, interval=0.05, timeout=10, patience=60)
    (empty / "x_1000.weights").write_bytes(dwf.Header(0, 2, 5, 1000, 20).encode())
    record = next(records)  # at once, not after patience
    records.close()  # type: ignore[attr-defined]
    assert "no cfg given" in (record.error or "")
    (tmp_path / "none").mkdir()
    assert main(["watch", str(tmp_path / "none"), "--timeout", "0.1"]) == 0
    assert "with the cfg beside each checkpoint" in capsys.readouterr().err
