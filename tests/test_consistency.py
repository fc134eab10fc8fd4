"""One consistency rule for every whole-file read (issue 21, #4 and #5): whatever reads a file
or a URL in several pieces checks that it is the same file after the last piece as well as
before the first, and fails with FileChangedError — never returns a mix of two versions.

Local files: a same-size rewrite *in place* while a command reads. Two cases:

* the file was modified moments before the read began (as a checkpoint Darknet is writing), and
  the rewrite leaves its size and modification time as they were — what a rewrite within the file
  system's timestamp granularity does (simulated here by putting the time back): only the bytes
  can tell, so dwf checks the bytes it read again;
* an old file (modified an hour ago) rewritten during the *last* read of the command: its new
  modification time tells, if someone looks after the last piece.

The rewrite is made from inside the read functions dwf calls (``os.preadv``, ``os.pread``,
``os.copy_file_range``), just before the k-th read of the file's body, so it lands between two
pieces deterministically.

Remote files: a real HTTP server on 127.0.0.1 that serves a new version (a new ETag) part way
through and ignores ``If-Match``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from small_net import random_arrays, write_model

import dwf

HEADER = 20  # the test model's header: reads at or past it are reads of the body


class Rewriter:
    """Counts the reads of one file's body made through ``os.preadv``/``os.pread``/
    ``os.copy_file_range`` and, just before the ``at``-th, rewrites the file in place with
    ``new`` (same size); with ``keep_mtime`` its modification time is put back afterwards."""

    def __init__(self, path: Path, new: bytes, at: int | None, keep_mtime: bool) -> None:
        self.path = path
        self.ino = path.stat().st_ino
        self.new = new
        self.at = at
        self.keep_mtime = keep_mtime
        self.reads = 0
        self.done = False

    def _ours(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == self.ino
        except OSError:
            return False

    def before(self, fd: int, offset: int) -> None:
        if offset < HEADER or not self._ours(fd):
            return
        self.reads += 1
        if self.at is not None and self.reads == self.at and not self.done:
            self.done = True
            st = self.path.stat()
            with open(self.path, "r+b") as fh:  # in place: the same inode, the same size
                fh.write(self.new)
            if self.keep_mtime:
                os.utime(self.path, ns=(st.st_atime_ns, st.st_mtime_ns))

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_preadv, real_pread = os.preadv, os.pread

        def preadv(fd: int, buffers: Any, offset: int, *a: Any) -> int:
            self.before(fd, offset)
            return real_preadv(fd, buffers, offset, *a)

        def pread(fd: int, n: int, offset: int) -> bytes:
            self.before(fd, offset)
            return real_pread(fd, n, offset)

        monkeypatch.setattr(os, "preadv", preadv)
        monkeypatch.setattr(os, "pread", pread)
        if hasattr(os, "copy_file_range"):
            real_copy = os.copy_file_range

            def copy_file_range(src: int, dst: int, count: int, *a: Any) -> int:
                offset = a[0] if a and a[0] is not None else HEADER
                self.before(src, offset)
                return real_copy(src, dst, count, *a)

            monkeypatch.setattr(os, "copy_file_range", copy_file_range)


def _other_version(weights: Path, cfg: Path) -> bytes:
    """The same network with other values and the same header: the same size, other bytes."""
    plan = dwf.plan(cfg)
    folder = weights.parent / "other"
    folder.mkdir(exist_ok=True)
    out = folder / "net.weights"
    with dwf.open(weights, cfg) as f:
        header = f.header
    dwf.save(out, plan, random_arrays(plan, seed=7), header=header)
    data = out.read_bytes()
    assert len(data) == weights.stat().st_size and data != weights.read_bytes()
    return data


# Each verb: what it runs (given the weights, the cfg and an output folder), and what it writes.
def _export(ext: str) -> Callable[[Path, Path, Path], Any]:
    def run(w: Path, c: Path, out: Path) -> Any:
        with dwf.open(w, c) as f:
            return dwf.export(f, out / f"out.{ext}")

    return run


def _save(w: Path, c: Path, out: Path) -> Any:
    with dwf.open(w, c) as f:
        return f.save(out / "out.weights")


def _diff(w: Path, c: Path, out: Path) -> Any:
    copy = out / "copy.weights"
    copy.write_bytes(w.read_bytes())
    return dwf.diff(w, copy, cfg=c)


VERBS: dict[str, Callable[[Path, Path, Path], Any]] = {
    "export-npz": _export("npz"),
    "export-safetensors": _export("safetensors"),
    "save": _save,
    "stats": lambda w, c, out: dwf.stats(w, cfg=c),
    "check": lambda w, c, out: dwf.check(w, cfg=c),
    "diff": _diff,
    "fuse": lambda w, c, out: dwf.fuse(w, out / "f.weights", out / "f.cfg", cfg=c),
    "cut": lambda w, c, out: dwf.cut(w, out / "cut.weights", 5, cfg=c),
    "export-pt": _export("pt"),
    "export-onnx-embed": lambda w, c, out: dwf.export(w, out / "m.onnx", cfg=c, embed=True),
}


def _prepare(tmp_path: Path, verb: str) -> tuple[Path, Path, Path, bytes]:
    if verb == "export-pt":
        pytest.importorskip("torch")
    if verb.startswith("export-onnx"):
        pytest.importorskip("onnx")
    weights, cfg = write_model(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    return weights, cfg, out, _other_version(weights, cfg)


def _body_reads(weights: Path, cfg: Path, out: Path, verb: str, mp: pytest.MonkeyPatch) -> int:
    counter = Rewriter(weights, b"", None, False)
    with mp.context() as m:
        counter.install(m)
        VERBS[verb](weights, cfg, out)
    for p in out.iterdir():
        if p.name != "copy.weights":
            p.unlink()
    return counter.reads


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_same_size_rewrite_keeping_mtime_is_never_a_mix(
    tmp_path: Path, verb: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's repro (an npz came out with conv_0 old and conv_1 97.6 % new): rewritten in
    place after the first piece was read, size and modification time as they were."""
    weights, cfg, out, new = _prepare(tmp_path, verb)
    # Modified "just now" when the read begins, however long the verb takes to start (the
    # first import of onnx under load outlasts the 100 ms window): a time a little ahead,
    # with a fraction of a second. Its next modification may not move the time.
    soon = time.time_ns() + 5 * 10**9 + 123_456
    os.utime(weights, ns=(soon, soon))
    rewriter = Rewriter(weights, new, at=2, keep_mtime=True)
    rewriter.install(monkeypatch)
    with pytest.raises(dwf.FileChangedError, match=r"changed|rewritten"):
        VERBS[verb](weights, cfg, out)
    assert rewriter.done
    assert [p.name for p in out.iterdir() if p.name != "copy.weights"] == []


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_old_file_rewritten_during_the_last_piece_is_never_a_mix(
    tmp_path: Path, verb: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old file (its modification time an hour back) rewritten just before the last read: the
    new modification time shows it, but only to a check made after the last piece."""
    weights, cfg, out, new = _prepare(tmp_path, verb)
    hour_ago = time.time_ns() - 3600 * 10**9
    os.utime(weights, ns=(hour_ago, hour_ago))
    total = _body_reads(weights, cfg, out, verb, monkeypatch)
    assert total >= 1
    rewriter = Rewriter(weights, new, at=total, keep_mtime=False)
    rewriter.install(monkeypatch)
    with pytest.raises(dwf.FileChangedError, match=r"changed|rewritten"):
        VERBS[verb](weights, cfg, out)
    assert rewriter.done
    assert [p.name for p in out.iterdir() if p.name != "copy.weights"] == []


def test_an_unchanged_file_reads_without_a_false_alarm(tmp_path: Path) -> None:
    """A fresh file (the bytes are then checked again) and an old one (its identity suffices)
    both read cleanly, through every verb."""
    weights, cfg = write_model(tmp_path)
    for age in (0, 3600):
        for verb, run in VERBS.items():
            if verb in ("export-pt", "export-onnx-embed"):
                continue
            then = time.time_ns() - age * 10**9
            os.utime(weights, ns=(then, then))
            out = tmp_path / f"out-{verb}-{age}"
            out.mkdir()
            run(weights, cfg, out)


def test_a_rewrite_of_the_header_alone_is_seen(tmp_path: Path) -> None:
    """The header was read at open: an export writes it with the body, so a new ``seen``
    written in place (as Darknet does) must not be paired with the old body — or the other way."""
    weights, cfg = write_model(tmp_path)
    hour_ago = time.time_ns() - 3600 * 10**9
    os.utime(weights, ns=(hour_ago, hour_ago))
    with dwf.open(weights, cfg) as f:
        data = bytearray(weights.read_bytes())
        data[12:20] = (999_999).to_bytes(8, "little")
        st = weights.stat()
        with open(weights, "r+b") as fh:
            fh.write(data[:20])
        os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))  # as if within one tick
        with pytest.raises(dwf.FileChangedError):
            dwf.export(f, tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


# -- remote ---------------------------------------------------------------------------------------
pytest.importorskip("fsspec")
pytest.importorskip("aiohttp")
from remote_servers import StaticServer, VersionedServer  # noqa: E402


@pytest.fixture
def server() -> Iterator[VersionedServer]:
    s = VersionedServer().start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def versions(tmp_path: Path) -> tuple[bytes, bytes, bytes, Path, Path]:
    weights, cfg = write_model(tmp_path)
    new = _other_version(weights, cfg)
    return weights.read_bytes(), new, cfg.read_bytes(), weights, cfg


REMOTE_VERBS: dict[str, Callable[[str, str, Path], Any]] = {
    "export-npz": lambda u, c, out: dwf.export(u, out / "x.npz", cfg=c),
    "export-safetensors": lambda u, c, out: dwf.export(u, out / "x.safetensors", cfg=c),
    "stats": lambda u, c, out: dwf.stats(u, cfg=c),
    "check": lambda u, c, out: dwf.check(u, cfg=c),
    "cut": lambda u, c, out: dwf.cut(u, out / "x.weights", 5, cfg=c),
}


@pytest.mark.slow  # an HTTP server per case (~0.5 s each)
@pytest.mark.parametrize("verb", sorted(REMOTE_VERBS))
def test_server_serving_a_new_version_mid_read_gives_file_changed(
    server: VersionedServer, versions: Any, tmp_path: Path, verb: str
) -> None:
    """The server ignores If-Match and, after two GETs of the weights, serves a new version
    (new ETag): the third response's ETag is not the one opened."""
    old, new, cfg_bytes, _, _ = versions
    url = server.put("net.weights", old, new, switch_after=2)
    cfg_url = server.put("net.cfg", cfg_bytes)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(dwf.FileChangedError, match=r"changed on the server.*net\.weights-v1"):
        REMOTE_VERBS[verb](url, cfg_url, out)
    assert list(out.iterdir()) == []


def test_weak_etag_with_a_strict_if_match_server_is_not_a_change(
    server: VersionedServer, versions: Any, tmp_path: Path
) -> None:
    """A weak ETag never matches If-Match (strong comparison): a strict server answers 412 to
    every conditional range request of an unchanged file."""
    old, _, cfg_bytes, weights, cfg = versions
    server.weak_etag = server.strict_if_match = True
    url = server.put("net.weights", old)
    cfg_url = server.put("net.cfg", cfg_bytes)
    report = dwf.check(url, cfg=cfg_url)
    assert report.findings == dwf.check(weights, cfg=cfg).findings
    with dwf.open(url, cfg=cfg_url) as f, dwf.open(weights, cfg) as local:
        np.testing.assert_array_equal(f["connected_4"].weights, local["connected_4"].weights)


def test_weak_etag_still_catches_a_new_version(
    server: VersionedServer, versions: Any, tmp_path: Path
) -> None:
    old, new, cfg_bytes, _, _ = versions
    server.weak_etag = True
    url = server.put("net.weights", old, new, switch_after=2)
    cfg_url = server.put("net.cfg", cfg_bytes)
    with pytest.raises(dwf.FileChangedError, match="changed on the server"):
        dwf.export(url, tmp_path / "x.npz", cfg=cfg_url)


def test_a_206_reply_larger_than_asked_is_cut_off(
    server: VersionedServer, versions: Any
) -> None:
    """200 MB of body for a 64 KiB range: dwf reads what it asked for and drops the
    connection; the server gets to send little more than the socket buffers hold."""
    old, _, cfg_bytes, weights, cfg = versions
    server.oversize = 200_000_000
    url = server.put("net.weights", old)
    cfg_url = server.put("net.cfg", cfg_bytes)
    with dwf.open(url, cfg=cfg_url) as f, dwf.open(weights, cfg) as local:
        np.testing.assert_array_equal(f["conv_0"].weights, local["conv_0"].weights)
        np.testing.assert_array_equal(f["connected_4"].weights, local["connected_4"].weights)
    sent = sum(r.body_bytes for r in server.gets("net.weights"))
    assert sent < 64_000_000, sent


@pytest.mark.parametrize("honest_head", [True, False])
def test_a_huge_remote_cfg_is_refused_within_the_bound(
    server: VersionedServer, versions: Any, honest_head: bool
) -> None:
    """A 256 MiB cfg: refused by its size when the server says it, and cut off after 64 MiB when
    it does not (no length in its reply, a HEAD that says 1000 bytes) — never downloaded whole."""
    old, _, _, _, _ = versions
    url = server.put("net.weights", old)
    size = 256 << 20
    big = server.put_huge("big.cfg", size, b"[net]\n# padding padding padding\n")
    if not honest_head:
        server.lie_head = {"big.cfg": 1000}
        server.hide_length = {"big.cfg"}
    with pytest.raises(dwf.CfgError, match="64 MiB"):
        dwf.open(url, cfg=big)
    sent = sum(r.body_bytes for r in server.gets("big.cfg"))
    assert sent <= (64 << 20) + (16 << 20), sent


def test_server_ignoring_ranges_is_read_once_into_a_temporary_file(
    tmp_path: Path, versions: Any
) -> None:
    """``python -m http.server`` answers every GET with the whole file: dwf reads it once into a
    bounded temporary file, checks it is the file it opened, and goes on (issue 25)."""
    _, _, _, weights, cfg = versions
    server = StaticServer(tmp_path).start()
    try:
        url, cfg_url = f"{server.url}/net.weights", f"{server.url}/net.cfg"
        local = dwf.check(weights, cfg=cfg)
        assert dwf.check(url, cfg=cfg_url).findings == local.findings
        with dwf.open(url, cfg=cfg_url) as f, dwf.open(weights, cfg) as g:
            for name, view in g.arrays():
                layer, array = name.split(".")
                np.testing.assert_array_equal(f[layer][array], view)
        assert dwf.diff(url, weights, cfg=cfg).changed == ()
        with pytest.raises(dwf.DwfError, match="download_limit"):
            dwf.check(url, cfg=cfg_url, storage_options={"download_limit": 100_000})
    finally:
        server.stop()


def test_a_download_reports_its_progress(tmp_path: Path, versions: Any) -> None:
    """The command line's progress bar listens here (dwf.io.source.transfer_progress)."""
    from dwf.io.source import reporting_transfers

    _, _, _, weights, cfg = versions
    calls: list[tuple[int, int, str]] = []
    server = StaticServer(tmp_path).start()
    try:
        with reporting_transfers(lambda done, total, name: calls.append((done, total, name))):
            dwf.check(f"{server.url}/net.weights", cfg=cfg)
    finally:
        server.stop()
    size = weights.stat().st_size
    assert calls and calls[-1][:2] == (size, size) and calls[-1][2].endswith("net.weights")
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)


