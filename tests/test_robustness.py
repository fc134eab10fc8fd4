"""Hazards beyond bad input: files that change while open, writes that fail, the input file left
untouched, errors crossing processes, threads, byte order and Windows line endings.

Each test fails if the protection it covers is removed; the one that shows *why* a protection
matters (a view of a truncated map kills the process with SIGBUS) is marked DEMONSTRATION.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from small_net import CFG, random_arrays, write_model

import dwf
import dwf.io.writer
import dwf.tools.fuse
from dwf.format.header import Header
from dwf.interfaces.cli import main as cli
from dwf.io.reader import WeightsFile
from dwf.io.source import LocalSource
from dwf.tools.demo import demo_cfg_text

BIG_LAYER = "connected_4"  # its data lies hundreds of KiB into the file, far past the first page
BACKENDS = ["mmap", "pread"]
# Truncating a mapped file, SIGBUS and fork are POSIX matters (Windows refuses the truncation).
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file semantics")
ROOT = Path(dwf.__file__).resolve().parents[1]


_arrays = random_arrays


@pytest.fixture
def model(tmp_path: Path) -> tuple[Path, Path]:
    """A ~760 KiB weights file and its cfg, side by side."""
    weights, cfg = write_model(tmp_path)
    assert weights.stat().st_size > 512 * 1024
    return weights, cfg


def _child(script: str, *args: str) -> subprocess.Popen[str]:
    """A Python subprocess running ``script`` (no core dumps, dwf importable)."""

    def no_core() -> None:
        import resource  # POSIX only, like these tests

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONFAULTHANDLER", None)  # the signal should kill the child plainly
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=no_core,
    )


def _truncate_under(
    proc: subprocess.Popen[str], path: Path, size: int, delay: float = 0.0
) -> tuple[int, str, str]:
    """Wait for the child's "ready", truncate ``path`` from this process (after ``delay``
    seconds), then tell the child to go on."""
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", line + (proc.stderr.read() if proc.stderr else "")
    time.sleep(delay)
    os.truncate(path, size)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


# -- files that change while open ------------------------------------------------------------------
TOUCH_AFTER_TRUNCATION = """
import sys, numpy as np, dwf
f = dwf.open(sys.argv[1], sys.argv[2], backend=sys.argv[3])
layer = f[sys.argv[4]]             # the layer is looked up; no view is handed out yet
print("ready", flush=True)
sys.stdin.readline()               # meanwhile the parent truncates the file
try:
    view = layer.weights
    print("read", float(np.sum(view, dtype=np.float64)), flush=True)
    sys.exit(3)
except dwf.FileChangedError as e:
    print("FileChangedError:", e, flush=True)
    sys.exit(0)
"""


@posix_only
@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_while_open_raises_file_changed_not_sigbus(
    model: tuple[Path, Path], backend: str
) -> None:
    weights, cfg = model
    proc = _child(TOUCH_AFTER_TRUNCATION, str(weights), str(cfg), backend, BIG_LAYER)
    code, out, err = _truncate_under(proc, weights, 100)
    assert code != -signal.SIGBUS, "the reader was killed by SIGBUS"
    assert code == 0, f"exit {code}\n{out}\n{err}"
    assert "FileChangedError" in out and "size went from" in out, out


DEMONSTRATE_SIGBUS = """
import sys, numpy as np, dwf
f = dwf.open(sys.argv[1], sys.argv[2])
spec = f[sys.argv[3]].plan.array("weights")
# a plain read-only map of the same bytes, as numpy.memmap (or mmap.mmap) makes it
view = np.memmap(sys.argv[1], dtype="<f4", mode="r", offset=f.header.size + 4 * spec.offset,
                 shape=(spec.count,))
