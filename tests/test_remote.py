"""Remote files, against real servers on 127.0.0.1: an HTTP server with range support (aiohttp's
static files) and an S3-compatible one (moto's standalone server), both with request logs.

Skipped when the optional packages are missing (the test extra installs them:
``pip install '.[test]'``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from remote_helpers import YOLOV4_SIZE, small_checkpoint, sparse_yolov4

import dwf

pytest.importorskip("fsspec")
pytest.importorskip("aiohttp")

from remote_servers import HttpServer, S3Server

from dwf.io.remote import RemoteSource

KIB = 1024
BLOCK = 64 * KIB


@pytest.fixture
def served(tmp_path: Path) -> Iterator[HttpServer]:
    server = HttpServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def yolov4(served: HttpServer, conformance_dir: Path) -> tuple[str, str, dict[str, np.ndarray]]:
    cfg = conformance_dir / "cfg" / "alexeyab" / "yolov4.cfg"
    (served.root / "yolov4.cfg").write_bytes(cfg.read_bytes())
    conv12 = sparse_yolov4(served.root / "yolov4.weights", cfg)
    return f"{served.url}/yolov4.weights", f"{served.url}/yolov4.cfg", conv12


def test_open_transfers_one_small_range_plus_the_cfg(served: HttpServer, yolov4) -> None:
    url, cfg_url, _ = yolov4
    cfg_bytes = (served.root / "yolov4.cfg").stat().st_size
    with dwf.open(url, cfg=cfg_url) as f:
        assert f.size == YOLOV4_SIZE
        assert f.backend == "remote"
        assert f.header.seen == 32013312
        assert f.complete
    weights_gets = [r for r in served.gets() if r.path == "/yolov4.weights"]
    assert len(weights_gets) == 1 and weights_gets[0].range is not None
    assert served.transferred <= 64 * KIB + cfg_bytes
    assert sum(r.body_bytes for r in weights_gets) <= 64 * KIB


def test_one_layer_transfers_its_bytes_plus_at_most_one_block(served: HttpServer, yolov4) -> None:
    url, cfg_url, conv12 = yolov4
    with dwf.open(url, cfg=cfg_url) as f:
        served.log.clear()
        layer = f["conv_12"]
        arrays = layer.arrays
        for name, want in conv12.items():
            np.testing.assert_array_equal(arrays[name], want)
        assert not arrays["weights"].flags.writeable
        assert arrays["weights"].base is not None or arrays["weights"].flags.owndata
        start, stop = layer.span
        assert 0 < served.transferred <= (stop - start) + BLOCK
        # the same layer again comes from the cache or costs only its own bytes
        served.log.clear()
        np.testing.assert_array_equal(f["conv_12"].weights, conv12["weights"])
        assert served.transferred <= stop - start


def test_the_cache_stays_bounded(served: HttpServer, yolov4) -> None:
    url, cfg_url, _ = yolov4
    with dwf.open(url, cfg=cfg_url) as f:
        source = f.source
        assert isinstance(source, RemoteSource)
        for name in list(f)[:40]:
            f[name].biases  # noqa: B018 - small arrays: each one block of read-ahead
        assert len(source._cache) <= source.max_blocks
        assert sum(map(len, source._cache.values())) <= source.max_blocks * source.block_size


def test_large_array_is_fetched_exactly(served: HttpServer, yolov4) -> None:
    url, cfg_url, _ = yolov4
    with dwf.open(url, cfg=cfg_url) as f:
        spec = f.plan.layer("conv_104").array("weights")
        assert spec is not None and spec.nbytes > BLOCK
        served.log.clear()
        w = f["conv_104"].weights
        assert w is not None and w.shape == spec.shape
        assert served.transferred == spec.nbytes
        assert len(served.gets()) == 1


def test_file_replaced_on_the_server_raises_file_changed(served: HttpServer, yolov4) -> None:
    url, cfg_url, _ = yolov4
    path = served.root / "yolov4.weights"
    with dwf.open(url, cfg=cfg_url) as f:
        f["conv_0"].weights  # noqa: B018 - a first read works
        # the same size, other bytes: only the identity (ETag) tells them apart
        other = served.root / "other.weights"
        sparse_yolov4(other, None, seen=1)
        st = path.stat()
        os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        os.replace(other, path)
        with pytest.raises(dwf.FileChangedError, match="changed on the server"):
            f["conv_104"].weights  # noqa: B018


def test_server_going_away_gives_a_clear_error(served: HttpServer, yolov4) -> None:
    url, cfg_url, _ = yolov4
    with dwf.open(url, cfg=cfg_url) as f:
        served.stop()
        t0 = time.monotonic()
        with pytest.raises(dwf.DwfError, match=r"yolov4\.weights.*cannot reach the server"):
            f["conv_104"].weights  # noqa: B018
        assert time.monotonic() - t0 < 30


@pytest.mark.slow  # waits for a timeout (~1.5 s)
def test_server_not_answering_times_out(served: HttpServer, yolov4) -> None:
    import aiohttp

    url, cfg_url, _ = yolov4
    options = {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=1.5)}}
    with dwf.open(url, cfg=cfg_url, storage_options=options) as f:
        served.hang = True
        t0 = time.monotonic()
        with pytest.raises(dwf.DwfError, match="timeout"):
            f["conv_104"].weights  # noqa: B018
        assert time.monotonic() - t0 < 10


def test_server_without_range_requests_over_the_download_limit(
    yolov4, served: HttpServer
) -> None:
    """Python's own http.server ignores Range headers: reading past the first block then means
    downloading the whole file (tests/test_consistency.py reads a small one so). Over the
    download limit, dwf says so and how to raise it — and has read only the first block."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served.root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        options = {"download_limit": "100MB"}
        url = f"{base}/yolov4.weights"
        with dwf.open(url, cfg=f"{base}/yolov4.cfg", storage_options=options) as f:
            with pytest.raises(dwf.DwfError, match=r"no range requests|download_limit"):
                f["conv_104"].weights  # noqa: B018
            assert isinstance(f.source, RemoteSource) and f.source.transferred <= 2 * BLOCK
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_missing_file_and_cfg_beside_it(served: HttpServer, tmp_path: Path) -> None:
    with pytest.raises(dwf.DwfError, match="not found"):
        dwf.open(f"{served.url}/nothing.weights", cfg=dwf.plan(small_checkpoint_cfg(tmp_path)))
    weights, cfg = small_checkpoint(served.root, "run_1000", seed=3)
    (served.root / "run.cfg").write_bytes(Path(cfg).read_bytes())
    local = dwf.open(weights)
    # no cfg given: the cfg beside it on the server, by the same names as locally
    with dwf.open(f"{served.url}/run_1000.weights") as f:
        assert f.cfg_path == f"{served.url}/run.cfg"
        for name, view in local.arrays():
            layer, array = name.split(".")
            np.testing.assert_array_equal(f[layer][array], view)
    local.close()


