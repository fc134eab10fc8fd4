"""Live checkpoints: a view already in hand never kills the process, whatever another process
does to the file (issue 20).

Darknet rewrites ``*_last.weights`` in place while it trains. Each test runs a reader process
that holds a view of every array of a file and a writer process that changes the file (see
``tests/live_processes.py``); the reader must exit 0: every held view keeps the values it had
when it was made, every new view has them too or raises ``dwf.FileChangedError``. A reader
killed by a signal fails the test (it runs in its own process, so it cannot take pytest down).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from small_net import write_model

import dwf

HERE = Path(__file__).resolve().parent
ROOT = Path(dwf.__file__).resolve().parents[1]
SCRIPT = str(HERE / "live_processes.py")
WRITER = [sys.executable, SCRIPT, "writer"]
PATTERNS = ("darknet", "truncate-write", "truncate-sizes", "in-place", "rename", "delete")
BACKENDS = ("mmap", "pread")

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux leases")


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])}
    env.pop("PYTHONFAULTHANDLER", None)  # a signal should kill the reader plainly
    return env


def _no_core() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _describe(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit {code}"


def run_live(
    folder: Path,
    backend: str,
    pattern: str,
    *,
    seed: int = 1,
    pause: float = 0.01,
    reader_flags: tuple[str, ...] = (),
    delay: float = 0.05,
    prefix: tuple[str, ...] = (),
    before_reader: Callable[[Path], object] | None = None,
    before_writer: Callable[[], object] | None = None,
) -> tuple[str, str]:
    """Write the model in ``folder``, start a reader holding views of it, let a writer change
    it with ``pattern``, then let the reader finish. Returns the reader's and the writer's
    output; fails unless both exit 0."""
    weights, cfg = write_model(folder)
    if before_reader is not None:
        before_reader(weights)
    command = [*prefix, sys.executable, SCRIPT, "reader", str(weights), str(cfg), backend]
    reader = subprocess.Popen(
        [*command, *reader_flags],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        preexec_fn=_no_core,
    )
    try:
        assert reader.stdout is not None and reader.stdin is not None
        line = reader.stdout.readline()
        assert line.startswith("ready"), line + (reader.stderr.read() if reader.stderr else "")
        time.sleep(delay)  # the reader is touching its views by now
        if before_writer is not None:
            before_writer()
        writer = subprocess.run(
            [*WRITER, pattern, str(weights), str(cfg), str(seed), "--pause", str(pause)],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=120,
        )
        assert writer.returncode == 0, writer.stdout + writer.stderr
        with contextlib.suppress(BrokenPipeError):  # a reader that died already
            reader.stdin.write("done\n")
            reader.stdin.flush()
        out, err = reader.communicate(timeout=120)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    code = reader.returncode
    assert code == 0, f"the reader ({backend}, {pattern}): {_describe(code)}\n{line}{out}\n{err}"
    return line + out, writer.stdout


@pytest.mark.slow  # a writer process per pattern (~0.5 s each)
@linux_only
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_held_views_survive_another_process_changing_the_file(
    tmp_path: Path, backend: str, pattern: str
) -> None:
    out, _ = run_live(tmp_path, backend, pattern)
    assert "ok touches" in out, out
    mode = "zero-copy (guarded by a file lease)" if backend == "mmap" else "owned copies"
    assert out.startswith(f"ready {mode}"), out


HOLD_A_VIEW = """
import sys, numpy as np, dwf
f = dwf.open(sys.argv[1], sys.argv[2], backend=sys.argv[3])
w = f["connected_4"].weights       # held, as a notebook holds it
before = w.tobytes()
print("ready", flush=True)
sys.stdin.readline()               # meanwhile Darknet starts rewriting the file
same = w.tobytes() == before       # touches every page of the view
print("sum", float(w.sum(dtype=np.float64)), "same", same, flush=True)
try:
    f["connected_4"].weights
    print("new view: no error", flush=True)
except dwf.FileChangedError as e:
    print("new view: FileChangedError", e, flush=True)