def test_cli_check_of_a_url_on_http_server(tmp_path: Path, versions: Any, capsys: Any) -> None:
    from dwf.interfaces.cli import main

    _, _, _, _, cfg = versions
    server = StaticServer(tmp_path).start()
    try:
        url = f"{server.url}/net.weights"
        assert main(["check", url, "--cfg", f"{server.url}/net.cfg"]) == 0
        assert "scanned" in capsys.readouterr().out
        code = main(
            ["check", url, "--cfg", str(cfg), "--storage-option", "download_limit=1000"]
        )
        assert code == 2
        assert "download_limit" in capsys.readouterr().err
    finally:
        server.stop()


@pytest.mark.parametrize("command", ["detect", "export"])
def test_cli_storage_options_reach_every_command_that_takes_them(
    tmp_path: Path, versions: Any, capsys: Any, command: str
) -> None:
    """``--storage-option`` is read by every command that offers it (detect ignored it)."""
    from dwf.interfaces.cli import main

    _, _, _, _, cfg = versions
    server = StaticServer(tmp_path).start()
    try:
        url = f"{server.url}/net.weights"
        rest = [str(tmp_path / ("photo.png" if command == "detect" else "out.npz"))]
        # read when the URL is opened, before any command's own work
        code = main(
            [command, url, "--cfg", str(cfg), *rest, "--storage-option", "download_limit=lots"]
        )
        assert code == 2
        assert "download_limit" in capsys.readouterr().err
    finally:
        server.stop()


