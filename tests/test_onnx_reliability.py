"""The ONNX export reads every option with Darknet's atoi/atof, publishes model and data
together or not at all, never reads the weights through the memory map, refuses what it cannot
compute with a reason (instead of a raw error or a model a runtime rejects), and shows the plan's
warnings (issues 19, 20 and 21). Each test here failed on the export before the shared network
description (``dwf/format/network.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from remote_servers import HttpServer
from test_onnx import check_against_reference, onnx, run, write_net

import dwf

Array = np.ndarray[Any, Any]
ROOT = Path(__file__).resolve().parents[1]


def _meta(model: Path) -> dict[str, str]:
    m = onnx.load(str(model), load_external_data=False)
    return {p.key: p.value for p in m.metadata_props}


def _export_both(tmp_path: Path, clean: str, junk: str, dialect: str) -> None:
    """The cfg written with junk after its numbers exports the model the clean one does."""
    outs: dict[str, dict[str, Array]] = {}
    metas: dict[str, dict[str, Any]] = {}
    for label, text in (("clean", clean), ("junk", junk)):
        folder = tmp_path / label
        folder.mkdir()
        weights, plan, _ = write_net(folder, text, 5, dialect)
        model = folder / "net.onnx"
        dwf.export(weights, model, cfg=folder / "net.cfg", dialect=dialect)
        net = plan.net
        shape = (net.channels, net.height, net.width) if net.height else (net.inputs,)
        x = np.random.default_rng(1).random((2, *shape), np.float32)
        outs[label] = run(model, x)
        metas[label] = {
            k: json.loads(v)
            for k, v in _meta(model).items()
            if k.startswith("darknet.") and k not in ("darknet.dialect", "darknet.header")
        }
        for v in metas[label].values():
            if isinstance(v, dict):
                v.pop("options", None)  # as written: the one thing that differs
        metas[label].pop("darknet.net", None)
    assert list(outs["clean"]) == list(outs["junk"])
    for name in outs["clean"]:
        np.testing.assert_array_equal(outs["junk"][name], outs["clean"][name])
    assert metas["junk"] == metas["clean"]


# Every option the export reads, each written with what atoi/atof stop at (Darknet removes the
# spaces, so "1.05 # tuned" is "1.05#tuned").
LAYERS_AB = """\
[net]
channels=3
height=8
width=8

[convolutional]
filters=8
size=3
pad=1
xnor=0{j}
binary=0{j}
activation=leaky

[lrn]
size=3{j}
alpha=0.3{j}
beta=0.75{j}
kappa=2{j}

[avgpool]

[convolutional]
filters=8
size=1
activation=logistic

[scale_channels]
from=-3
scale_wh=0{j}
activation=linear

[upsample]
stride=2
scale=0.5{j}

[crop]
crop_height=14
crop_width=14
noadjust=1{j}

[softmax]
groups=2{j}
temperature=3{j}
"""

YOLO_AB = """\
[net]
channels=2
height=8
width=8

[convolutional]
filters=12
size=1
activation=linear

[yolo]
mask=0,1{j}
anchors=1,2,3,4,5,6{j}
classes=1{j}
num=3
scale_x_y=1.05{j}
new_coords=0{j}
beta_nms=0.6{j}

[route]
layers=-2

[convolutional]
filters=14
size=1
activation=linear

[region]
anchors=1,2,3,4{j}
classes=2{j}
coords=4{j}
num=2
softmax=1{j}

[route]
layers=-2

[convolutional]
filters=2
size=1
activation=linear
"""

SHORTCUT_PJ = """\
[net]
channels=2
height=8
width=8

[convolutional]
filters=4
size=3
pad=1
activation=leaky

[convolutional]
filters=4
size=3
pad=1
activation=leaky

[shortcut]
from=-2
alpha=0.5{j}
beta=2{j}

[reorg]
stride=2
flatten=0{j}

[convolutional]
filters=12
size=1
activation=linear

[yolo]
mask=0,1{j}
anchors=1,2,3,4,5,6{j}
classes=1
num=3
"""


DETECTION_PJ = """\
[net]
inputs=12

[connected]
output=28
activation=linear

