"""Plans and the records a worker needs pickle and deep-copy (a process pool can take them)."""

from __future__ import annotations

import concurrent.futures
import copy
import pickle

import dwf
from dwf.tools.demo import demo_cfg_text


def _total(plan: dwf.Plan) -> int:
    return plan.total_floats


def test_a_plan_pickles_and_deep_copies() -> None:
    plan = dwf.Plan.from_text(demo_cfg_text(), path="demo.cfg")
    for back in (pickle.loads(pickle.dumps(plan)), copy.deepcopy(plan), copy.copy(plan)):
        assert back.layers == plan.layers
        assert (back.dialect, back.side, back.cfg_path, back.warnings) == (
            plan.dialect, plan.side, plan.cfg_path, plan.warnings,
        )
        assert back.section(3).line == plan.section(3).line


def test_a_layer_plan_pickles_with_read_only_params() -> None:
    lp = dwf.Plan.from_text(demo_cfg_text())["conv_2"]
    back = pickle.loads(pickle.dumps(lp))
    assert back == lp and dict(back.params) == dict(lp.params)
    assert back.arrays == lp.arrays
    try:
        back.params["filters"] = 1  # type: ignore[index]
    except TypeError:
        pass
    else:  # pragma: no cover - the assertion below reports it
        raise AssertionError("params must stay read-only after unpickling")


def test_a_process_pool_takes_a_plan() -> None:
    plan = dwf.Plan.from_text(demo_cfg_text())
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        assert list(pool.map(_total, [plan, plan])) == [plan.total_floats] * 2


# -- many files on a real process pool: with a plan, every verb works; what cannot travel says
# so at once; nothing hangs (each case runs in a child process with a deadline, so that a hang
# fails the test instead of stalling the suite).
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

TESTS = Path(__file__).resolve().parent


def die(path: str) -> None:
    """A verb whose worker process dies (a crash in a native library, the OOM killer)."""
    os._exit(3)


def _in_child(code: str, cwd: Path, timeout: float = 120) -> str:
    script = f"import sys\nsys.path.insert(0, {str(TESTS)!r})\n" + textwrap.dedent(code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"hung (no end after {timeout} s): {e.stdout!r} {e.stderr!r}")
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def two(tmp_path: Path) -> Path:
    from dwf.tools.demo import write_demo

    write_demo(tmp_path)
    (tmp_path / "b.weights").write_bytes((tmp_path / "demo.weights").read_bytes())
    return tmp_path


def test_every_verb_runs_with_a_plan_on_a_process_pool(two: Path) -> None:
    out = _in_child(
        """
        import dwf
        plan = dwf.plan("demo.cfg")
        files = ["demo.weights", "b.weights"]
        for verb in (dwf.check, dwf.stats, dwf.info):
            rows = list(dwf.each(verb, files, cfg=plan, jobs=2))
            print(verb.__name__, [r.ok for r in rows], [r.error for r in rows if not r.ok])
        print("identify", [r.ok for r in dwf.each(dwf.identify, files, jobs=2)])
        series = dwf.drift(files + ["demo.weights"], cfg=plan, jobs=2)
        print("drift", len(series), all(r.identical for r in series))
        # the deprecated list call takes the same road
        import warnings
        warnings.simplefilter("ignore", DeprecationWarning)
        print("old", [r.ok for r in dwf.stats(files, cfg=plan, jobs=2)])
        """,
        two,
    )
    assert out.splitlines() == [
        "check [True, True] []",
        "stats [True, True] []",
        "info [True, True] []",
        "identify [True, True]",
        "drift 2 True",
        "old [True, True]",
    ]


def test_open_files_say_they_do_not_pickle(two: Path) -> None:
    import copy
    import pickle

    with dwf.open(two / "demo.weights") as f:
        for thing in (f, f["conv_0"]):
            for how in (pickle.dumps, copy.deepcopy, copy.copy):
                with pytest.raises(dwf.DwfError, match="open file") as err:
                    how(thing)
                assert "dwf.open(" in str(err.value) and "path" in str(err.value)
        # in this process an open file is a source like any other; to a pool it cannot go
        assert [r.ok for r in dwf.each(dwf.check, [f], jobs=1)] == [True]
        with pytest.raises(dwf.DwfError, match="open file"):
            dwf.each(dwf.check, [f, two / "b.weights"], jobs=2)


def test_what_cannot_travel_is_one_error_at_the_call_not_a_hang(two: Path) -> None:
    out = _in_child(
        """
        import dwf
        try:
            list(dwf.each(dwf.stats, ["demo.weights", "b.weights"], jobs=2,
                          progress=lambda *a: None))
        except dwf.DwfError as e:
            print("refused:", "progress" in str(e), "jobs=1" in str(e))
        def outer():
            def local(path):
                return 1
            return local
        local = outer()
        try:
            list(dwf.each(local, ["demo.weights", "b.weights"], jobs=2))
        except dwf.DwfError as e:
            print("refused:", "local" in str(e), "jobs=1" in str(e))
        print(len(list(dwf.each(local, ["demo.weights", "b.weights"], jobs=1))))
        """,
        two,
    )
    assert out.splitlines() == ["refused: True True", "refused: True True", "2"]


def test_a_dying_worker_ends_the_run_with_one_error(two: Path) -> None:
    out = _in_child(
        """
        import dwf
        from test_records_travel import die
        try:
            list(dwf.each(die, ["demo.weights", "b.weights", "demo.weights"], jobs=2))
        except dwf.DwfError as e:
            print("error:", "worker died" in str(e))
        rows = dwf.each(dwf.check, ["demo.weights"] * 40, jobs=2)
        next(rows)
        rows.close()   # breaking off early ends the pool without waiting for the rest
        print("closed")
        """,
        two,
    )
    assert out.splitlines() == ["error: True", "closed"]