print("ready", flush=True)
sys.stdin.readline()               # meanwhile the parent truncates the file
print("sum", float(np.sum(view, dtype=np.float64)), flush=True)  # touches the vanished pages
sys.exit(0)
"""


@posix_only
def test_DEMONSTRATION_a_plain_map_of_a_truncated_file_dies_with_sigbus(
    model: tuple[Path, Path],
) -> None:
    """DEMONSTRATION of why dwf guards its maps (tests/test_live.py shows that it does).

    A plain memory map of the file, taken while the file was intact: touching its pages after
    another process truncated the file kills the process with SIGBUS — no exception, no
    cleanup, a dead notebook kernel. This is what a view of dwf's map did before the map was
    guarded by a lease (issue 20).
    """
    weights, cfg = model
    proc = _child(DEMONSTRATE_SIGBUS, str(weights), str(cfg), BIG_LAYER)
    code, out, err = _truncate_under(proc, weights, 100)
    assert code == -signal.SIGBUS, f"expected death by SIGBUS, got exit {code}\n{out}\n{err}"
    assert "sum" not in out


PREAD_UNDER_A_WRITER = """
import sys, random, numpy as np, dwf
f = dwf.open(sys.argv[1], sys.argv[2], backend="pread")
names = [n for n in f.keys()]
expected = {
    (n, a): float(np.sum(v, dtype=np.float64)) for n in names for a, v in f[n].arrays.items()
}
layers = {n: f[n] for n in names}
print("ready", flush=True)         # and read on at once: the truncation comes mid-loop
ok = changed = 0
rng = random.Random(0)
for i in range(50000):
    if changed >= 50:
        break
    n = rng.choice(names)
    try:
        arrays = layers[n].arrays
    except dwf.FileChangedError:
        changed += 1
        continue
    for a, v in arrays.items():
        if float(np.sum(v, dtype=np.float64)) != expected[(n, a)]:
            print("WRONG DATA", n, a, flush=True)
            sys.exit(4)
    ok += 1
print("ok", ok, "changed", changed, flush=True)
"""


@posix_only
def test_pread_backend_under_truncation_gives_right_data_or_file_changed(
    model: tuple[Path, Path],
) -> None:
    """With ``backend="pread"`` every access gives the file's data or FileChangedError; the
    process never faults, however the truncation interleaves with the reads."""
    weights, cfg = model
    proc = _child(PREAD_UNDER_A_WRITER, str(weights), str(cfg))
    code, out, err = _truncate_under(proc, weights, 4096, delay=0.2)
    assert code == 0, f"exit {code}\n{out}\n{err}"
    assert "WRONG DATA" not in out, out
    counts = dict(zip(out.split()[0::2], (int(x) for x in out.split()[1::2]), strict=True))
    assert counts["changed"] > 0, out


@posix_only
def test_pread_short_read_raises_file_changed(
    model: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the check cannot close: the file shrinks between the check and the read. With
    pread that is a short read, reported as FileChangedError (the map would fault instead)."""
    weights, cfg = model
    f = dwf.open(weights, cfg, backend="pread")
    layer = f[BIG_LAYER]
    os.truncate(weights, 4096)
    monkeypatch.setattr(LocalSource, "_check_unchanged", lambda self: None)  # lose the race
    with pytest.raises(dwf.FileChangedError, match="short read"):
        layer.weights  # noqa: B018
    f.close()


def test_copy_true_is_the_pread_backend(model: tuple[Path, Path]) -> None:
    weights, cfg = model
    with dwf.open(weights, cfg, copy=True) as f:
        assert f.backend == "pread"
        root = _root(f[BIG_LAYER].weights)  # memory of its own, not the map
        assert isinstance(root, np.ndarray) and root.flags.owndata
    with dwf.open(weights, cfg) as f:
        root = _root(f[BIG_LAYER].weights)
        if f.view_mode.startswith("zero-copy"):  # the guarded map (Linux, a local file)
            from dwf.io.guard import GuardedMap

            assert isinstance(root, GuardedMap)
        else:  # owned copies (another platform, a network file system)
            assert isinstance(root, np.ndarray) and root.flags.owndata, f.view_mode


def _root(a: Any) -> Any:
    """The object at the bottom of a view's chain of bases."""
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return a