[detection]
classes=2{j}
coords=4{j}
num=1{j}
side=2{j}
softmax=1{j}
sqrt=1{j}
"""


@pytest.mark.parametrize(
    ("template", "dialect", "junk"),
    [
        (LAYERS_AB, "alexeyab", "#tuned"),
        (LAYERS_AB, "alexeyab", "junk"),
        (YOLO_AB, "alexeyab", "#tuned"),
        (SHORTCUT_PJ, "pjreddie", "#tuned"),
        (DETECTION_PJ, "pjreddie", "#tuned"),
        (DETECTION_PJ, "alexeyab", "junk"),
    ],
)
def test_options_with_trailing_comments_export_as_without(
    tmp_path: Path, template: str, dialect: str, junk: str
) -> None:
    _export_both(tmp_path, template.format(j=""), template.format(j=junk), dialect)


def test_scale_x_y_with_a_comment(tmp_path: Path) -> None:
    """The issue's own case: Darknet and dwf.open read ``scale_x_y=1.05#tuned`` as 1.05."""
    text = YOLO_AB.replace("scale_x_y=1.05{j}", "scale_x_y=1.05#tuned").format(j="")
    weights, _, _ = write_net(tmp_path, text, 3)
    dwf.export(weights, tmp_path / "net.onnx", cfg=tmp_path / "net.cfg")
    head = json.loads(_meta(tmp_path / "net.onnx")["darknet.yolo_1"])
    assert head["scale_x_y"] == 1.05 and head["mask"] == [0, 1]
    assert head["anchors"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_mask_counts_commas_after_a_hash_in_pjreddie(tmp_path: Path) -> None:
    """pjreddie's parse_yolo_mask counts every comma (AlexeyAB's stops at '#'): ``mask=0,1#,2``
    is three anchors there, two in AlexeyAB's fork."""
    base = "[net]\nchannels=2\nheight=4\nwidth=4\n[convolutional]\nfilters={f}\nsize=1\n"
    base += "activation=linear\n[yolo]\nmask=0,1#,2\nanchors=1,2,3,4,5,6\nclasses=1\nnum=3\n"
    for dialect, mask in (("pjreddie", [0, 1, 2]), ("alexeyab", [0, 1])):
        folder = tmp_path / dialect
        folder.mkdir()
        weights, _, _ = write_net(folder, base.format(f=6 * len(mask)), 2, dialect)
        dwf.export(weights, folder / "net.onnx", cfg=folder / "net.cfg", dialect=dialect)
        assert json.loads(_meta(folder / "net.onnx")["darknet.yolo_1"])["mask"] == mask


# -- one commit point (issue 21, #2) ---------------------------------------------------------------
SMALL = (
    "[net]\nchannels=1\nheight=4\nwidth=4\n[convolutional]\nfilters=2\nsize=1\nactivation=linear\n"
)


def _old(*paths: Path) -> dict[Path, bytes]:
    for p in paths:
        p.write_bytes(b"old " + p.name.encode())
    return {p: p.read_bytes() for p in paths}


def test_a_failing_model_write_leaves_the_data_file(tmp_path: Path) -> None:
    weights, _, _ = write_net(tmp_path, SMALL, 1)
    cfg = tmp_path / "net.cfg"
    before = _old(tmp_path / "m.data")
    (tmp_path / "m.onnx").mkdir()  # the model path is a directory
    with pytest.raises(dwf.DwfError):
        dwf.export(weights, tmp_path / "m.onnx", cfg=cfg, data=tmp_path / "m.data")
    assert {p: p.read_bytes() for p in before} == before
    # the model path is one of the export's inputs (the cfg)
    with pytest.raises(dwf.DwfError, match="one of this command's inputs"):
        dwf.export(weights, cfg, format="onnx", cfg=cfg, data=tmp_path / "m.data")
    assert {p: p.read_bytes() for p in before} == before
    assert cfg.read_text().startswith("[net]")


def test_a_model_the_checker_rejects_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights, _, _ = write_net(tmp_path, SMALL, 1)
    before = _old(tmp_path / "m.onnx", tmp_path / "m.data", tmp_path / "e.onnx")

    def reject(*args: Any, **kwargs: Any) -> None:
        raise onnx.checker.ValidationError("rejected for the test")

    monkeypatch.setattr(onnx.checker, "check_model", reject)
    for kwargs in ({"data": tmp_path / "m.data"}, {}):
        with pytest.raises(dwf.DwfError, match="checker rejects"):
            dwf.export(weights, tmp_path / "m.onnx", cfg=tmp_path / "net.cfg", **kwargs)
    with pytest.raises(dwf.DwfError, match="checker rejects"):
        dwf.export(weights, tmp_path / "e.onnx", cfg=tmp_path / "net.cfg", embed=True)
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "e.onnx",
        "m.data",
        "m.onnx",
        "net.cfg",
        "net.weights",
    ]


