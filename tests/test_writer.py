"""dwf.save: validation before anything is written, atomic replacement, modes and dtypes."""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dwf
import dwf.io.writer

CFG = (
    "[net]\nwidth=4\nheight=4\nchannels=2\n"
    "[conv]\nfilters=3\nsize=3\npad=1\nbatch_normalize=1\n"  # conv_0
    "[maxpool]\nsize=2\nstride=2\n"  # maxpool_1
    "[conv]\nfilters=4\nsize=1\nflipped=1\n"  # conv_2
    "[connected]\noutput=2\n"  # connected_3
)
SHAPES = {
    "conv_0.biases": (3,),
    "conv_0.scales": (3,),
    "conv_0.rolling_mean": (3,),
    "conv_0.rolling_variance": (3,),
    "conv_0.weights": (3, 2, 3, 3),
    "conv_2.biases": (4,),
    "conv_2.weights": (4, 3, 1, 1),
    "connected_3.biases": (2,),
    "connected_3.weights": (2, 16),
}
TOTAL = sum(int(np.prod(s)) for s in SHAPES.values())
OLD = b"old content that must survive a failed save"


@pytest.fixture
def plan() -> dwf.Plan:
    p = dwf.Plan.from_text(CFG)
    assert {f"{lp.name}.{a.name}": a.shape for lp, a in p.arrays()} == SHAPES
    return p