def test_rewritten_in_place_same_size_is_detected(model: tuple[Path, Path]) -> None:
    """Darknet's ``fopen(..., "wb")`` rewrites ``*_last.weights`` in the same inode; a rewrite
    that keeps the size still changes the modification time."""
    weights, cfg = model
    f = dwf.open(weights, cfg)
    st = weights.stat()
    with open(weights, "r+b") as fh:
        fh.seek(st.st_size - 4)
        fh.write(b"\0\0\0\0")
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(dwf.FileChangedError, match="modification time"):
        f[BIG_LAYER].weights  # noqa: B018
    f.close()


def test_renamed_over_is_not_a_change(model: tuple[Path, Path]) -> None:
    """A new file renamed over the path (how dwf itself, and most tools, save) is *not* a change
    of the file we opened, and that is right: we hold a descriptor of the old inode, whose data
    the kernel keeps until we close it, so our map and the views stay valid and show exactly
    the file we opened. ``check_unchanged`` asks ``fstat`` about that descriptor, not ``stat``
    about the path, so it neither raises needlessly nor lets a rewrite in place through."""
    weights, cfg = model
    with dwf.open(weights, cfg) as f:
        before = np.array(f[BIG_LAYER].weights)
        other = weights.with_name("new.weights")
        plan = dwf.plan(cfg)
        dwf.save(other, plan, _arrays(plan, seed=7))
        os.replace(other, weights)
        f.check_unchanged()
        assert np.array_equal(f[BIG_LAYER]["weights"], before)
    with dwf.open(weights, cfg) as g:  # a new open sees the new file
        assert not np.array_equal(g[BIG_LAYER]["weights"], before)


def test_saving_over_the_open_file_is_refused_and_keeps_it_readable(
    model: tuple[Path, Path],
) -> None:
    weights, cfg = model
    raw = weights.read_bytes()
    with dwf.open(weights, cfg) as f:
        before = {n: np.array(v) for n, v in f.arrays()}
        with pytest.raises(dwf.DwfError, match="input"):
            f.save(weights, header=Header(0, 2, 5, 0, 20))
        f.check_unchanged()
        assert all(np.array_equal(v, before[n]) for n, v in f.arrays())
    assert weights.read_bytes() == raw


@posix_only
@pytest.mark.parametrize("backend", BACKENDS)
def test_file_shrinking_while_being_opened(model: tuple[Path, Path], backend: str) -> None:
    """Regression: a file that shrank between the size check and the map raised ValueError
    from numpy, and the descriptor's finalizer was already registered, so the caller's close
    and the finalizer would both close it (maybe someone else's by then). With pread nothing is
    mapped: only the size check catches it there. The descriptor belongs to the source from the
    start, and is closed once, however often the source is closed or collected."""
    weights, cfg = model
    plan = dwf.plan(cfg)
    source = LocalSource.open(str(weights))
    os.truncate(weights, 4096)
    with pytest.raises(dwf.FileChangedError, match="changed while it was being opened"):
        WeightsFile(
            plan,
            Header(),
            source,
            partial=False,
            mismatch=None,
            backend=backend,  # type: ignore[arg-type]
        )
    source.close()
    source.close()
    other = os.open(weights, os.O_RDONLY)  # the number just freed, most likely
    try:
        del source
        gc.collect()
        os.fstat(other)  # not closed a second time under its old owner's name
    finally:
        os.close(other)


# -- views are read-only ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_views_are_read_only(model: tuple[Path, Path], backend: str) -> None:
    weights, cfg = model
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    with dwf.open(weights, cfg, backend=backend) as f:  # type: ignore[arg-type]
        n = 0
        for name, view in f.arrays():
            assert not view.flags.writeable, name
            with pytest.raises(ValueError, match="read-only"):
                view[(0,) * view.ndim] = 1.0
            with pytest.raises(ValueError):
                view.setflags(write=True)
            n += 1
        assert n == sum(len(lp.arrays) for lp in f.plan.layers)
        # flipped=1 arrays are transposed views; they are read-only too
        assert f["conv_2"].plan.array("weights").storage == "transposed"  # type: ignore[union-attr]
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == digest


