"""One signature per verb: ``check``, ``stats`` and ``identify`` take one file and return one
report; ``dwf.each`` runs any verb over many files (files, folders, globs) and streams its rows
in order; the old list calls still work for one release, with a ``DeprecationWarning``; ``drift``
takes one series."""

from __future__ import annotations

import concurrent.futures
import inspect
import warnings
from pathlib import Path

import pytest
from remote_helpers import small_checkpoint

import dwf


@pytest.fixture
def run(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    for i in range(1, 5):
        small_checkpoint(folder, f"net_{i}000", seed=i, nan=i == 3)
    (folder / "net_broken.weights").write_bytes(b"not weights\n" * 4)
    return folder


@pytest.mark.parametrize("verb", ["check", "stats", "identify"])
def test_each_verb_has_one_form(verb: str) -> None:
    params = inspect.signature(getattr(dwf, verb)).parameters
    assert "jobs" not in params and "executor" not in params
    hints = str(params[next(iter(params))].annotation)
    assert "list" not in hints and "Many" not in hints


def test_each_runs_any_verb_over_files_folders_and_globs_in_order(run: Path) -> None:
    rows = list(dwf.each(dwf.check, [run], jobs=1))
    names = [Path(r.path).name for r in rows]
    assert names == [f"net_{i}000.weights" for i in range(1, 5)] + ["net_broken.weights"]
    assert [r.ok for r in rows] == [True] * 4 + [False]
    assert [r.result.serious for r in rows if r.result is not None] == [False, False, True, False]
    assert all(isinstance(r, dwf.Row) for r in rows)
    # options go to the verb; the same rows from a pool, a thread pool and a plain loop
    plan = dwf.plan(run / "net.cfg")
    loop = list(dwf.each(dwf.stats, [run / "net_*000.weights"], cfg=plan, layers=[0], jobs=1))
    assert loop[0].result == dwf.stats(run / "net_1000.weights", layers=[0])
    pool = list(dwf.each(dwf.stats, [run / "net_*000.weights"], cfg=plan, layers=[0], jobs=2))
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        threads = list(
            dwf.each(dwf.stats, [run / "net_*000.weights"], cfg=plan, layers=[0], executor=ex)
        )
    assert loop == pool == threads
    ids = list(dwf.each(dwf.identify, [run / "net_1000.weights"], nearby=False))
    assert ids[0].result == dwf.identify(run / "net_1000.weights", nearby=False)


def test_each_streams(run: Path) -> None:
    rows = dwf.each(dwf.check, [run], jobs=1)
    assert inspect.isgenerator(rows)
    first = next(rows)
    assert Path(first.path).name == "net_1000.weights"
    rows.close()


def test_each_checks_its_arguments_at_the_call(run: Path) -> None:
    with pytest.raises(dwf.DwfError, match="jobs"):
        dwf.each(dwf.check, [run], jobs=0)
    # one folder or glob alone is one source, not a string of characters
    assert [r.path for r in dwf.each(dwf.check, run, jobs=1)] == [
        r.path for r in dwf.each(dwf.check, [run], jobs=1)
    ]
    with pytest.raises(dwf.DwfError, match="diff"):
        dwf.each(dwf.diff, [run])  # diff takes two files: drift is its series


@pytest.mark.parametrize("verb", ["check", "stats", "identify"])
def test_the_old_list_call_works_with_a_deprecation_warning(run: Path, verb: str) -> None:
    fn = getattr(dwf, verb)
    with pytest.warns(DeprecationWarning, match=rf"dwf\.each\(dwf\.{verb}"):
        rows = list(fn([run], jobs=1))
    assert [r.path for r in rows] == [r.path for r in dwf.each(fn, [run], jobs=1)]
    assert [r.result for r in rows] == [r.result for r in dwf.each(fn, [run], jobs=1)]
    with pytest.warns(DeprecationWarning), concurrent.futures.ThreadPoolExecutor(2) as ex:
        # a tuple too, and executor=
        assert len(list(fn((str(run / "net_1000.weights"),), executor=ex))) == 1
    # one file: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fn(run / "net_1000.weights")


def test_drift_takes_one_series(run: Path) -> None:
    good = [run / f"net_{i}000.weights" for i in range(1, 5)]
    series = dwf.drift(good)
    assert [r.seen_b for r in series] == [2000, 3000, 4000]
    # a folder or a glob is a series too, without a list around it
    for broken in (run / "net_broken.weights",):
        broken.unlink()
    assert dwf.drift(run) == series
    assert dwf.drift(str(run / "net_*.weights")) == series
    assert dwf.drift(good, jobs=2) == series
    params = inspect.signature(dwf.drift).parameters
    assert next(iter(params)) == "series"
