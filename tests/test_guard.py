"""The guarded map on its own (dwf/io/guard.py, leases.py, filemap.py): a lease held while views
of a file exist, a writer held back until the views are moved to private memory, what it costs
when nothing happens, and every reason a lease is refused.

What could kill the process if the mechanism were wrong runs in a subprocess, whose exit status
the test reads: a SIGBUS fails the test instead of killing pytest.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dwf

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux leases")
ROOT = Path(dwf.__file__).resolve().parents[1]
NO_CAP_LEASE = ["setpriv", "--inh-caps=-lease", "--bounding-set=-lease"]
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _file(folder: Path, nbytes: int = 64 * PAGE + 123, seed: int = 0) -> tuple[Path, bytes]:
    data = np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8).tobytes()
    path = folder / "data.bin"
    path.write_bytes(data)
    return path, data


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_size, st.st_mtime_ns


def run_py(code: str, *args: str, timeout: float = 60) -> str:
    """Run ``code`` in a fresh interpreter; fail (not die) unless it exits 0."""

    def no_core() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONFAULTHANDLER", None)
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        preexec_fn=no_core,
    )
    code_ = run.returncode
    what = f"killed by {signal.Signals(-code_).name}" if code_ < 0 else f"exit {code_}"
    assert code_ == 0, f"{what}\n{run.stdout}\n{run.stderr}"
    return run.stdout


# -- the pure part ---------------------------------------------------------------------------------
def test_spans_are_widened_to_pages_sorted_and_joined() -> None:
    from dwf.io.filemap import merged, rounded

    n = 10 * PAGE + 5
    assert rounded(n) == 11 * PAGE
    spans = [(3 * PAGE + 1, 3 * PAGE + 2), (0, 10), (PAGE - 1, PAGE + 1), (9 * PAGE, n), (5, 5)]
    assert merged(spans, n) == [(0, 2 * PAGE), (3 * PAGE, 4 * PAGE), (9 * PAGE, 11 * PAGE)]
    assert merged([(2 * PAGE, 3 * PAGE), (3 * PAGE, 4 * PAGE)], n) == [(2 * PAGE, 4 * PAGE)]


# -- the swap --------------------------------------------------------------------------------------
@linux_only
def test_copy_out_keeps_the_bytes_views_use_and_survives_truncation(tmp_path: Path) -> None:
    path, _ = _file(tmp_path)
    out = run_py(
        """
        import os, sys, numpy as np
        from dwf.io import filemap
        path = sys.argv[1]
        fd = os.open(path, os.O_RDONLY)
        n = os.fstat(fd).st_size
        addr = filemap.map_file(fd, n)
        class Holder:
            __array_interface__ = {"shape": (n,), "typestr": "|u1", "data": (addr, True),
                                   "version": 3}
        a = np.asarray(Holder())
        before = a.tobytes()
        spans = [(100, 2000), (5 * 4096 + 7, 9 * 4096), (n - 50, n)]
        assert filemap.copy_out(addr, n, fd, spans, lambda: True)
        os.truncate(path, 0)                      # would fault every page of a plain map
        for s, e in spans:
            assert a[s:e].tobytes() == before[s:e], (s, e)
        assert not a[30 * 4096 : 31 * 4096].any() # pages no view used cost nothing: zeros
        filemap.unmap(addr, n)
        print("ok")
        """,
        str(path),
    )
    assert out.strip() == "ok"


@linux_only
def test_copy_out_after_the_file_changed_gives_nan_not_a_mix(tmp_path: Path) -> None:
    from dwf.io import filemap

    path, _ = _file(tmp_path)
    fd = os.open(path, os.O_RDONLY)
    try:
        n = os.fstat(fd).st_size
        addr = filemap.map_file(fd, n)

        class Holder:
            def __init__(self) -> None:
                shape, data = (n // 4,), (addr, True)
                self.__array_interface__ = {"shape": shape, "typestr": "<f4", "data": data}

        a = np.asarray(Holder())
        assert not filemap.copy_out(addr, n, fd, [(0, 4 * PAGE)], lambda: False)
        assert np.isnan(a[:PAGE]).all()
        del a
        filemap.unmap(addr, n)
    finally:
        os.close(fd)


# -- why a lease is refused ------------------------------------------------------------------------
@linux_only
def test_refused_while_the_file_is_open_for_writing_and_granted_after(tmp_path: Path) -> None:
    from dwf.io.guard import GuardedMap, Refusal

    path, data = _file(tmp_path)
    fd = os.open(path, os.O_RDONLY)
    try:
        writing = os.open(path, os.O_WRONLY)
        got = GuardedMap.open(fd, len(data), _identity(fd))
        assert isinstance(got, Refusal) and not got.lasting
        assert "open for writing" in got.reason
        os.close(writing)
        got = GuardedMap.open(fd, len(data), _identity(fd))
        assert not isinstance(got, Refusal)
        view = got.floats(0, len(data) // 4)
        assert view is not None and view.tobytes() == data[: 4 * (len(data) // 4)]
        assert not view.flags.writeable
    finally:
        os.close(fd)


@linux_only
def test_refused_when_the_file_changed_since_it_was_opened(tmp_path: Path) -> None:
    from dwf.io.guard import GuardedMap, Refusal

    path, data = _file(tmp_path)
    fd = os.open(path, os.O_RDONLY)
    try:
        opened = _identity(fd)
        os.truncate(path, 10)
        got = GuardedMap.open(fd, len(data), opened)
        assert isinstance(got, Refusal) and "changed since it was opened" in got.reason
    finally:
        os.close(fd)


@linux_only
def test_refused_on_a_file_system_that_is_not_local() -> None:
    from dwf.io.guard import GuardedMap, Refusal

    fd = os.open("/proc/self/status", os.O_RDONLY)  # not a local disk file system: procfs
    try:
        got = GuardedMap.open(fd, 100, _identity(fd))
        assert isinstance(got, Refusal) and got.lasting
        assert "not a local file system" in got.reason
    finally:
        os.close(fd)


@linux_only
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)
def test_refused_without_being_the_owner_or_having_cap_lease(tmp_path: Path) -> None:
    """A process that neither owns the file nor has CAP_LEASE cannot take a lease: here root
    without CAP_LEASE reads a file owned by another user."""
    path, _ = _file(tmp_path)
    os.chown(path, 65534, 65534)
    code = """
        import os, sys
        from dwf.io.guard import GuardedMap, Refusal
        fd = os.open(sys.argv[1], os.O_RDONLY)
        st = os.fstat(fd)
        got = GuardedMap.open(fd, st.st_size, (st.st_size, st.st_mtime_ns))
        print(got.lasting, got.reason)
        """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [*NO_CAP_LEASE, sys.executable, "-c", textwrap.dedent(code), str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("True") and "CAP_LEASE" in run.stdout, run.stdout


# -- a writer in another process -------------------------------------------------------------------
WRITER = """
import sys, time
t = time.perf_counter()
with open(sys.argv[1], "wb") as f:    # Darknet's save_weights: O_WRONLY|O_CREAT|O_TRUNC
    print(f"blocked {time.perf_counter() - t:.6f}", flush=True)
    f.write(b"\\x01" * 1000)