def make_arrays(seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """A destination that already holds something."""
    path = tmp_path / "out.weights"
    path.write_bytes(OLD)
    return path


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def assert_untouched(target: Path) -> None:
    assert target.read_bytes() == OLD
    assert listing(target.parent) == [target.name]
    assert not list(target.parent.glob("*.dwf-tmp")) and not list(target.parent.glob(".*"))


def expected_body(arrays: dict[str, np.ndarray[Any, Any]]) -> bytes:
    """The body by spec §4: arrays in plan order, flipped conv weights transposed."""
    out = b""
    for key in SHAPES:
        a = np.asarray(arrays[key], dtype=np.float32)
        if key == "conv_2.weights":
            a = a.reshape(4, -1).T
        out += np.ascontiguousarray(a, dtype="<f4").tobytes()
    return out


# -- what gets written -------------------------------------------------------------------------


def test_save_writes_the_planned_layout(plan: dwf.Plan, target: Path) -> None:
    arrays = make_arrays()
    header = dwf.Header(0, 2, 5, 12345678901, 20)
    dwf.save(target, plan, arrays, header=header)
    raw = target.read_bytes()
    assert len(raw) == 20 + 4 * TOTAL
    assert raw[:20] == header.encode()
    assert raw[20:] == expected_body(arrays)
    with dwf.open(target, plan) as f:
        assert f.header.seen == 12345678901
        np.testing.assert_array_equal(f["conv_2"].weights, arrays["conv_2.weights"])


def test_default_header_is_alexeyab_0_2_5(plan: dwf.Plan, target: Path) -> None:
    dwf.save(target, plan, make_arrays())
    with dwf.open(target, plan) as f:
        h = f.header
        assert (h.major, h.minor, h.revision, h.seen, h.size) == (0, 2, 5, 0, 20)


def test_float64_and_integer_input_is_stored_as_float32(plan: dwf.Plan, target: Path) -> None:
    arrays: dict[str, Any] = {k: v.astype(np.float64) + 0.1 for k, v in make_arrays().items()}
    arrays["conv_2.biases"] = np.array([1, -2, 3, 2**24 + 1], dtype=np.int64)
    arrays["connected_3.biases"] = [0.1, 1e-50]  # plain lists are arrays too
    dwf.save(target, plan, arrays)
    with dwf.open(target, plan) as f:
        for key, value in arrays.items():
            layer, _, name = key.partition(".")
            view = f[layer][name]
            assert view.dtype == np.dtype("<f4")
            want = np.asarray(value).astype(np.float32)
            assert np.ascontiguousarray(view).tobytes() == np.ascontiguousarray(want).tobytes()
        assert f["conv_2"].biases.tolist() == [1.0, -2.0, 3.0, 16777216.0]  # type: ignore[union-attr]
        assert f["connected_3"].biases.tolist() == [np.float32(0.1), 0.0]  # type: ignore[union-attr]
    assert target.stat().st_size == 20 + 4 * TOTAL


def test_nested_and_mixed_input(plan: dwf.Plan, tmp_path: Path) -> None:
    arrays = make_arrays(1)
    nested: dict[str, dict[str, np.ndarray[Any, Any]]] = {}
    for key, value in arrays.items():
        layer, _, name = key.partition(".")
        nested.setdefault(layer, {})[name] = value
    mixed: dict[str, Any] = {k: v for k, v in arrays.items() if k.startswith("conv_0.")}
    mixed["conv_2"] = nested["conv_2"]
    mixed["connected_3"] = nested["connected_3"]
    flat_path, nested_path, mixed_path = (tmp_path / f"{n}.weights" for n in "abc")
    dwf.save(flat_path, plan, arrays)
    dwf.save(nested_path, plan, nested)
    dwf.save(mixed_path, plan, mixed)
    assert flat_path.read_bytes()[20:] == expected_body(arrays)
    assert nested_path.read_bytes() == flat_path.read_bytes() == mixed_path.read_bytes()


def test_open_file_as_source(plan: dwf.Plan, tmp_path: Path) -> None:
    src = tmp_path / "a.weights"
    dwf.save(src, plan, make_arrays(2), header=dwf.Header(0, 1, 0, 99, 16))
    with dwf.open(src, plan) as f:
        dwf.save(tmp_path / "b.weights", plan, f, header=f.header)
    assert (tmp_path / "b.weights").read_bytes() == src.read_bytes()


# -- validation: nothing is written ------------------------------------------------------------


def test_missing_array(plan: dwf.Plan, target: Path) -> None:
    arrays = make_arrays()
    del arrays["conv_2.weights"]
    with pytest.raises(dwf.ArrayError) as info:
        dwf.save(target, plan, arrays)
    message = str(info.value)
    assert "conv_2" in message and "weights" in message
    assert "(4, 3, 1, 1)" in message
    assert_untouched(target)


def test_missing_array_in_nested_input(plan: dwf.Plan, target: Path) -> None:
    nested: dict[str, dict[str, Any]] = {}
    for key, value in make_arrays().items():
        layer, _, name = key.partition(".")
        nested.setdefault(layer, {})[name] = value
    del nested["conv_0"]["rolling_variance"]
    with pytest.raises(dwf.ArrayError) as info:
        dwf.save(target, plan, nested)
    assert "conv_0" in str(info.value) and "rolling_variance" in str(info.value)
    assert_untouched(target)


@pytest.mark.parametrize(
    "key", ["conv_1.weights", "maxpool_1.weights", "conv_0.weight", "conv_0", "nonsense"]
)
def test_unknown_name(plan: dwf.Plan, target: Path, key: str) -> None:
    arrays: dict[str, Any] = dict(make_arrays())
    arrays[key] = np.zeros(3, dtype=np.float32)
    with pytest.raises(dwf.ArrayError) as info:
        dwf.save(target, plan, arrays)
    assert key in str(info.value)
    assert_untouched(target)


def test_unknown_name_in_nested_input(plan: dwf.Plan, target: Path) -> None:
    arrays: dict[str, Any] = dict(make_arrays())
    arrays["conv_2"] = {"weights": arrays.pop("conv_2.weights"), "scales": np.ones(4)}
    with pytest.raises(dwf.ArrayError) as info:
        dwf.save(target, plan, arrays)
    assert "conv_2.scales" in str(info.value)
    assert_untouched(target)


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("conv_0.weights", np.zeros((3, 2, 3), dtype=np.float32)),
        ("conv_0.weights", np.zeros((2, 3, 3, 3), dtype=np.float32)),  # right size, wrong shape
        ("conv_2.weights", np.zeros(12, dtype=np.float32)),  # flat is not accepted either
        ("connected_3.weights", np.zeros((16, 2), dtype=np.float32)),  # transposed
        ("conv_0.biases", np.float32(1.0)),
    ],
)
def test_wrong_shape(plan: dwf.Plan, target: Path, key: str, bad: Any) -> None:
    arrays: dict[str, Any] = dict(make_arrays())
    arrays[key] = bad
    with pytest.raises(dwf.ArrayError) as info:
        dwf.save(target, plan, arrays)
    layer, _, name = key.partition(".")
    message = str(info.value)
    assert layer in message and name in message
    assert str(SHAPES[key]) in message
    assert str(np.shape(bad)) in message
    assert_untouched(target)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, object, "U3"])
