"""Whole-file work streams through bounded buffers, never through the map (issue 11).

* A file truncated while check, stats, diff, export, fuse or cut run gives FileChangedError
  (exit 2), never SIGBUS: the truncation is made from inside the child process, right after the
  k-th ``os.fstat`` of the work (the change check every read starts with), so it lands between
  the check and the read that follows it — for every k, deterministically.
* Peak memory of ``dwf stats``/``dwf export`` on a 256 MiB sparse file stays far below the
  file's size (ru_maxrss of the child).
* ``backend="pread"`` keeps its promise for state dicts: nothing in them is mapped memory.
* The safetensors export is read back by the ``safetensors`` package itself.
"""

from __future__ import annotations

import mmap
import os
import resource
import signal
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from small_net import CFG, random_arrays, write_model

import dwf
from dwf.format.header import Header

ROOT = Path(dwf.__file__).resolve().parents[1]
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file semantics")



_arrays = random_arrays


@pytest.fixture
def model(tmp_path: Path) -> tuple[Path, Path]:
    """A ~760 KiB weights file (its connected layer far past the first page) and its cfg."""
    return write_model(tmp_path)


# -- truncation while the work runs --------------------------------------------------------------
# The child counts the change checks of the open file (os.fstat called by
# WeightsFile._check_unchanged) and truncates the file to 100 bytes right after the k-th returns
# (k = 0: count only, print the total): the truncation lands between a check and the next read.
TRUNCATE_AT_FSTAT = r"""
import os, sys
path, k, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
from dwf.interfaces.cli import main
seen = 0
def hook(frame, event, arg):
    global seen
    if event == "c_return" and arg is os.fstat and frame.f_code.co_name == "_check_unchanged":
        seen += 1
        if seen == k:
            os.truncate(path, 100)
sys.setprofile(hook)
code = main(argv)
sys.setprofile(None)
print("FSTATS", seen, flush=True)
sys.exit(code)
"""