"""


@linux_only
def test_a_writer_is_held_back_until_the_views_are_private(tmp_path: Path) -> None:
    path, _ = _file(tmp_path)
    out = run_py(
        """
        import os, subprocess, sys, numpy as np
        from dwf.io.guard import GuardedMap
        path, writer = sys.argv[1], sys.argv[2]
        fd = os.open(path, os.O_RDONLY)
        st = os.fstat(fd)
        g = GuardedMap.open(fd, st.st_size, (st.st_size, st.st_mtime_ns))
        views = [g.floats(4096 * i + 20, 1000) for i in range(0, 60, 7)]
        before = [v.tobytes() for v in views]
        w = subprocess.run([sys.executable, "-c", writer, path], capture_output=True, text=True)
        assert w.returncode == 0, w.stderr
        assert os.fstat(fd).st_size == 1000      # the writer went on once the views were safe
        assert [v.tobytes() for v in views] == before
        assert g.detached and g.floats(0, 10) is None
        print("ok", w.stdout.strip(), g.detached)
        """,
        str(path),
        WRITER,
    )
    assert out.startswith("ok blocked"), out


@linux_only
def test_views_made_in_a_thread_that_ended_are_guarded(tmp_path: Path) -> None:
    path, _ = _file(tmp_path)
    out = run_py(
        """
        import os, subprocess, sys, threading
        from dwf.io.guard import GuardedMap
        path, writer = sys.argv[1], sys.argv[2]
        held = {}
        def work():
            fd = os.open(path, os.O_RDONLY)
            st = os.fstat(fd)
            g = GuardedMap.open(fd, st.st_size, (st.st_size, st.st_mtime_ns))
            os.close(fd)                          # the map keeps a descriptor of its own
            held["v"] = g.floats(8192, 4096)
        t = threading.Thread(target=work); t.start(); t.join()
        before = held["v"].tobytes()
        subprocess.run([sys.executable, "-c", writer, path], check=True, capture_output=True)
        assert held["v"].tobytes() == before
        print("ok")
        """,
        str(path),
        WRITER,
    )
    assert out.strip() == "ok"


@linux_only
def test_a_break_before_the_owner_is_set_is_noticed_and_kills_nothing(tmp_path: Path) -> None:
    """The lease exists a moment before its breaks are directed at the watcher thread. A writer
    that comes exactly then signals the process as a whole with SIGURG — ignored by default, so
    nothing dies — and take() still sees the break by asking the lease."""
    path, _ = _file(tmp_path)
    out = run_py(
        """
        import fcntl, os, sys, threading, time
        from dwf.io import leases
        path = sys.argv[1]
        leases._watcher_thread()
        while leases.watcher_id() is None:        # the watcher runs and has said its id
            time.sleep(0.001)
        real = leases.set_owner
        def owner(fd, tid):                       # the lease is set, its owner is the process:
            write = lambda: os.close(os.open(path, os.O_WRONLY | os.O_TRUNC))
            threading.Thread(target=write).start()  # a writer comes now
            while fcntl.fcntl(fd, fcntl.F_GETLEASE) == fcntl.F_RDLCK:
                time.sleep(0.001)
            real(fd, tid)
        leases.set_owner = owner
        fd = os.open(path, os.O_RDONLY)
        got = leases.take(fd)
        print("refused:", got)
        assert got is not None and not got[1]
        time.sleep(0.1)
        assert os.stat(path).st_size == 0         # the writer went on
        """,
        str(path),
    )
    assert "being opened for writing" in out, out


@linux_only
def test_a_lease_taken_while_the_watcher_starts_is_routed_to_it(tmp_path: Path) -> None:
    """The first lease of a process does not wait for the watcher thread to run: it is taken
    with the process as its owner, and the watcher, once running, directs it at itself. Here
    the watcher's periodic look is put off for ten minutes, so only that routing can bring the
    break to it before the writer's wait (45 s) ends and the file is truncated under the view."""
    path, _ = _file(tmp_path)
    out = run_py(
        """
        import os, subprocess, sys, time
        from dwf.io import guard, leases
        path, writer = sys.argv[1], sys.argv[2]
        leases.POLL_SECONDS = 600.0
        start = leases._watcher_thread
        leases._watcher_thread = lambda: None     # as if the watcher had not said its id yet
        fd = os.open(path, os.O_RDONLY)
        st = os.fstat(fd)
        g = guard.GuardedMap.open(fd, st.st_size, (st.st_size, st.st_mtime_ns))
        view = g.floats(4096 * 3, 4096)
        before = view.tobytes()
        leases._watcher_thread = start
        start()                                   # starts it: it routes the lease to itself
        while leases.watcher_id() is None:
            time.sleep(0.001)
        w = subprocess.run([sys.executable, "-c", writer, path], capture_output=True, text=True)
        assert w.returncode == 0, w.stderr
        assert view.tobytes() == before and g.detached
        print("ok", w.stdout.strip())
        """,
        str(path),
        WRITER,
        timeout=120,
    )
    assert out.startswith("ok blocked"), out
    assert float(out.split()[-1]) < 30, out  # the break reached the watcher, not the timeout