def test_identify_a_url_costs_one_range_request(served: HttpServer, yolov4) -> None:
    url, _, _ = yolov4
    served.log.clear()
    ident = dwf.identify(url)
    assert any("yolov4" in m.name for m in ident.matches)
    assert len(served.gets()) == 1 and served.gets()[0].range is not None
    assert served.transferred <= 4 * KIB


def test_verbs_take_urls(served: HttpServer, tmp_path: Path) -> None:
    weights, _ = small_checkpoint(served.root, "net_1", seed=1)
    small_checkpoint(served.root, "net_2", seed=2)
    a, b = f"{served.url}/net_1.weights", f"{served.url}/net_2.weights"
    cfg_url = f"{served.url}/net.cfg"
    assert dwf.check(a, cfg=cfg_url).to_dict() == {**dwf.check(weights).to_dict(), "path": a}
    assert dwf.info(a, cfg_url)["size"] == os.path.getsize(weights)
    report = dwf.diff(a, b, cfg=cfg_url)
    assert report.a == a and not all(d.identical for d in report.arrays)
    out = dwf.cut(a, tmp_path / "cut.weights", 2, cfg=cfg_url)
    assert Path(out).stat().st_size < os.path.getsize(weights)


# -- S3 --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    server = S3Server().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow  # starts an S3 server (~1.4 s)
def test_s3_bucket_with_storage_options(s3: S3Server, tmp_path: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True, **s3.storage_options)
    fs.call_s3("create_bucket", Bucket="weights")
    weights, cfg = small_checkpoint(tmp_path, "run_2000", seed=5)
    fs.put_file(weights, "weights/run-a/run_2000.weights")
    fs.put_file(cfg, "weights/run-a/run.cfg")
    url = "s3://weights/run-a/run_2000.weights"
    with dwf.open(weights) as local, dwf.open(url, storage_options=s3.storage_options) as f:
        assert f.backend == "remote" and f.size == local.size
        assert f.cfg_path == "s3://weights/run-a/run.cfg"
        for name, view in local.arrays():
            layer, array = name.split(".")
            np.testing.assert_array_equal(f[layer][array], view)
    assert dwf.info(url, storage_options=s3.storage_options)["size"] == os.path.getsize(weights)
    out = dwf.cut(url, tmp_path / "cut.weights", 1, storage_options=s3.storage_options)
    assert os.path.getsize(out) < os.path.getsize(weights)
    # without the credentials and endpoint the store cannot be reached: a DwfError
    with pytest.raises(dwf.DwfError):
        dwf.open(url, storage_options={"client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}})


def test_s3_object_replaced_raises_file_changed(s3: S3Server, tmp_path: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True, **s3.storage_options)
    fs.call_s3("create_bucket", Bucket="replaced")
    weights, cfg = small_checkpoint(tmp_path, "x_1", seed=1, big=True)
    other, _ = small_checkpoint(tmp_path / "o", "x_1", seed=9, big=True)
    fs.put_file(weights, "replaced/x_1.weights")
    fs.put_file(cfg, "replaced/x.cfg")
    with dwf.open("s3://replaced/x_1.weights", storage_options=s3.storage_options) as f:
        f["conv_0"].weights  # noqa: B018 - in the block read with the header
        fs.put_file(other, "replaced/x_1.weights")
        with pytest.raises(dwf.FileChangedError, match="changed on the server"):
            f["conv_2"].weights  # noqa: B018 - 590 KB further on: fetched now


@pytest.mark.slow  # starts an S3 server (~1.5 s)
def test_many_files_in_a_bucket_by_glob(s3: S3Server, tmp_path: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True, **s3.storage_options)
    fs.call_s3("create_bucket", Bucket="runs")
    local: list[str] = []
    for run in ("run-1", "run-2"):
        for i in (1000, 2000, 10000):
            weights, cfg = small_checkpoint(tmp_path / run, f"yolo_{i}", seed=i // 1000)
            fs.put_file(weights, f"runs/{run}/yolo_{i}.weights")
            local.append(weights)
        fs.put_file(cfg, f"runs/{run}/yolo.cfg")
    fs.pipe_file("runs/run-2/yolo_last.weights", b"truncated")
    options = s3.storage_options
    pattern = "s3://runs/run-*/yolo_*.weights"
    rows = list(dwf.each(dwf.check, [pattern], jobs=2, storage_options=options))
    assert [r.path for r in rows] == [
        f"s3://runs/{run}/yolo_{i}.weights"
        for run in ("run-1", "run-2")
        for i in (*(1000, 2000, 10000), *(("last",) if run == "run-2" else ()))
    ]
    assert [r.ok for r in rows] == [True] * 6 + [False]
    for row, path in zip(rows[:6], local, strict=True):
        assert row.result is not None
        assert row.result.findings == dwf.check(path).findings
    series = dwf.drift(["s3://runs/run-1/"], storage_options=options)
    assert [(r.seen_a, r.seen_b) for r in series] == [(1000, 2000), (2000, 10000)]
    ident = list(
        dwf.each(dwf.identify, ["s3://runs/run-1/yolo_1000.weights"], storage_options=options)
    )
    assert ident[0].ok


def small_checkpoint_cfg(folder: Path) -> str:
    return small_checkpoint(folder / "cfgonly", "c_1", seed=0)[1]