# -- the input file is never touched ---------------------------------------------------------------
def _fingerprint(path: Path) -> tuple[str, int, int, int]:
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_size, st.st_mtime_ns, st.st_ino


Operation = tuple[str, Callable[[], object]]


def _every_operation(weights: Path, cfg: Path, out: Path) -> Iterator[Operation]:
    w, c = str(weights), str(cfg)

    def read_all(backend: str) -> None:
        with dwf.open(weights, cfg, backend=backend) as f:  # type: ignore[arg-type]
            for _, v in f.arrays():
                float(np.sum(v, dtype=np.float64))
            f.check()
            f.fused()
            for name in f:
                f[name].stats()

    def save_other() -> None:
        with dwf.open(weights, cfg) as f:
            f.save(out / "copy.weights")
            f.save(out / "cut.weights", upto=3, header=Header(0, 2, 5, 0, 20))

    def save_from_open() -> None:
        with dwf.open(weights, cfg) as f:
            dwf.save(out / "s.weights", f.plan, f, header=f.header)

    yield "open/read mmap", lambda: read_all("mmap")
    yield "open/read pread", lambda: read_all("pread")
    yield "save to another path", save_other
    yield "dwf.save from an open file", save_from_open
    yield "dwf info", lambda: cli(["info", w, "--cfg", c])
    yield "dwf info --json", lambda: cli(["info", w, "--cfg", c, "--json"])
    yield "dwf stats", lambda: cli(["stats", w, "--cfg", c])
    yield "dwf check", lambda: cli(["check", w, "--cfg", c])
    yield "dwf identify", lambda: cli(["identify", w])
    yield "dwf diff", lambda: cli(["diff", w, w, "--cfg", c])
    yield "dwf cut", lambda: cli(["cut", w, "--cfg", c, str(out / "part.weights"), "2"])
    npz, fused, fused_cfg = str(out / "x.npz"), str(out / "f.weights"), str(out / "f.cfg")
    yield "dwf export npz", lambda: cli(["export", w, "--cfg", c, "--format", "npz", npz])
    yield "dwf fuse", lambda: cli(["fuse", w, "--cfg", c, fused, fused_cfg])
    yield "dwf import", lambda: cli(["import", str(out / "x.npz"), str(out / "back.weights")])
    yield "identify", lambda: dwf.identify(weights)