# -- never through the map (issue 21, #6) ---------------------------------------------------------
# Opens the file, then makes the first read of array data truncate it first — whichever way
# the export reads: a view of the map (the old export; touching it then is SIGBUS) or pread.
_TRUNCATING_EXPORT = """
import os, sys
import dwf, dwf.io.reader as reader
weights, cfg, out, mode = sys.argv[1:]
f = dwf.open(weights, cfg=cfg)
done = []
def truncate():
    if not done:
        done.append(1)
        os.truncate(weights, 40)
view = reader.logical_view
def logical_view(*a, **k):
    truncate()
    return view(*a, **k)
reader.logical_view = logical_view
for name in ("preadv", "pread"):
    real = getattr(os, name)
    def read(*a, _real=real, **k):
        truncate()
        return _real(*a, **k)
    setattr(os, name, read)
kw = {"embed": True} if mode == "embed" else {"data": os.path.join(os.path.dirname(out), "m.data")}
try:
    dwf.export(f, out, **kw)
except dwf.FileChangedError as e:
    print("FileChangedError:", e)
    raise SystemExit(2)
print("exported")
"""


@pytest.mark.slow  # a child process truncating mid-export (~1 s each)
@pytest.mark.parametrize("mode", ["embed", "data"])
def test_truncation_during_an_export_is_an_error_not_a_signal(tmp_path: Path, mode: str) -> None:
    text = "[net]\nchannels=3\nheight=8\nwidth=8\n" + (
        "[convolutional]\nfilters=64\nsize=3\npad=1\nactivation=leaky\n" * 3
    )
    weights, _, _ = write_net(tmp_path, text, 1)
    args = [str(weights), str(tmp_path / "net.cfg"), str(tmp_path / "m.onnx"), mode]
    proc = subprocess.run(
        [sys.executable, "-c", _TRUNCATING_EXPORT, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert "FileChangedError" in proc.stdout
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.data").exists()


# -- "a bug in dwf" cases (issue 21) --------------------------------------------------------------
NET = "[net]\nchannels=2\nheight=6\nwidth=6\n[convolutional]\nfilters=2\nsize=3\npad=1\nactivation=leaky\n"  # noqa: E501


@pytest.mark.parametrize("frm", ["1", "2", "0,1"])
def test_a_shortcut_from_itself_or_a_later_layer_is_refused(tmp_path: Path, frm: str) -> None:
    text = NET + f"[shortcut]\nfrom={frm}\n[convolutional]\nfilters=2\nsize=1\nactivation=linear\n"
    plan = dwf.Plan.from_text(text)
    assert any("not built yet" in w for w in plan.warnings)  # the planner accepts it
    weights, _, _ = write_net(tmp_path, text, 1)
    with pytest.raises(
        dwf.UnsupportedLayerError,
        match=r"net\.cfg:\d+: layer 1 \(shortcut_1, shortcut\) cannot be exported to ONNX: .*"
        r"at or after it",
    ) as err:
        dwf.export(weights, tmp_path / "net.onnx", cfg=tmp_path / "net.cfg")
    assert (err.value.index, err.value.layer, err.value.type) == (1, "shortcut_1", "shortcut")
    assert not (tmp_path / "net.onnx").exists()


def test_a_convolution_of_size_0_is_refused(tmp_path: Path) -> None:
    text = NET + "[convolutional]\nfilters=2\nsize=0\nactivation=linear\n"
    weights, _, _ = write_net(tmp_path, text, 1)
    with pytest.raises(dwf.UnsupportedLayerError, match=r"layer 1 \(conv_1.*size=0"):
        dwf.export(weights, tmp_path / "net.onnx", cfg=tmp_path / "net.cfg")
    assert not (tmp_path / "net.onnx").exists()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[HttpServer]:
    pytest.importorskip("aiohttp")
    pytest.importorskip("fsspec")
    (tmp_path / "www").mkdir()
    server = HttpServer(tmp_path / "www").start()
    try:
        yield server
    finally:
        server.stop()


def test_an_export_from_a_url_embeds_the_weights(
    tmp_path: Path, served: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model cannot point into a file on a web server: the arrays are embedded (read in
    ranges), as they are for a model written away from its weights file — also when the model
    is written in the current folder (the URL is no path below it)."""
    text = NET + "[convolutional]\nfilters=3\nsize=1\nbatch_normalize=1\nactivation=mish\n"
    write_net(served.root, text, 4)
    local = tmp_path / "local.onnx"
    dwf.export(served.root / "net.weights", local, cfg=served.root / "net.cfg")
    url = f"{served.url}/net.weights"
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "remote.onnx"
    dwf.export(url, "remote.onnx", cfg=f"{served.url}/net.cfg")
    m = onnx.load(str(out), load_external_data=False)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in m.graph.initializer)
    x = np.random.default_rng(0).random((1, 2, 6, 6), np.float32)
    np.testing.assert_array_equal(run(out, x)["conv_1"], run(local, x)["conv_1"])
    # and with --data, the arrays go to the data file
    dwf.export(url, tmp_path / "d.onnx", cfg=f"{served.url}/net.cfg", data=tmp_path / "d.bin")
    np.testing.assert_array_equal(run(tmp_path / "d.onnx", x)["conv_1"], run(local, x)["conv_1"])


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="file names must be UTF-8 there")
def test_file_names_that_are_not_utf8(tmp_path: Path) -> None:
    text = NET + "[convolutional]\nfilters=3\nsize=1\nactivation=linear\n"
    weights, _, _ = write_net(tmp_path, text, 2)
    folder = os.fsencode(str(tmp_path))
    cfg = os.fsdecode(folder + b"/n\xffet.cfg")
    w2 = os.fsdecode(folder + b"/w\xfe.weights")
    os.rename(tmp_path / "net.cfg", cfg)
    os.link(weights, w2)
    for src in (weights, w2):
        out = tmp_path / "m.onnx"
        dwf.export(src, out, cfg=cfg)
        x = np.random.default_rng(0).random((1, 2, 6, 6), np.float32)
        assert run(out, x)["conv_1"].shape == (1, 3, 6, 6)
    data = os.fsdecode(folder + b"/d\xfd.bin")
    with pytest.raises(dwf.DwfError, match="not valid UTF-8"):
        dwf.export(weights, out, cfg=cfg, data=data)


# -- the plan's warnings (issue 20) ---------------------------------------------------------------
TYPO = (
    "[net]\nchannels=2\nheight=4\nwidth=4\n[convolutional]\nfilters=2\nsize=1\nactivation=leakyy\n"
)


def test_an_unknown_activation_is_relu_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dwf.interfaces.cli import main

    plan = dwf.Plan.from_text(TYPO)
    warning = "line 8: layer 0 (conv_0, convolutional): couldn't find activation function"
    found = [w for w in plan.warnings if w.startswith(warning)]
    assert found and "'leakyy', going with ReLU" in found[0], plan.warnings
    assert plan.layers[0].params["activation"] == "relu"
    # computes relu, as Darknet does
    check_against_reference(tmp_path, TYPO.replace("leakyy", "relu"), 3)
    want = run(tmp_path / "net.onnx", np.ones((1, 2, 4, 4), np.float32))
    weights = tmp_path / "net.weights"
    (tmp_path / "typo.cfg").write_text(TYPO)
    out = tmp_path / "typo.onnx"
    assert main(["export", str(weights), str(out), "--cfg", str(tmp_path / "typo.cfg")]) == 0
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if "couldn't find activation" in ln]
    assert len(lines) == 1 and lines[0].startswith("dwf: warning: line 8: layer 0"), captured.err
    got = run(out, np.ones((1, 2, 4, 4), np.float32))
    np.testing.assert_array_equal(got["conv_0"], want["conv_0"])
    assert json.loads(_meta(out)["darknet.warnings"]) == list(plan.warnings)


def test_unknown_activation_everywhere_darknet_reads_one() -> None:
    text = textwrap.dedent(
        """\
        [net]
        channels=2
        height=4
        width=4
        [convolutional]
        filters=2
        size=1
        activation=mish
        [shortcut]
        from=-1
        activation=Mish
        [activation]
        activation=swish#x
        """
    )
    plan = dwf.Plan.from_text(text)
    assert [lp.params.get("activation") for lp in plan.layers] == ["mish", "relu", "relu"]
    assert sum("going with ReLU" in w for w in plan.warnings) == 2
    pj = dwf.Plan.from_text(text, dialect="pjreddie")  # pjreddie knows no mish
    assert sum("going with ReLU" in w for w in pj.warnings) == 3


def test_embedded_arrays_are_the_stored_bytes(tmp_path: Path) -> None:
    """--embed streams each array into the model as the file stores it (flipped weights as
    (c·k·k, n)); the written model passes the full ONNX check and runs as the zero-copy one."""
    text = NET + "[convolutional]\nfilters=3\nsize=3\npad=1\nflipped=1\nbatch_normalize=1\n"
    weights, plan, _ = write_net(tmp_path, text, 6)
    dwf.export(weights, tmp_path / "e.onnx", cfg=tmp_path / "net.cfg", embed=True)
    dwf.export(weights, tmp_path / "z.onnx", cfg=tmp_path / "net.cfg")
    onnx.checker.check_model(str(tmp_path / "e.onnx"), full_check=True)
    m = onnx.load(str(tmp_path / "e.onnx"))
    got = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    raw = weights.read_bytes()
    for lp, a in plan.arrays():
        start, stop = a.byte_span(20)
        stored = np.frombuffer(raw[start:stop], "<f4")
        assert np.array_equal(got[f"{lp.name}.{a.name}"].reshape(-1), stored)
    assert got["conv_1.weights"].shape == (2 * 3 * 3, 3)
    x = np.random.default_rng(0).random((2, 2, 6, 6), np.float32)
    np.testing.assert_array_equal(
        run(tmp_path / "e.onnx", x)["conv_1"], run(tmp_path / "z.onnx", x)["conv_1"]
    )