sys.exit(0 if same else 4)
"""


@linux_only
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_held_view_survives_darknet_starting_to_rewrite_the_file(
    tmp_path: Path, backend: str
) -> None:
    """Issue 20's report: a notebook holds ``w = f["conv_100"].weights``; Darknet's
    ``save_weights`` opens the file with ``"wb"`` (truncating it) and writes the header; then
    ``w.sum()`` killed the kernel with SIGBUS. Now the view keeps its values, and a new view
    raises FileChangedError."""
    weights, cfg = write_model(tmp_path)
    reader = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_VIEW, str(weights), str(cfg), backend],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        preexec_fn=_no_core,
    )
    assert reader.stdout is not None and reader.stdin is not None
    line = reader.stdout.readline()
    assert line.startswith("ready"), line + (reader.stderr.read() if reader.stderr else "")
    with open(weights, "wb") as darknet:  # what save_weights does, from another process
        darknet.write(dwf.Header(0, 2, 5, 9999, 20).encode())
        darknet.flush()
        with contextlib.suppress(BrokenPipeError):
            reader.stdin.write("go\n")
            reader.stdin.flush()
        out, err = reader.communicate(timeout=120)
    code = reader.returncode
    assert code == 0, f"the reader: {_describe(code)}\n{out}\n{err}"
    assert "same True" in out and "new view: FileChangedError" in out, out


@pytest.mark.slow  # a writer process per case (~1 s each)
@linux_only
@pytest.mark.parametrize(
    ("flags", "pattern"),
    [
        (("--thread",), "darknet"),
        (("--close",), "truncate-sizes"),
        (("--thread", "--close"), "truncate-write"),
    ],
)
def test_views_made_in_another_thread_or_held_after_close_survive(
    tmp_path: Path, flags: tuple[str, ...], pattern: str
) -> None:
    """The file opened, and its views made, in a thread that has ended; or the file closed
    while its views are held: the views keep their protection (the map keeps its own
    descriptor and lease until the last view goes)."""
    out, _ = run_live(tmp_path, "mmap", pattern, reader_flags=flags)
    assert "ok touches" in out, out


@pytest.mark.slow  # a writer process per case (~1 s each)
@linux_only
@pytest.mark.parametrize("pattern", ["darknet", "truncate-sizes", "in-place"])
def test_a_state_dict_held_survives(tmp_path: Path, pattern: str) -> None:
    """``to_state_dict(f)`` shares memory with a private copy-on-write map of the file (its
    tensors must be writable): it is guarded like the views."""
    out, _ = run_live(tmp_path, "mmap", pattern, reader_flags=("--state-dict",))
    assert "ok touches" in out, out


@linux_only
@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
@pytest.mark.parametrize(
    "pattern", ["darknet", *(pytest.param(p, marks=pytest.mark.slow) for p in PATTERNS[1:])]
)
def test_a_file_on_tmpfs(pattern: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="dwf-live-", dir="/dev/shm"))
    try:
        out, _ = run_live(folder, "mmap", pattern)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert out.startswith("ready zero-copy"), out


@linux_only
@pytest.mark.parametrize("pattern", ["darknet", "truncate-sizes"])
def test_a_file_open_for_writing_when_viewed_gives_owned_copies(
    tmp_path: Path, pattern: str
) -> None:
    """While another process has the file open for writing, no lease can be had — itself the
    sign that the file is live: the views are owned copies, which nothing can take away."""
    held: list[int] = []

    def open_for_writing(weights: Path) -> None:
        held.append(os.open(weights, os.O_WRONLY))

    def close_it() -> None:
        os.close(held.pop())

    try:
        out, _ = run_live(
            tmp_path, "mmap", pattern, before_reader=open_for_writing, before_writer=close_it
        )
    finally:
        for fd in held:
            os.close(fd)
    assert out.startswith("ready owned copies: the file is open for writing"), out
    assert "ok touches" in out, out


@linux_only
@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv (to read a file one neither owns nor may lease)",
)
@pytest.mark.parametrize("pattern", ["darknet"])
def test_a_file_one_may_not_lease_gives_owned_copies(tmp_path: Path, pattern: str) -> None:
    """Without ownership of the file or CAP_LEASE no lease is possible: owned copies."""

    def give_away(weights: Path) -> None:
        os.chown(weights, 65534, 65534)

    out, _ = run_live(
        tmp_path,
        "mmap",
        pattern,
        prefix=("setpriv", "--inh-caps=-lease", "--bounding-set=-lease"),
        before_reader=give_away,
    )
    assert out.startswith("ready owned copies: a lease needs the file's owner"), out
    assert "ok touches" in out, out


@linux_only
@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_repeated_with_random_timing(tmp_path: Path, backend: str) -> None:
    """Every pattern, 6 times each, with random pauses between the writer's layers and random
    delays before it starts: the reader never dies and never shows a wrong value."""
    rng = random.Random(20)
    for i in range(6):
        for pattern in PATTERNS:
            folder = tmp_path / f"{pattern}-{i}"
            folder.mkdir()
            out, _ = run_live(
                folder,
                backend,
                pattern,
                seed=rng.randrange(1 << 30),
                pause=rng.choice([0.0, 0.001, 0.01, 0.03]),
                delay=rng.choice([0.0, 0.02, 0.1]),
                reader_flags=rng.choice([(), (), ("--thread",), ("--close",)]),
            )
            assert "ok touches" in out, (pattern, i, out)


# -- in this process: what the reader says and does, without touching a view after a write ------
@linux_only
def test_view_mode_says_how_views_are_made(tmp_path: Path) -> None:
    weights, cfg = write_model(tmp_path)
    with dwf.open(weights, cfg, backend="pread") as f:
        assert f.view_mode == "owned copies: backend='pread'"
    f = dwf.open(weights, cfg)
    assert f.view_mode == "zero-copy (guarded by a file lease)"  # what the first view will be
    f["conv_0"].weights  # noqa: B018
    assert f.view_mode == "zero-copy (guarded by a file lease)"
    with open(weights, "r+b"):  # another writer: it waits until the views are private
        pass
    assert f.view_mode.startswith("none: another process opened the file for writing")
    with pytest.raises(dwf.FileChangedError, match="views already made keep their values"):
        f["conv_0"].weights  # noqa: B018
    with pytest.raises(dwf.FileChangedError):
        f.check_unchanged()
    f.close()


def test_where_no_lease_can_be_had_views_and_state_dicts_are_owned_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What macOS, Windows, NFS or FUSE give (here made so by refusing every lease): owned
    copies, with the reason in ``view_mode``; ``private_body()`` is ``None``."""
    from dwf.io import leases

    why = "the file is on nfs, not a local file system"
    monkeypatch.setattr(leases, "unsupported", lambda fd: why)
    weights, cfg = write_model(tmp_path)
    with dwf.open(weights, cfg) as f:
        assert f.view_mode == f"owned copies: {why}"
        view = f["conv_2"].weights
        assert view is not None and not view.flags.writeable
        root: object = view
        while isinstance(root, np.ndarray) and root.base is not None:
            root = root.base
        assert isinstance(root, np.ndarray) and root.flags.owndata  # nothing mapped
        assert f.private_body() is None
        with dwf.open(weights, cfg, backend="pread") as p:
            np.testing.assert_array_equal(view, p["conv_2"].weights)