# -- life cycle ------------------------------------------------------------------------------------
def _leases_of(pid: int) -> list[str]:
    with open("/proc/locks") as f:
        return [line for line in f if "LEASE" in line and f" {pid} " in line]


@linux_only
def test_the_lease_map_and_descriptor_go_with_the_last_view(tmp_path: Path) -> None:
    from dwf.io.guard import GuardedMap

    path, data = _file(tmp_path)
    fds_before = len(os.listdir("/proc/self/fd"))
    fd = os.open(path, os.O_RDONLY)
    g = GuardedMap.open(fd, len(data), _identity(fd))
    os.close(fd)
    assert isinstance(g, GuardedMap)
    view = g.floats(4, 100)
    del g
    gc.collect()
    assert len(_leases_of(os.getpid())) == 1  # the view keeps the map, its lease and descriptor
    assert view is not None and view.tobytes() == data[4:404]
    del view
    gc.collect()
    assert _leases_of(os.getpid()) == []
    assert len(os.listdir("/proc/self/fd")) == fds_before


@linux_only
def test_many_maps_share_one_watcher_and_only_the_written_file_is_detached(
    tmp_path: Path,
) -> None:
    from dwf.io.guard import GuardedMap

    maps = []
    for i in range(50):
        folder = tmp_path / str(i)
        folder.mkdir()
        path, data = _file(folder, 3 * PAGE, seed=i)
        fd = os.open(path, os.O_RDONLY)
        g = GuardedMap.open(fd, len(data), _identity(fd))
        os.close(fd)
        assert hasattr(g, "floats"), g
        maps.append((path, g, g.floats(0, 3 * PAGE // 4), data))  # type: ignore[union-attr]
    from dwf.io import leases

    first = leases.watcher_id()
    assert first is not None and leases._watcher_thread() == first  # one, not one per file
    target = maps[17][0]
    w = subprocess.run([sys.executable, "-c", WRITER, str(target)], capture_output=True, text=True)
    assert w.returncode == 0, w.stderr
    for path, g, view, data in maps:
        assert view is not None and view.tobytes() == data
        assert bool(g.detached) == (path == target)  # type: ignore[union-attr]


@linux_only
def test_no_signal_disposition_or_mask_of_this_thread_changes(tmp_path: Path) -> None:
    from dwf.io.guard import GuardedMap

    before = signal.getsignal(signal.SIGURG), signal.pthread_sigmask(signal.SIG_BLOCK, [])
    path, data = _file(tmp_path)
    fd = os.open(path, os.O_RDONLY)
    g = GuardedMap.open(fd, len(data), _identity(fd))
    os.close(fd)
    assert hasattr(g, "floats")
    after = signal.getsignal(signal.SIGURG), signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert after == before


@linux_only
def test_the_finalizer_during_a_swap_waits_for_it(tmp_path: Path) -> None:
    """A garbage collection in the watcher thread, in the middle of a swap, may finalize the
    very map being swapped; the unmap then waits for the swap to end (an unmap under it would
    let the swap land on an address given to something else)."""
    path, _ = _file(tmp_path)
    out = run_py(
        """
        import os, sys
        from dwf.io import filemap, guard
        path = sys.argv[1]
        fd = os.open(path, os.O_RDONLY)
        st = os.fstat(fd)
        g = guard.GuardedMap.open(fd, st.st_size, (st.st_size, st.st_mtime_ns))
        state = g._state
        real = filemap.copy_out
        def copy_out(*args, **kwargs):
            state.close()                         # the finalizer, re-entering mid-swap
            assert not state.closed and state.unmap_after_swap
            return real(*args, **kwargs)
        guard.filemap.copy_out = copy_out
        guard.leases.breaking = lambda fd: True   # as if a writer were waiting
        state.check_break()
        assert state.closed and state.detached    # unmapped after the swap, not during it
        print("ok")
        """,
        str(path),
    )
    assert out.strip() == "ok"


@linux_only
def test_a_file_on_tmpfs_is_guarded_too() -> None:
    from dwf.io.guard import GuardedMap

    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    path = Path("/dev/shm") / f"dwf-test-{os.getpid()}.bin"
    try:
        path.write_bytes(b"\0" * 3 * PAGE)
        fd = os.open(path, os.O_RDONLY)
        g = GuardedMap.open(fd, 3 * PAGE, _identity(fd))
        os.close(fd)
        assert hasattr(g, "floats"), g
        del g
    finally:
        path.unlink()


@linux_only
def test_a_forked_child_guards_the_views_it_inherited(tmp_path: Path) -> None:
    """After os.fork() the child holds the parent's views too (the map is inherited) but not
    the lease (its breaks go to the parent's watcher). The child takes a lease of its own, so a
    writer waits for both processes to detach their views."""
    path, _ = _file(tmp_path)
    out = run_py(
        """
        import os, subprocess, sys
        from dwf.io.guard import GuardedMap
        path, writer = sys.argv[1], sys.argv[2]
        fd = os.open(path, os.O_RDONLY)
        st = os.fstat(fd)
        g = GuardedMap.open(fd, st.st_size, (st.st_size, st.st_mtime_ns))
        view = g.floats(4096 * 10, 4096)
        before = view.tobytes()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:                              # the child: wait, then touch its views
            os.read(go_r, 1)
            ok = view.tobytes() == before and g.detached is not None
            os._exit(0 if ok else 4)
        w = subprocess.run([sys.executable, "-c", writer, path], capture_output=True, text=True)
        assert w.returncode == 0, w.stderr
        os.write(go_w, b"x")
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status), f"child killed by signal {os.WTERMSIG(status)}"
        assert os.WEXITSTATUS(status) == 0, "the child's view changed"
        assert view.tobytes() == before and g.detached
        print("ok", w.stdout.strip())
        """,
        str(path),
        WRITER,
    )
    assert out.startswith("ok blocked"), out


@linux_only
def test_a_private_map_keeps_this_process_s_writes_through_the_swap(tmp_path: Path) -> None:
    """A private (copy-on-write) map is writable, its writes never reach the file, and the swap
    copies the map itself: written values stay, unwritten ones are the file's as opened."""
    path, data = _file(tmp_path)
    out = run_py(
        """
        import os, subprocess, sys, numpy as np
        from dwf.io.guard import GuardedMap
        path, writer = sys.argv[1], sys.argv[2]
        original = open(path, "rb").read()
        fd = os.open(path, os.O_RDONLY)
        st = os.fstat(fd)
        g = GuardedMap.open(fd, st.st_size, (st.st_size, st.st_mtime_ns), private=True)
        view = g.floats(0, st.st_size // 4)
        assert view.flags.writeable
        view[5000:6000] = 7.0                     # e.g. a tensor trained in place
        expected = view.tobytes()
        assert open(path, "rb").read() == original  # the file never sees it
        subprocess.run([sys.executable, "-c", writer, path], check=True, capture_output=True)
        assert g.detached and view.tobytes() == expected
        view[0] = 1.0                             # still writable after the swap
        print("ok")
        """,
        str(path),
        WRITER,
    )
    assert out.strip() == "ok"
    assert len(data) > 6000 * 4


@linux_only
def test_too_many_open_files_gives_a_refusal_not_an_error(tmp_path: Path) -> None:
    """A guarded map keeps a descriptor of its own; when none can be had, the views are copies
    (a refusal that may pass), not an OSError."""
    path, _ = _file(tmp_path)
    out = run_py(
        """
        import os, resource, sys
        from dwf.io.guard import GuardedMap, Refusal
        fd = os.open(sys.argv[1], os.O_RDONLY)
        st = os.fstat(fd)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd + 1, hard))   # no descriptor is free
        got = GuardedMap.open(fd, st.st_size, (st.st_size, st.st_mtime_ns))
        print(type(got).__name__, got.lasting, got.reason)
        """,
        str(path),
    )
    assert out.startswith("Refusal False cannot duplicate"), out