def test_input_bytes_and_mtime_unchanged_by_every_operation(
    model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights, cfg = model
    out = tmp_path / "out"
    out.mkdir()
    before, cfg_before = _fingerprint(weights), _fingerprint(cfg)
    for what, op in _every_operation(weights, cfg, out):
        result = op()
        assert result != 2, f"{what} failed (exit 2)"  # identify exits 1: an unknown network
        assert _fingerprint(weights) == before, f"{what} changed the weights file"
        assert _fingerprint(cfg) == cfg_before, f"{what} changed the cfg"
    capsys.readouterr()
    # the copy is byte for byte the input: a save that reads from the map writes what it read
    assert (out / "copy.weights").read_bytes() == weights.read_bytes()


# -- a failed write leaves the destination as it was -----------------------------------------------
def _tmp_files(folder: Path) -> list[str]:
    # Temporary names: ".dwf-<random>.tmp" (and the older ".<name>.<random>.dwf-tmp").
    return [n for n in os.listdir(folder) if n.startswith(".dwf-") or n.endswith(".dwf-tmp")]


def _fail_on_call(k: int, exc: BaseException) -> Callable[..., Any]:
    calls = 0
    real = dwf.io.writer.stored_bytes

    def flaky(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == k:
            raise exc
        return real(*args, **kwargs)

    return flaky


FAILURES = [RuntimeError("injected"), OSError(errno.ENOSPC, "No space left on device")]


def _failing_writes(k: int, exc: BaseException) -> Callable[..., Any]:
    """``atomic_writes`` (which ``atomic_write`` calls too) whose files fail on their k-th
    ``write`` in all (whatever writes to them: a header, an array, a chunk of one, a cfg), for
    every writer that goes through it."""
    real = dwf.io.writer.atomic_writes
    calls = 0

    class Flaky:
        def __init__(self, fh: Any) -> None:
            self._fh = fh

        def write(self, data: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == k:
                raise exc
            return self._fh.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._fh, name)

    @contextlib.contextmanager
    def flaky(*args: Any, **kwargs: Any) -> Any:
        with real(*args, **kwargs) as fhs:
            yield tuple(Flaky(fh) for fh in fhs)

    return flaky


@pytest.mark.parametrize("exc", FAILURES, ids=["exception", "disk-full"])
@pytest.mark.parametrize("how", ["dwf.save", "WeightsFile.save", "fuse"])
def test_failure_mid_write_leaves_destination_and_no_temp_file(
    model: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    exc: BaseException,
) -> None:
    weights, cfg = model
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "dst.weights"
    dst.write_bytes(b"the old destination")
    dst_cfg = out / "dst.cfg"
    dst_cfg.write_text("the old cfg")
    flaky = _failing_writes(4, exc)  # the fourth write: the header and more are written
    monkeypatch.setattr(dwf.io.writer, "atomic_writes", flaky)
    monkeypatch.setattr(dwf.tools.fuse, "atomic_writes", flaky)
    expected = dwf.DwfError if isinstance(exc, OSError) else RuntimeError
    with pytest.raises(expected) as info:
        if how == "dwf.save":
            plan = dwf.plan(cfg)
            dwf.save(dst, plan, _arrays(plan))
        elif how == "WeightsFile.save":
            with dwf.open(weights, cfg) as f:
                f.save(dst)
        else:
            dwf.tools.fuse.fuse(weights, dst, dst_cfg, cfg=cfg)
    if isinstance(exc, OSError):
        assert "No space left" in str(info.value) and str(dst) in str(info.value)
    assert dst.read_bytes() == b"the old destination"
    assert dst_cfg.read_text() == "the old cfg"
    assert _tmp_files(out) == []


def test_failure_renaming_into_place(
    model: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights, cfg = model
    dst = tmp_path / "dst.weights"
    dst.write_bytes(b"the old destination")

    def refuse(src: object, target: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "replace", refuse)
    with dwf.open(weights, cfg) as f, pytest.raises(dwf.DwfError, match="cross-device"):
        f.save(dst)
    assert dst.read_bytes() == b"the old destination"
    assert _tmp_files(tmp_path) == []


def test_interrupted_write_leaves_no_temp_file(
    model: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C mid-write (KeyboardInterrupt is not an Exception) cleans up too."""
    weights, cfg = model
    dst = tmp_path / "dst.weights"
    monkeypatch.setattr(dwf.io.writer, "stored_bytes", _fail_on_call(2, KeyboardInterrupt()))
    with dwf.open(weights, cfg) as f, pytest.raises(KeyboardInterrupt):
        f.save(dst)
    assert not dst.exists()
    assert _tmp_files(tmp_path) == []


# -- errors cross process boundaries ---------------------------------------------------------------
def _make_error(kind: str, folder: str) -> BaseException:
    """Provoke a real error of ``kind`` (runs in a worker process)."""
    root = Path(folder)
    plan = dwf.Plan.from_text(CFG)
    weights = root / "net.weights"
    try:
        if kind == "CfgError":
            dwf.Plan.from_text("[net]\nwidth=8\nheight=8\nchannels=3\n[conv]\nstride=-3\n")
        elif kind == "HeaderError":
            empty = root / "empty.weights"
            empty.write_bytes(b"")
            dwf.open(empty, plan)
        elif kind == "SizeMismatchError":
            short = root / "short.weights"
            short.write_bytes(weights.read_bytes()[:-40])
            dwf.open(short, plan)
        elif kind == "LayerNotFoundError":
            plan.layer("conv_3x")
        elif kind == "ArrayNotFoundError":
            dwf.open(weights, plan)["conv_0"]["gamma"]
        elif kind == "LayerNotInFileError":
            partial = root / "partial.weights"
            partial.write_bytes(weights.read_bytes()[: 20 + 4 * plan.layers[2].stop])
            dwf.open(partial, plan)[BIG_LAYER]
        elif kind == "ArrayError":
            dwf.save(root / "x.weights", plan, {"conv_0.weights": np.zeros(3)})
        elif kind == "FileChangedError":
            changing = root / "changing.weights"
            changing.write_bytes(weights.read_bytes())
            f = dwf.open(changing, plan)
            os.truncate(changing, 100)
            f[BIG_LAYER].weights  # noqa: B018
        elif kind == "ClosedFileError":
            f = dwf.open(weights, plan)
            f.close()
            f["conv_0"]
        elif kind == "DwfError":
            dwf.open(weights, plan, dialect="klingon")
    except dwf.DwfError as e:
        return e
    raise AssertionError(f"{kind} was not raised")


def _raise_error(kind: str, folder: str) -> None:
    raise _make_error(kind, folder)


ERROR_KINDS = [
    "CfgError",
    "HeaderError",
    "SizeMismatchError",
    "LayerNotFoundError",
    *(["ArrayNotFoundError"] if hasattr(dwf, "ArrayNotFoundError") else []),
    "LayerNotInFileError",
    "ArrayError",
    "FileChangedError",
    "ClosedFileError",
    "DwfError",
]


def test_errors_cross_multiprocessing_intact(model: tuple[Path, Path]) -> None:
    weights, _ = model
    folder = str(weights.parent)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(2) as pool:
        errors = pool.starmap(_make_error, [(k, folder) for k in ERROR_KINDS])
        raised = pool.apply_async(_raise_error, ("SizeMismatchError", folder))
        with pytest.raises(dwf.SizeMismatchError) as info:
            raised.get(timeout=60)
    for kind, err in zip(ERROR_KINDS, errors, strict=True):
        here = _make_error(kind, folder)
        assert type(err) is type(here) and type(err).__name__ == kind
        assert str(err) == str(here) and str(err)
        keep = {k: v for k, v in here.__dict__.items() if k not in ("now", "opened")}
        assert {k: err.__dict__[k] for k in keep} == keep, kind
    size = info.value
    assert size.diagnosis is not None and size.diagnosis.explain() == str(size)
    assert size.first_unfilled is not None and size.expected_size > size.actual_size
    cfg_err = errors[0]
    assert isinstance(cfg_err, dwf.CfgError) and cfg_err.line == 6
    not_found = errors[ERROR_KINDS.index("LayerNotFoundError")]
    assert isinstance(not_found, dwf.LayerNotFoundError) and isinstance(not_found, KeyError)
    assert "conv_3" in not_found.suggestions


def _sum(view: np.ndarray[Any, Any]) -> float:
    return float(np.sum(view, dtype=np.float64))


# -- threads ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_reads_from_threads(model: tuple[Path, Path], backend: str) -> None:
    weights, cfg = model
    with dwf.open(weights, cfg, backend=backend) as f:  # type: ignore[arg-type]
        names = f.keys()
        expected = {(n, a): _sum(v) for n in names for a, v in f[n].arrays.items()}
        results: list[tuple[str, str, float]] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        start = threading.Barrier(8)

        def reader(seed: int) -> None:
            rng = random.Random(seed)
            start.wait()
            try:
                for _ in range(150):
                    n = rng.choice(names)
                    for a, v in f[n].arrays.items():
                        total = _sum(v)
                        with lock:
                            results.append((n, a, total))
            except BaseException as e:
                with lock:
                    errors.append(e)

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert len(results) >= 8 * 150
        wrong = [(n, a, s) for n, a, s in results if s != expected[(n, a)]]
        assert not wrong, wrong[:5]


# -- byte order ------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_views_are_explicitly_little_endian(model: tuple[Path, Path], backend: str) -> None:
    """A big-endian host cannot be simulated here; what can be checked is that every view is
    typed ``<f4`` (not the native ``float32``) and holds exactly the file's little-endian
    bytes."""
    weights, cfg = model
    raw = weights.read_bytes()
    assert dwf.io.reader.F32.str == "<f4"
    with dwf.open(weights, cfg, backend=backend) as f:  # type: ignore[arg-type]
        h = f.header.size
        for lp in f.plan.layers:
            for spec in lp.arrays:
                view = f[lp.index][spec.name]
                assert view.dtype.str == "<f4" and view.dtype.byteorder in ("<", "=")
                start, stop = spec.byte_span(h)
                stored = np.frombuffer(raw[start:stop], "<f4")
                if spec.storage == "transposed":
                    got = np.ascontiguousarray(view.reshape(spec.shape[0], -1).T).ravel()
                else:
                    got = np.ascontiguousarray(view).ravel()
                assert np.array_equal(got, stored), f"{lp.name}.{spec.name}"


def test_big_endian_arrays_are_written_little_endian(tmp_path: Path) -> None:
    """Arrays in the host's other byte order (``>f4`` here) are stored as ``<f4``."""
    plan = dwf.Plan.from_text(CFG)
    little = _arrays(plan)
    big = {k: v.astype(">f4") for k, v in little.items()}
    dwf.save(tmp_path / "a.weights", plan, little)
    dwf.save(tmp_path / "b.weights", plan, big)
    assert (tmp_path / "a.weights").read_bytes() == (tmp_path / "b.weights").read_bytes()
    data = (tmp_path / "b.weights").read_bytes()
    first = plan.layers[0].arrays[0]
    assert np.array_equal(
        np.frombuffer(data, "<f4", count=first.count, offset=20), little["conv_0.biases"]
    )


# -- Windows line endings --------------------------------------------------------------------------
def _summary(plan: dwf.Plan) -> list[tuple[Any, ...]]:
    return [
        (lp.name, lp.type, lp.line, lp.out_shape, lp.outputs, lp.arrays, dict(lp.params))
        for lp in plan.layers
    ]


CRLF_CFGS = {
    "net": CFG,
    "demo": demo_cfg_text(),
    "comments": "# a comment\r\n[net]\r\nwidth=8 # inline\r\nheight=8\r\nchannels=3\r\n\r\n"
    "[convolutional]\r\nfilters=4\r\n; another\r\n[route]\r\nlayers=-1\r\n",
}


@pytest.mark.parametrize("which", sorted(CRLF_CFGS))
def test_crlf_cfg_plans_like_lf_in_alexeyab(which: str) -> None:
    lf = CRLF_CFGS[which].replace("\r\n", "\n")
    crlf = lf.replace("\n", "\r\n")
    assert "\r" in crlf
    assert _summary(dwf.Plan.from_text(crlf, dialect="alexeyab")) == _summary(
        dwf.Plan.from_text(lf, dialect="alexeyab")
    )


def test_crlf_cfg_is_refused_by_pjreddie_naming_the_carriage_return() -> None:
    crlf = CFG.replace("\n", "\r\n")
    dwf.Plan.from_text(CFG, dialect="pjreddie")  # the LF file is fine there
    with pytest.raises(dwf.CfgError, match="carriage return") as info:
        dwf.Plan.from_text(crlf, dialect="pjreddie")
    assert info.value.line == 1


def test_crlf_cfg_file_read_from_disk(tmp_path: Path) -> None:
    """Through the file path too: the bytes are not newline-translated on the way in."""
    cfg = tmp_path / "win.cfg"
    cfg.write_bytes(CFG.replace("\n", "\r\n").encode())
    assert _summary(dwf.plan(cfg)) == _summary(dwf.Plan.from_text(CFG, path=cfg))
    with pytest.raises(dwf.CfgError, match="carriage return"):
        dwf.plan(cfg, dialect="pjreddie")