def test_unstorable_dtype(plan: dwf.Plan, target: Path, dtype: Any) -> None:
    arrays: dict[str, Any] = dict(make_arrays())
    arrays["conv_0.scales"] = np.ones(3, dtype=dtype)
    with pytest.raises(dwf.ArrayError) as info:
        dwf.save(target, plan, arrays)
    message = str(info.value)
    assert "conv_0" in message and "scales" in message
    assert str(np.dtype(dtype)) in message
    assert_untouched(target)


@pytest.mark.parametrize(
    "header",
    [dwf.Header(0, 1, 0, 0, 20), dwf.Header(0, 2, 5, 0, 16), dwf.Header(0, 2, 0, 0, 16)],
)
def test_header_width_must_match_its_version(
    plan: dwf.Plan, target: Path, header: dwf.Header
) -> None:
    with pytest.raises(dwf.HeaderError) as info:
        dwf.save(target, plan, make_arrays(), header=header)
    assert header.version in str(info.value)
    assert f"{header.size}-byte" in str(info.value)
    assert_untouched(target)


def test_saving_to_a_directory(plan: dwf.Plan, tmp_path: Path) -> None:
    with pytest.raises(dwf.DwfError) as info:
        dwf.save(tmp_path, plan, make_arrays())
    assert "directory" in str(info.value)
    assert listing(tmp_path) == []


# -- atomicity ---------------------------------------------------------------------------------


