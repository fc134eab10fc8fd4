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
import signal
import subprocess
import sys
import time
from pathlib import Path

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
) -> tuple[str, str]:
    """Write the model in ``folder``, start a reader holding views of it, let a writer change
    it with ``pattern``, then let the reader finish. Returns the reader's and the writer's
    output; fails unless both exit 0."""
    weights, cfg = write_model(folder)
    reader = subprocess.Popen(
        [sys.executable, SCRIPT, "reader", str(weights), str(cfg), backend, *reader_flags],
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


@linux_only
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_held_views_survive_another_process_changing_the_file(
    tmp_path: Path, backend: str, pattern: str
) -> None:
    out, _ = run_live(tmp_path, backend, pattern)
    assert "ok touches" in out, out


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