def test_a_download_of_another_version_is_refused(
    server: VersionedServer, versions: Any
) -> None:
    """The whole-file read of a server that ignores ranges must be the file opened: a new ETag
    on that response is a FileChangedError."""
    old, new, cfg_bytes, _, _ = versions
    server.ignore_ranges = True
    url = server.put("net.weights", old, new, switch_after=1)
    cfg_url = server.put("net.cfg", cfg_bytes)
    with pytest.raises(dwf.FileChangedError, match="changed on the server"):
        dwf.check(url, cfg=cfg_url)


SECRETS = ("hunter2", "c2lnbmF0dXJl", "AKIAEXAMPLE")


def test_credentials_in_urls_never_appear_in_messages_or_reprs(
    server: VersionedServer, versions: Any, tmp_path: Path
) -> None:
    old, new, cfg_bytes, _, _ = versions
    server.put("net.weights", old, new, switch_after=2)
    server.put("net.cfg", cfg_bytes)
    host = server.url.split("://", 1)[1]
    query = "?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=c2lnbmF0dXJl"
    url = f"http://alice:hunter2@{host}/net.weights{query}"
    missing = f"http://alice:hunter2@{host}/missing.weights{query}"
    cfg_url = f"http://alice:hunter2@{host}/net.cfg{query}"
    texts: list[str] = []
    with pytest.raises(dwf.DwfError) as e1:
        dwf.open(missing, cfg=cfg_url)
    texts.append(str(e1.value))
    with dwf.open(url, cfg=cfg_url) as f:
        texts += [repr(f), f.path, str(f.cfg_path), repr(f.plan)]
        with pytest.raises(dwf.FileChangedError) as e2:
            dwf.export(f, tmp_path / "x.npz")
        texts.append(str(e2.value))
    with pytest.raises(dwf.DwfError) as e3:
        dwf.open(f"http://bob:hunter2@127.0.0.1:9/x.weights{query}", cfg=cfg_url)
    texts.append(str(e3.value))
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, text