def test_failed_rename_leaves_destination_and_no_temp_file(
    plan: dwf.Plan, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def broken_replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        seen.append(os.fspath(src))
        assert os.path.getsize(src) == 20 + 4 * TOTAL  # fully written before the rename
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(dwf.DwfError) as info:
        dwf.save(target, plan, make_arrays())
    assert not isinstance(info.value, OSError)
    assert str(target) in str(info.value)
    assert "cross-device" in str(info.value)
    assert len(seen) == 1 and seen[0].endswith(".tmp")
    assert Path(seen[0]).parent == target.parent
    assert_untouched(target)


def test_failure_after_the_header_is_written(
    plan: dwf.Plan, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = dwf.io.writer.stored_bytes
    calls: list[int] = []
    during: list[list[str]] = []

    def fail_on_third(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            during.append(sorted(p.name for p in target.parent.iterdir()))
            raise RuntimeError("conversion failed")
        return real(*args)

    monkeypatch.setattr(dwf.io.writer, "stored_bytes", fail_on_third)
    with pytest.raises(RuntimeError, match="conversion failed"):
        dwf.save(target, plan, make_arrays())
    assert len(calls) == 3
    # While writing, the new file has no name (O_TMPFILE) or a temporary one beside the target.
    (names,) = during
    assert target.name in names and all(n == target.name or n.endswith(".tmp") for n in names)
    assert_untouched(target)


def test_disk_full_is_a_dwf_error(
    plan: dwf.Plan, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(*args: Any) -> Any:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(dwf.io.writer, "stored_bytes", no_space)
    with pytest.raises(dwf.DwfError) as info:
        dwf.save(target, plan, make_arrays())
    assert str(target) in str(info.value)
    assert os.strerror(errno.ENOSPC) in str(info.value)
    assert_untouched(target)


def test_interrupt_during_write_cleans_up(
    plan: dwf.Plan, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(dwf.io.writer, "stored_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dwf.save(target, plan, make_arrays())
    assert_untouched(target)


def test_saving_over_an_open_file(plan: dwf.Plan, tmp_path: Path) -> None:
    path = tmp_path / "live.weights"
    old, new = make_arrays(3), make_arrays(4)
    dwf.save(path, plan, old)
    old_raw = path.read_bytes()
    with dwf.open(path, plan) as f:
        before = f["conv_0"].weights
        assert before is not None
        dwf.save(path, plan, new)  # replaces the path; the open file keeps the old inode
        after = f["conv_0"].weights  # a view handed out after the save
        assert after is not None
        np.testing.assert_array_equal(before, old["conv_0.weights"])
        np.testing.assert_array_equal(after, old["conv_0.weights"])
        for key, value in old.items():
            layer, _, name = key.partition(".")
            np.testing.assert_array_equal(f[layer][name], value)
        with dwf.open(path, plan) as g:
            for key, value in new.items():
                layer, _, name = key.partition(".")
                np.testing.assert_array_equal(g[layer][name], value)
    assert path.read_bytes()[20:] == expected_body(new)
    assert path.read_bytes() != old_raw
    assert listing(tmp_path) == ["live.weights"]


# -- file modes --------------------------------------------------------------------------------


@pytest.fixture
def umask() -> Iterator[int]:
    old = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(old)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_new_file_mode_respects_umask(plan: dwf.Plan, tmp_path: Path, umask: int) -> None:
    path = tmp_path / "new.weights"
    dwf.save(path, plan, make_arrays())
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask == 0o640
    assert os.umask(umask) == umask  # save restored the process umask


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_replaced_file_keeps_its_mode(plan: dwf.Plan, target: Path, umask: int) -> None:
    target.chmod(0o604)
    dwf.save(target, plan, make_arrays())
    assert stat.S_IMODE(target.stat().st_mode) == 0o604
    assert target.stat().st_size == 20 + 4 * TOTAL


# -- several files: all or none ---------------------------------------------------------------
def _two(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "out.weights", tmp_path / "out.cfg"
    a.write_bytes(b"old weights")
    b.write_bytes(b"old cfg")
    return a, b


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".dwf-"))


def test_atomic_writes_publishes_every_file_together(tmp_path: Path) -> None:
    from dwf.io.writer import atomic_writes

    a, b = _two(tmp_path)
    with atomic_writes([a, b]) as (fa, fb):
        fa.write(b"new weights")
        fb.write(b"new cfg")
        assert a.read_bytes() == b"old weights" and b.read_bytes() == b"old cfg"
    assert (a.read_bytes(), b.read_bytes()) == (b"new weights", b"new cfg")
    assert not _leftovers(tmp_path)


def test_atomic_writes_publishes_nothing_when_the_block_fails(tmp_path: Path) -> None:
    from dwf.io.writer import atomic_writes

    a, b = _two(tmp_path)
    with pytest.raises(RuntimeError), atomic_writes([a, b]) as (fa, _):
        fa.write(b"new weights")
        raise RuntimeError("the second output could not be made")
    assert (a.read_bytes(), b.read_bytes()) == (b"old weights", b"old cfg")
    assert not _leftovers(tmp_path)


def test_a_full_disk_at_the_last_flush_touches_no_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reliability III #3: fuse's weights were renamed into place before its cfg's final flush
    failed with ENOSPC. A failing fsync stands in for the full disk (no real one here)."""
    import errno

    from dwf.io import writer

    a, b = _two(tmp_path)
    calls = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(writer.os, "fsync", fsync)
    with pytest.raises(dwf.DwfError, match="No space left"), writer.atomic_writes([a, b]) as fhs:
        for fh in fhs:
            fh.write(b"new")
    assert (a.read_bytes(), b.read_bytes()) == (b"old weights", b"old cfg")
    assert not _leftovers(tmp_path)


def test_a_failed_rename_puts_the_first_file_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dwf.io import writer

    a, b = _two(tmp_path)
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        if os.fspath(dst) == os.fspath(b):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(writer.os, "replace", replace)
    with pytest.raises(dwf.DwfError), writer.atomic_writes([a, b]) as fhs:
        for fh in fhs:
            fh.write(b"new")
    monkeypatch.setattr(writer.os, "replace", real_replace)
    assert (a.read_bytes(), b.read_bytes()) == (b"old weights", b"old cfg")
    assert not _leftovers(tmp_path)


def test_atomic_writes_refuses_two_names_for_one_file(tmp_path: Path) -> None:
    from dwf.io.writer import atomic_writes

    a, _ = _two(tmp_path)
    with pytest.raises(dwf.DwfError, match="both outputs"), atomic_writes([a, a]):
        pass
