"""Many files: dwf.each(check/stats/identify) and the drift series over lists, folders and globs,
on a process pool, a thread pool, a Dask cluster (started here on 127.0.0.1) and a plain loop;
all give the same rows, in order, with one error row per unreadable file."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest
from remote_helpers import small_checkpoint

import dwf
from dwf.tools.batch import expand, natural_key


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A training run: run_1000 … run_12000 (run_5000 with a NaN), a broken file, a cfg."""
    folder = tmp_path / "run-a"
    for i in range(1, 13):
        small_checkpoint(folder, f"run_{i * 1000}", seed=i, nan=i == 5)
    (folder / "run_last.weights").write_bytes(b"not weights at all, just text\n" * 3)
    (folder / "notes.txt").write_text("not picked up")
    return folder


def test_folder_and_glob_expand_in_natural_order(run: Path) -> None:
    files = expand([run])
    names = [Path(p).name for p in files]
    assert names[:3] == ["run_1000.weights", "run_2000.weights", "run_3000.weights"]
    assert names[-2:] == ["run_12000.weights", "run_last.weights"]
    assert "notes.txt" not in names
    assert expand([str(run / "run_1?000.weights")]) == [
        str(run / f"run_{i}000.weights") for i in (10, 11, 12)
    ]
    # a glob matching nothing stays, to become an error row
    assert expand([str(run / "nothing_*.weights")]) == [str(run / "nothing_*.weights")]
    assert sorted(["a_10", "a_9", "a_100"], key=natural_key) == ["a_9", "a_10", "a_100"]


def test_check_many_gives_one_row_per_file_in_order(run: Path) -> None:
    rows = list(dwf.each(dwf.check, [run], jobs=1))
    assert [Path(r.path).name for r in rows] == [Path(p).name for p in expand([run])]
    broken = [r for r in rows if not r.ok]
    assert [Path(r.path).name for r in broken] == ["run_last.weights"]
    assert broken[0].result is None and "not a Darknet weights file" in (broken[0].error or "")
    serious = [Path(r.path).name for r in rows if r.result is not None and r.result.serious]
    assert serious == ["run_5000.weights"]
    for r in rows:
        if r.result is not None:
            assert r.result == dwf.check(r.path)
    assert rows[0].to_dict()["path"] == rows[0].path and "findings" in rows[0].to_dict()
    assert broken[0].to_dict() == {"path": broken[0].path, "error": broken[0].error}


def test_process_pool_thread_pool_and_loop_agree(run: Path) -> None:
    loop = list(dwf.each(dwf.check, [run], jobs=1))
    pool = list(dwf.each(dwf.check, [run], jobs=2))
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        threads = list(dwf.each(dwf.check, [str(run / "*.weights")], executor=ex))
    assert pool == loop == threads


def test_stats_and_identify_many(run: Path) -> None:
    rows = list(dwf.each(dwf.stats, [run / "run_1000.weights", run / "run_last.weights"], jobs=1))
    assert rows[0].result == dwf.stats(run / "run_1000.weights")
    assert rows[1].error is not None and rows[1].result is None
    ids = list(dwf.each(dwf.identify, [run], jobs=2))
    assert len(ids) == 13 and ids[0].result == dwf.identify(run / "run_1000.weights")


def test_drift_over_a_glob(run: Path) -> None:
    pattern = str(run / "run_*000.weights")
    series = dwf.drift([pattern])
    assert len(series) == 11
    assert [r.seen_b for r in series] == [1000 * i for i in range(2, 13)]
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        assert dwf.drift([pattern], executor=ex) == series
    assert dwf.drift([pattern], jobs=2) == series
    with pytest.raises(dwf.DwfError, match="not a Darknet weights file"):
        dwf.drift([run / "run_1000.weights", run / "run_last.weights"], jobs=2)


def test_bad_jobs_is_a_dwf_error(run: Path) -> None:
    with pytest.raises(dwf.DwfError, match="jobs"):
        list(dwf.each(dwf.check, [run], jobs=0))


@pytest.mark.slow  # starts a Dask cluster (~1.1 s)
def test_dask_cluster_gives_the_same_rows_as_a_pool_and_a_loop(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    folder = tmp_path / "fifty"
    for i in range(1, 51):
        small_checkpoint(folder, f"net_{i}", seed=i, nan=i % 17 == 0)
    (folder / "net_broken.weights").write_bytes(b"\x00" * 7)
    loop = list(dwf.each(dwf.check, [folder], jobs=1))
    pool = list(dwf.each(dwf.check, [folder], jobs=2))
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        on_dask = list(dwf.each(dwf.check, [folder], executor=client.get_executor()))
    assert len(loop) == 51
    assert on_dask == pool == loop
    assert sum(not r.ok for r in loop) == 1
    assert [Path(r.path).name for r in loop if r.result is not None and r.result.serious] == [
        "net_17.weights",
        "net_34.weights",
    ]


def test_a_url_without_fsspec_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "fsspec", None)  # as if not installed
    with pytest.raises(dwf.DwfError, match=r"pip install 'dwf-darknet\[remote\]'"):
        dwf.open("https://127.0.0.1:9/x.weights")


def test_a_row_takes_a_path_object_as_it_did() -> None:
    # Failed before: Row.path's redacting converter took only text, so dwf.Row(Path(...), r)
    # raised TypeError ("argument of type 'PosixPath' is not iterable"), which it never had
    row = dwf.Row(Path("runs") / "x.weights", None, "x.weights: not found")
    assert row.path == str(Path("runs") / "x.weights") and row.to_dict()["path"] == row.path