def _fails_naming(src: str) -> None:
    raise ValueError(f"cannot use {src}")


def test_rows_of_urls_with_credentials_show_them_redacted(
    server: VersionedServer, versions: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Failed before: Row.path kept the URL as given, credentials and all, and rows are printed
    # (dwf check URL) and written as JSON (--json)
    from dwf.interfaces.cli import main

    old, _, cfg_bytes, _, _ = versions
    server.put("net.weights", old)
    server.put("net.cfg", cfg_bytes)
    host = server.url.split("://", 1)[1]
    query = "?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=c2lnbmF0dXJl"
    url = f"http://alice:hunter2@{host}/net.weights{query}"
    missing = f"http://alice:hunter2@{host}/missing.weights{query}"
    cfg_url = f"http://alice:hunter2@{host}/net.cfg{query}"
    rows = dwf.Rows(dwf.each(dwf.check, [url, missing], jobs=1, cfg=cfg_url))
    assert [r.ok for r in rows] == [True, False]
    assert rows[0].path == dwf.errors.redact(url) and "alice" not in rows[0].path
    texts = [r.path for r in rows] + [str(rows), rows._repr_html_()]
    texts += [json.dumps(r.to_dict()) for r in rows]
    (odd,) = dwf.each(_fails_naming, url, jobs=1)
    texts += [odd.path, str(odd.error)]
    assert main(["check", url, missing, "--cfg", cfg_url, "--json"]) == 2
    assert main(["check", url, missing, "--cfg", cfg_url]) == 2
    texts += list(capsys.readouterr())
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, text


def test_storage_options_on_the_command_line() -> None:
    from dwf.interfaces.cli.options import parse_storage_options

    got = parse_storage_options(
        [
            "anon=true",
            "block_size=1048576",
            "download_limit=2GB",
            "client_kwargs.endpoint_url=http://127.0.0.1:9000",
            'config_kwargs={"retries": {"max_attempts": 3}}',
            "key=abc=def",
            "version_aware=false",
            "token=null",
        ]
    )
    assert got == {
        "anon": True,
        "block_size": 1048576,
        "download_limit": "2GB",
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"},
        "config_kwargs": {"retries": {"max_attempts": 3}},
        "key": "abc=def",
        "version_aware": False,
        "token": None,
    }
    with pytest.raises(dwf.DwfError, match="KEY=VALUE"):
        parse_storage_options(["no-equals-sign"])
