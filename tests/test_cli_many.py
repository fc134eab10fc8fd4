"""The command line with URLs and many files: every reading command takes a URL (a real HTTP
server on 127.0.0.1), and check/stats/identify take many files, folders and globs with --jobs."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from remote_helpers import small_checkpoint

from dwf.interfaces.cli import main


@pytest.fixture
def run(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    for i in range(1, 6):
        small_checkpoint(folder, f"net_{i}000", seed=i, nan=i == 3)
    return folder


def test_check_many_streams_one_report_per_file(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(run / "net_1000.weights"), str(run / "net_2000.weights")]) == 0
    out = capsys.readouterr().out
    assert out.index("net_1000.weights: scanned") < out.index("net_2000.weights: scanned")
    # a folder, --jobs 2: a NaN in net_3000 is a finding (exit 1)
    assert main(["check", str(run), "--jobs", "2"]) == 1
    out = capsys.readouterr().out
    assert [ln.split(":")[0].rsplit("/", 1)[1] for ln in out.splitlines() if "scanned" in ln] == [
        f"net_{i}000.weights" for i in range(1, 6)
    ]


def test_unreadable_file_is_an_error_row_and_exit_2(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run / "net_9000.weights").write_bytes(b"<html>not found</html>")
    assert main(["check", str(run / "net_*.weights"), "--jobs", "1", "--json"]) == 2
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert len(lines) == 6
    assert [Path(d["path"]).name for d in lines][-1] == "net_9000.weights"
    assert lines[-1]["error"] and "findings" not in lines[-1]
    assert lines[2]["serious"] is True and lines[0]["error"] is None


def test_stats_and_identify_many(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", str(run), "-j", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count(": 12 arrays") == 5
    # no known network matches, but the cfg beside them fits every file (docs/identify.md)
    assert main(["identify", str(run), "-j", "1", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 5
    assert main(["stats", str(run), "--layers", "0"]) == 2
    assert "give one file" in capsys.readouterr().err


@pytest.fixture
def served(run: Path) -> Iterator[str]:
    pytest.importorskip("fsspec")
    pytest.importorskip("aiohttp")
    from remote_servers import HttpServer

    server = HttpServer(run).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["info"], 0),
        (["stats"], 0),
        (["check"], 0),
        (["identify"], 1),
        (["diff", "{url}/net_2000.weights"], 0),
    ],
)
def test_reading_commands_take_urls(
    served: str, run: Path, command: list[str], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"{served}/net_1000.weights"
    argv = [command[0], url, *(a.format(url=served) for a in command[1:])]
    assert main(argv) == code, capsys.readouterr().err
    assert "net_1000.weights" in capsys.readouterr().out


def test_cut_and_export_of_a_url_write_local_files(
    served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"{served}/net_1000.weights"
    assert main(["cut", url, str(tmp_path / "cut.weights"), "2"]) == 0
    assert (tmp_path / "cut.weights").stat().st_size > 20
    assert main(["export", url, str(tmp_path / "net.npz")]) == 0
    assert (tmp_path / "net.npz").exists()
    assert main(["check", url, f"{served}/missing.weights", "-j", "1"]) == 2
    out = capsys.readouterr().out
    assert "missing.weights: error:" in out and "not found" in out


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_counts_bytes_of_a_url_and_files_of_many(
    served: str, run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = _Tty()
    monkeypatch.setattr(sys, "stderr", stream)
    # a URL is long work whatever its size: the bar shows, with the megabytes read so far
    assert main(["check", f"{served}/net_1000.weights"]) == 0
    assert "\rcheck [" in stream.getvalue() and " MB " in stream.getvalue()
    stream.seek(0)
    stream.truncate()
    assert main(["check", str(run / "net_1000.weights"), str(run / "net_2000.weights")]) == 0
    assert "check: 2 files done" in stream.getvalue()
    capsys.readouterr()


def test_diff_series_over_a_glob(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(run / "net_*.weights"), "--json"]) == 0
    series = json.loads(capsys.readouterr().out)["series"]
    assert [(r["seen_a"], r["seen_b"]) for r in series] == [
        (1000, 2000),
        (2000, 3000),
        (3000, 4000),
        (4000, 5000),
    ]


def test_a_folder_without_weights_says_so_and_errors_stay_one_line(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Found by a new user: a folder whose files lie in subfolders said "is a directory", and a
    # file that did not fit its cfg printed its multi-line diagnosis among the rows.
    parent = tmp_path / "runs"
    (parent / "a").mkdir(parents=True)
    assert main(["identify", str(parent), "-j", "1"]) == 2
    out = capsys.readouterr().out
    assert "no weights files in this folder" in out and "subfolders are not searched" in out
    short = run / "net_9000.weights"
    short.write_bytes((run / "net_1000.weights").read_bytes()[:200])
    assert main(["check", str(run / "net_1000.weights"), str(short), "-j", "1"]) == 2
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 2 and rows[1].startswith(f"{short}: error: ")