def _run_child(path: Path, k: int, argv: list[str]) -> subprocess.CompletedProcess[str]:
    def no_core() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONFAULTHANDLER", None)
    return subprocess.run(
        [sys.executable, "-c", TRUNCATE_AT_FSTAT, str(path), str(k), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        preexec_fn=no_core,
        check=False,
    )


COMMANDS = {
    "check": lambda w, c, o: ["check", str(w), "--cfg", str(c)],
    "stats": lambda w, c, o: ["stats", str(w), "--cfg", str(c)],
    "diff": lambda w, c, o: ["diff", str(w), str(o / "copy.weights"), "--cfg", str(c)],
    "export-npz": lambda w, c, o: [
        "export", str(w), str(o / "out.npz"), "--format", "npz", "--cfg", str(c),
    ],
    "export-safetensors": lambda w, c, o: [
        "export", str(w), str(o / "out.safetensors"), "--format", "safetensors", "--cfg", str(c),
    ],
    "fuse": lambda w, c, o: [
        "fuse", str(w), str(o / "f.weights"), str(o / "f.cfg"), "--cfg", str(c),
    ],
    "cut": lambda w, c, o: ["cut", str(w), str(o / "cut.weights"), "5", "--cfg", str(c)],
}


@pytest.mark.slow  # a child process per command (~1.5 s each)
@posix_only
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_truncated_while_running_gives_file_changed_not_sigbus(
    model: tuple[Path, Path], tmp_path: Path, command: str
) -> None:
    if command == "export-safetensors":
        pytest.importorskip("safetensors")
    weights, cfg = model
    pristine = weights.read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    (out / "copy.weights").write_bytes(pristine)
    argv = COMMANDS[command](weights, cfg, out)
    counted = _run_child(weights, 0, argv)
    assert counted.returncode in (0, 1), counted.stdout + counted.stderr
    total = int(counted.stdout.rsplit("FSTATS", 1)[1].split()[0])
    assert total >= 1
    changed = 0
    # a few points spread over the run, the last check included (its read follows it at once)
    for k in sorted({1, total // 3, 2 * total // 3, total - 1, total} - {0}):
        weights.write_bytes(pristine)
        run = _run_child(weights, k, argv)
        assert run.returncode != -signal.SIGBUS, f"k={k}: killed by SIGBUS\n{run.stderr[-2000:]}"
        # Either the work finished before the truncation could matter, or it stopped cleanly.
        assert run.returncode in (0, 1, 2), f"k={k}: exit {run.returncode}\n{run.stderr[-2000:]}"
        if run.returncode == 2:
            assert "changed" in run.stderr or "shrank" in run.stderr, run.stderr
            assert len(run.stderr.strip().splitlines()) == 1, run.stderr
            changed += 1
    assert changed, "no truncation was ever noticed: the test did not exercise anything"


# -- peak memory ----------------------------------------------------------------------------------
BIG_CONV = "[convolutional]\nfilters=1024\nsize=3\npad=1\nbatch_normalize=1\nactivation=leaky\n"
BIG_CFG = "[net]\nwidth=64\nheight=64\nchannels=1024\n\n" + "\n".join([BIG_CONV] * 7)

# The child's own peak: VmHWM of its address space. (ru_maxrss will not do: on Linux a child
# inherits, through fork and exec, the peak of the parent — here pytest, hundreds of MiB late in
# a run.)
MAXRSS_CHILD = r"""
import resource, sys
from dwf.interfaces.cli import main
code = main(sys.argv[1:])
try:
    with open("/proc/self/status") as fh:
        kib = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
except OSError:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("MAXRSS_KIB", kib, flush=True)
sys.exit(code)
"""
# Python + numpy + dwf take ~40 MiB; bounded buffers add a few MiB. The file is 252 MiB: code
# that reads through the map (or builds the export in memory) passes it by far.
RSS_BOUND_MIB = 150


@pytest.fixture
def sparse_big(tmp_path: Path) -> tuple[Path, Path]:
    """A 252 MiB sparse weights file (7 conv layers of 1024×1024×3×3): no disk is used."""
    cfg = tmp_path / "big.cfg"
    cfg.write_text(BIG_CFG)
    plan = dwf.plan(cfg)
    weights = tmp_path / "big.weights"
    with open(weights, "wb") as fh:
        fh.write(Header(0, 2, 5, 0, 20).encode())
    os.truncate(weights, plan.expected_size(20))
    # Real-looking variances somewhere, so fuse computes finite numbers (the rest stays sparse).
    return weights, cfg


@pytest.mark.slow
@posix_only
@pytest.mark.parametrize("command", ["stats", "check", "export-npz", "export-safetensors"])
def test_peak_memory_does_not_grow_with_the_file(
    sparse_big: tuple[Path, Path], tmp_path: Path, command: str
) -> None:
    if command == "export-safetensors":
        pytest.importorskip("safetensors")
    weights, cfg = sparse_big
    argv = {
        "stats": ["stats", str(weights), "--cfg", str(cfg)],
        "check": ["check", str(weights), "--cfg", str(cfg)],
        "export-npz": ["export", str(weights), str(tmp_path / "o.npz"), "--format", "npz",
                       "--cfg", str(cfg)],
        "export-safetensors": ["export", str(weights), str(tmp_path / "o.safetensors"),
                               "--format", "safetensors", "--cfg", str(cfg)],
    }[command]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", MAXRSS_CHILD, *argv],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )
    assert run.returncode in (0, 1), run.stderr[-2000:]
    kib = int(run.stdout.rsplit("MAXRSS_KIB", 1)[1].split()[0])
    assert weights.stat().st_size > 250 * 2**20
    assert kib / 1024 < RSS_BOUND_MIB, f"{command}: peak RSS {kib / 1024:.0f} MiB"


# -- pread keeps its promise for state dicts ------------------------------------------------------
def _mapped(a: np.ndarray[Any, Any]) -> bool:
    """Whether ``a``'s memory comes, through its base chain, from an mmap."""
    obj: Any = a
    while obj is not None:
        if isinstance(obj, mmap.mmap):
            return True
        if isinstance(obj, memoryview):
            obj = obj.obj
            continue
        obj = getattr(obj, "base", None)
    return False


@pytest.fixture
def fake_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch is too heavy to install here; a stand-in whose ``from_numpy`` is the identity lets
    the state dict's arrays be inspected (only the memory they live in is under test)."""
    if "torch" in sys.modules:
        return
    mod = types.ModuleType("torch")
    mod.from_numpy = lambda a: a  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", mod)


@pytest.mark.parametrize("copy", [False, True])
def test_state_dict_of_a_pread_file_holds_no_mapped_memory(
    model: tuple[Path, Path], fake_torch: None, copy: bool
) -> None:
    from dwf.tools.export import to_state_dict

    weights, cfg = model
    with dwf.open(weights, cfg, backend="pread") as f:
        state = to_state_dict(f, copy=copy)
        expected = {n: np.array(v) for n, v in f.arrays()}
    assert state
    for key, t in state.items():
        arr = t if isinstance(t, np.ndarray) else t.numpy()
        assert not _mapped(arr), f"{key} is mapped memory"
    assert sum(int(np.asarray(t).size) for t in state.values()) == sum(
        v.size for v in expected.values()
    )


def test_state_dict_copy_true_of_an_mmap_file_is_owned(
    model: tuple[Path, Path], fake_torch: None
) -> None:
    from dwf.tools.export import to_state_dict

    weights, cfg = model
    with dwf.open(weights, cfg) as f:
        state = to_state_dict(f, copy=True)
        for lp in f.stored:
            for a in lp.arrays:
                assert a.name  # the names are the torch ones; the values must match
        assert not any(_mapped(np.asarray(t)) for t in state.values())
        w = f["conv_2"].weights
        assert w is not None
        np.testing.assert_array_equal(np.asarray(state["conv_2.bn.weight"]), f["conv_2"].scales)
        np.testing.assert_array_equal(np.asarray(state["conv_2.weight"]), w)


# -- safetensors read back by the safetensors package ---------------------------------------------
def test_safetensors_export_read_back_by_the_package(
    model: tuple[Path, Path], tmp_path: Path
) -> None:
    safetensors = pytest.importorskip("safetensors")
    weights, cfg = model
    out = tmp_path / "net.safetensors"
    dwf.export(weights, out, cfg=cfg)
    with dwf.open(weights, cfg) as f, safetensors.safe_open(str(out), framework="np") as st:
        meta = st.metadata()
        assert meta["format"] == "dwf"
        assert meta["header"] == f.header.version
        assert meta["seen"] == str(f.header.seen)
        assert meta["header_size"] == str(f.header.size)
        assert meta["dialect"] == f.plan.dialect
        assert meta["cfg_name"] == "net.cfg"
        assert meta["cfg"] == f.plan.text
        names = [n for n, _ in f.arrays()]
        assert sorted(st.keys()) == sorted(names)
        for name, view in f.arrays():
            got = st.get_tensor(name)
            assert got.dtype == np.float32 and got.shape == view.shape, name
            np.testing.assert_array_equal(got, view)
    back = tmp_path / "back.weights"
    dwf.import_weights(out, back)
    assert back.read_bytes() == weights.read_bytes()


def test_npz_export_streams_and_round_trips(model: tuple[Path, Path], tmp_path: Path) -> None:
    weights, cfg = model
    out = tmp_path / "net.npz"
    dwf.export(weights, out, cfg=cfg)
    with dwf.open(weights, cfg) as f, np.load(out, allow_pickle=False) as z:
        for name, view in f.arrays():
            np.testing.assert_array_equal(z[name], view)
            assert z[name].shape == view.shape
    back = tmp_path / "back.weights"
    dwf.import_weights(out, back)
    assert back.read_bytes() == weights.read_bytes()


# -- the streaming reads themselves ---------------------------------------------------------------
LEGACY = Header(0, 1001, 0, 5, 16)  # a legacy header: connected weights stored transposed


@pytest.fixture(params=["current", "legacy"])
def layouts(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    """The model with a current header, or with a legacy one (its connected weights, like the
    flipped conv's, are then stored transposed)."""
    cfg = tmp_path / "net.cfg"
    cfg.write_text(CFG)
    weights = tmp_path / "net.weights"
    plan = dwf.plan(cfg)
    arrays = _arrays(plan, seed=5)
    arrays["conv_0.weights"][3] = 0.0  # a dead filter, and one in the flipped conv
    arrays["conv_2.weights"][7] = 0.0
    arrays["connected_4.weights"][2] = 0.0
    header = LEGACY if request.param == "legacy" else Header(0, 2, 5, 1234, 20)
    dwf.save(weights, plan, arrays, header=header)
    return weights, cfg


@pytest.mark.slow  # every chunk size down to one float (~1 s each)
@pytest.mark.parametrize("max_floats", [1, 7, 100, 4096, 1 << 20])
def test_chunks_in_logical_and_storage_order(
    layouts: tuple[Path, Path], max_floats: int
) -> None:
    weights, cfg = layouts
    with dwf.open(weights, cfg) as f:
        transposed = 0
        for lp in f.stored:
            for a in lp.arrays:
                view = np.asarray(f[lp.index][a.name])
                logical = [c.copy() for c in f.iter_logical_chunks(a, max_floats)]
                assert all(not c.flags.writeable for c in f.iter_array_chunks(a, max_floats))
                np.testing.assert_array_equal(np.concatenate(logical), view.reshape(-1))
                stored = np.concatenate([c.copy() for c in f.iter_array_chunks(a, max_floats)])
                if a.stored_transposed(f.header.connected_transposed):
                    transposed += 1
                    np.testing.assert_array_equal(stored, view.reshape(view.shape[0], -1).T.ravel())
                else:
                    np.testing.assert_array_equal(stored, view.reshape(-1))
                    assert max(c.size for c in f.iter_array_chunks(a, max_floats)) <= max_floats
                owned = f.read_array(a)
                assert owned.flags.writeable and owned.flags.c_contiguous
                np.testing.assert_array_equal(owned, view)
        assert transposed == (2 if f.header.connected_transposed else 1)


@pytest.mark.slow  # every array streamed and viewed (~1.4 s each)
def test_streamed_stats_and_zero_rows_equal_those_of_the_views(layouts: tuple[Path, Path]) -> None:
    from dwf.tools.stats import array_stats, file_array_stats, file_zero_rows, zero_rows

    weights, cfg = layouts
    with dwf.open(weights, cfg) as f:
        for lp in f.stored:
            for a in lp.arrays:
                view = f[lp.index][a.name]
                for chunk in (5, 1000, 1 << 16):
                    assert file_array_stats(f, a, chunk=chunk) == array_stats(view, chunk=chunk)
                    assert file_zero_rows(f, a, chunk) == zero_rows(view, chunk)
        assert file_zero_rows(f, f.plan.layer("conv_2").array("weights"), 5) == 1  # type: ignore[arg-type]
        assert file_zero_rows(f, f.plan.layer("connected_4").array("weights"), 5) == 1  # type: ignore[arg-type]


def test_diff_across_storage_layouts(tmp_path: Path) -> None:
    """The same values in a legacy file (connected weights transposed) and a current one are
    identical to diff, and a change in one connected weight is found in the right place."""
    cfg = tmp_path / "net.cfg"
    cfg.write_text(CFG)
    plan = dwf.plan(cfg)
    arrays = _arrays(plan, seed=9)
    dwf.save(tmp_path / "old.weights", plan, arrays, header=LEGACY)
    dwf.save(tmp_path / "new.weights", plan, arrays, header=Header(0, 2, 5, 5, 20))
    report = dwf.diff(tmp_path / "old.weights", tmp_path / "new.weights", cfg=cfg, chunk=100)
    assert report.identical and report.arrays
    arrays["connected_4.weights"][3, 5] += 0.5
    dwf.save(tmp_path / "new.weights", plan, arrays, header=Header(0, 2, 5, 5, 20))
    report = dwf.diff(tmp_path / "old.weights", tmp_path / "new.weights", cfg=cfg, chunk=100)
    assert [f"{d.layer}.{d.array}" for d in report.changed] == ["connected_4.weights"]
    assert report.changed[0].max_abs == pytest.approx(0.5, rel=1e-6)


@pytest.mark.parametrize("stream_floats", [3, 1 << 20])
def test_streamed_fuse_equals_fuse_layer(
    layouts: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream_floats: int
) -> None:
    import dwf.tools.fuse as fuse_mod

    monkeypatch.setattr(fuse_mod, "STREAM_FLOATS", stream_floats)
    weights, cfg = layouts
    out, out_cfg = tmp_path / "fused.weights", tmp_path / "fused.cfg"
    dwf.fuse(weights, out, out_cfg, cfg=cfg)
    with dwf.open(weights, cfg) as f, dwf.open(out, out_cfg) as g:
        for lp in f.stored:
            if lp.type in ("convolutional", "connected"):
                w, b = fuse_mod.fuse_layer(f, lp.index)
                np.testing.assert_array_equal(g[lp.index].weights, w)
                np.testing.assert_array_equal(g[lp.index].biases, b)
            else:
                for name, view in f[lp.index].arrays.items():
                    np.testing.assert_array_equal(g[lp.index][name], view)


@pytest.mark.parametrize("kernel", [True, False])
@pytest.mark.parametrize("upto", [0, 1, 3, 5])
def test_cut_copies_the_same_bytes_as_save(
    layouts: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel: bool,
    upto: int,
) -> None:
    """``cut`` copies in the kernel (or, refused, through a buffer) exactly what
    ``f.save(upto=)`` writes — relaid out when the header changes the connected layout."""
    import errno as errno_mod

    if not kernel:
        def refuse(*args: Any) -> int:
            raise OSError(errno_mod.EXDEV, "cross-device")

        monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    weights, cfg = layouts
    dwf.cut(weights, tmp_path / "cut.weights", upto, cfg=cfg)
    with dwf.open(weights, cfg) as f:
        f.save(tmp_path / "saved.weights", upto=upto)
    assert (tmp_path / "cut.weights").read_bytes() == (tmp_path / "saved.weights").read_bytes()


def test_npz_compressed_export_round_trips(model: tuple[Path, Path], tmp_path: Path) -> None:
    weights, cfg = model
    out = tmp_path / "net.npz"
    dwf.export(weights, out, cfg=cfg, compress=True)
    back = tmp_path / "back.weights"
    dwf.import_weights(out, back)
    assert back.read_bytes() == weights.read_bytes()


def test_diff_measures_match_float64_references(tmp_path: Path) -> None:
    """The float32 blocked dots of diff agree with float64 numpy to ~1e-6, and the exact cases
    stay exact: b = -a gives rel_l2 2 and cosine -1."""
    from dwf.tools.diff import _array_diff

    rng = np.random.default_rng(11)
    a = (rng.standard_normal(300_001) * 0.05).astype(np.float32)
    for b in (
        (a * (1 + 1e-3 * rng.standard_normal(a.size))).astype(np.float32),
        rng.standard_normal(a.size).astype(np.float32),
        (a + np.float32(3.0)).astype(np.float32),
    ):
        same, max_abs, rel, cos = _array_diff(a, b, 1 << 16)
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        assert not same
        assert max_abs == pytest.approx(np.abs(b64 - a64).max(), rel=1e-6)
        assert rel == pytest.approx(np.linalg.norm(b64 - a64) / np.linalg.norm(a64), rel=1e-5)
        ref_cos = a64 @ b64 / np.sqrt((a64 @ a64) * (b64 @ b64))
        assert cos == pytest.approx(ref_cos, rel=1e-5, abs=1e-6)
    same, max_abs, rel, cos = _array_diff(a, -a, 1 << 16)
    assert (same, rel, cos) == (False, 2.0, -1.0)
    assert _array_diff(a, a.copy(), 1 << 16)[:3] == (True, 0.0, 0.0)
