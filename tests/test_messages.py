"""Messages that lead somewhere: each error or report a new user met in a trial either does what
was meant or names the command that does (issue "Ecosystem II").

Each test failed on the code before its fix. Inputs are the bundled demo model and files made
from it here; nothing needs ``../shared``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import dwf
from dwf.format.retrain import with_classes
from dwf.interfaces.cli import main
from dwf.tools.demo import write_demo


@pytest.fixture
def demo(tmp_path: Path) -> tuple[Path, Path]:
    """``(cfg, weights)`` of the demo model, in ``tmp_path/demo``."""
    cfg, weights = write_demo(tmp_path / "demo")
    return Path(cfg), Path(weights)


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- Darknet's argument order ------------------------------------------------------------------


def test_darknet_order_cfg_then_weights_is_understood(
    demo: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, weights = demo
    code, out, err = run(capsys, "info", cfg, weights)
    assert (code, err) == (0, "")
    assert run(capsys, "info", weights, "--cfg", cfg)[1] == out
    # with options before, between and after, and for the other commands that take --cfg
    code, out, err = run(capsys, "stats", "--layers", "0-2", cfg, weights, "--json")
    assert code == 0 and json.loads(out)["path"] == str(weights)
    assert run(capsys, "check", cfg, weights)[0] == 0


def test_darknet_partial_order_cuts(
    demo: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``darknet partial cfg weights out N`` as ``dwf cut cfg weights out N``."""
    cfg, weights = demo
    out = tmp_path / "cut.weights"
    code, _, err = run(capsys, "cut", cfg, weights, out, 10)
    assert (code, err) == (0, "")
    with dwf.open(out, cfg=cfg) as f:
        assert f.partial and f.last_layer == 9


def test_a_cfg_where_the_weights_go_is_answered_with_the_command(
    demo: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, weights = demo
    code, out, err = run(capsys, "info", cfg)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and "cfg" in err
    assert f"dwf info {weights} --cfg {cfg}" in err  # the weights beside it, by name


# -- a partial file: cut cfg, export ---------------------------------------------------------------


def test_cut_writes_the_matching_cfg(
    demo: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, weights = demo
    out, out_cfg = tmp_path / "part.weights", tmp_path / "part.cfg"
    code, text, err = run(capsys, "cut", weights, out, 10, "--cfg-out", out_cfg)
    assert (code, err) == (0, "")
    assert str(out_cfg) in text
    with dwf.open(out, cfg=out_cfg) as part, dwf.open(weights, cfg=cfg) as full:
        assert part.complete and len(part.plan.layers) == 10
        for name in part:
            for array, view in part[name].arrays.items():
                assert np.array_equal(view, full[name][array])
    # the same from Python
    dwf.cut(weights, tmp_path / "p2.weights", 10, cfg_out=tmp_path / "p2.cfg")
    assert (tmp_path / "p2.cfg").read_text() == out_cfg.read_text()
    assert (tmp_path / "p2.weights").read_bytes() == out.read_bytes()


def test_cut_publishes_both_files_or_neither(
    demo: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, weights = demo
    before = cfg.read_bytes()
    out = tmp_path / "part.weights"
    code, _, err = run(capsys, "cut", weights, out, 10, "--cfg-out", cfg)  # the cfg it reads
    assert code == 2 and "dwf: error:" in err
    assert cfg.read_bytes() == before and not out.exists()


def test_export_onnx_of_a_partial_file_exports_what_it_holds(
    demo: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    onnx = pytest.importorskip("onnx")
    cfg, weights = demo
    part = tmp_path / "demo.conv.10"
    dwf.cut(weights, part, 10, cfg=cfg)
    code, text, err = run(capsys, "export", part, tmp_path / "part.onnx", "--cfg", cfg)
    assert (code, err) == (0, ""), err
    assert "layers 0..9" in text
    model = onnx.load(str(tmp_path / "part.onnx"), load_external_data=False)
    assert [o.name for o in model.graph.output] == [dwf.plan(cfg).layers[9].name]


@pytest.mark.parametrize("fmt", ["onnx", "npz"])
def test_export_upto(
    demo: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    weights = demo[1]
    if fmt == "onnx":
        pytest.importorskip("onnx")
    out = tmp_path / f"first.{fmt}"
    code, text, err = run(capsys, "export", weights, out, "--upto", 10)
    assert (code, err) == (0, ""), err
    assert "layers 0..9" in text
    if fmt == "npz":
        names = set(np.load(out).files)
        assert "conv_8.weights" in names and "conv_10.weights" not in names
    # the same from Python; a count past the network is refused
    dwf.export(weights, tmp_path / f"again.{fmt}", upto=10)
    with pytest.raises(dwf.DwfError, match="upto"):
        dwf.export(weights, tmp_path / f"bad.{fmt}", upto=99)


def test_onnx_export_of_a_partial_file_points_at_upto(
    demo: tuple[Path, Path], tmp_path: Path
) -> None:
    pytest.importorskip("onnx")
    from dwf.tools.emit_onnx import to_onnx

    cfg, weights = demo
    part = tmp_path / "demo.conv.10"
    dwf.cut(weights, part, 10, cfg=cfg)
    with dwf.open(part, cfg=cfg) as f, pytest.raises(dwf.DwfError) as info:
        to_onnx(f, tmp_path / "x.onnx")
    assert "upto" in str(info.value)


# -- identify: the cfg it matched, and the no-cfg error ---------------------------------------


def _alone(tmp_path: Path, demo: tuple[Path, Path], cfgs: dict[str, str]) -> Path:
    """The demo weights alone in a folder two levels down (no cfg of the same name), with
    ``cfgs`` (name → text) beside it."""
    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    weights = folder / "model.weights"
    shutil.copy(demo[1], weights)
    for name, text in cfgs.items():
        (folder / name).write_text(text)
    return weights


def test_identify_writes_the_cfg_it_matched_with_the_class_count(
    demo: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = dwf.plan(demo[0])
    weights = _alone(tmp_path, demo, {"coco.cfg": with_classes(plan, 20)})
    out = tmp_path / "found.cfg"
    code, text, err = run(capsys, "identify", weights, "--write-cfg", out)
    assert (code, err) == (0, "")
    assert str(out) in text and "classes=2" in text
    with dwf.open(weights, cfg=out) as f:  # the next command works
        assert f.complete
    assert f"dwf info {weights} --cfg {out}" in text


def test_identify_write_cfg_without_a_fit_is_an_error(
    demo: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = _alone(tmp_path, demo, {})
    out = tmp_path / "found.cfg"
    code, _, err = run(capsys, "identify", weights, "--write-cfg", out)
    assert code == 2 and "no cfg" in err and not out.exists()


def test_the_no_cfg_error_names_every_cfg_that_fits_equally_well(
    demo: tuple[Path, Path], tmp_path: Path
) -> None:
    text = demo[0].read_text()
    weights = _alone(tmp_path, demo, {"a.cfg": text, "b.cfg": text})
    with pytest.raises(dwf.CfgNotFoundError) as info:
        dwf.open(weights)
    message = str(info.value)
    assert "a.cfg" in message.split("cfg files there")[0]
    assert "b.cfg" in message.split("cfg files there")[0]


def test_the_no_cfg_error_says_when_the_fit_needs_another_class_count(
    demo: tuple[Path, Path], tmp_path: Path
) -> None:
    plan = dwf.plan(demo[0])
    weights = _alone(tmp_path, demo, {"coco.cfg": with_classes(plan, 20)})
    with pytest.raises(dwf.CfgNotFoundError) as info:
        dwf.open(weights)
    message = str(info.value)
    assert "classes=2" in message and "--write-cfg" in message
    assert "pass cfg='" not in message  # that cfg alone fails: not offered as the answer


# -- replace=, fuse, --layers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "meant"), [("conv_2.weight", "conv_2.weights"), ("conv2.weights", "conv_2.weights")]
)
def test_an_unknown_replace_key_gets_did_you_mean(
    demo: tuple[Path, Path], tmp_path: Path, key: str, meant: str
) -> None:
    with dwf.open(demo[1]) as f, pytest.raises(dwf.ArrayError) as info:
        f.save(tmp_path / "x.weights", replace={key: np.zeros((16, 8, 3, 3), np.float32)})
    assert f"did you mean {meant}" in str(info.value)
    assert not (tmp_path / "x.weights").exists()


def test_fuse_without_batch_norm_says_nothing_was_folded(
    demo: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = demo[1]
    code, text, _ = run(capsys, "fuse", weights, tmp_path / "f.weights", tmp_path / "f.cfg")
    assert code == 0 and re.search(r"folded into \d+ layers", text)
    code, text, _ = run(
        capsys,
        "fuse",
        tmp_path / "f.weights",
        tmp_path / "g.weights",
        tmp_path / "g.cfg",
        "--cfg",
        tmp_path / "f.cfg",
    )
    assert code == 0 and "nothing was folded" in text and "no batch norm" in text


def test_a_reversed_layer_range_is_an_error(
    demo: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "info", demo[1], "--layers", "20-10")
    assert code == 2 and out == ""
    assert "20-10" in err and "10-20" in err and len(err.splitlines()) == 1


# -- check: which filters, and counts in words ------------------------------------------------


@pytest.fixture
def damaged(demo: tuple[Path, Path], tmp_path: Path) -> Path:
    """The demo with filters 3 and 5 of conv_2 all zeros and a NaN in filter 7."""
    weights = demo[1]
    out = tmp_path / "demo" / "damaged.weights"
    with dwf.open(weights) as f:
        w = np.array(f["conv_2"].weights)
        w[3] = 0
        w[5] = 0
        w[7, 1, 2, 0] = np.nan
        f.save(out, replace={"conv_2.weights": w})
    return out


def test_check_names_the_filters(damaged: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = dwf.check(damaged, cfg=damaged.with_name("demo.cfg"))
    by_kind = {x.kind: x for x in report.findings}
    assert by_kind["zero-filters"].indices == (3, 5)
    assert by_kind["nan"].indices == (7,)
    assert "filters 3, 5" in by_kind["zero-filters"].message
    assert "filter 7" in by_kind["nan"].message
    _, out, _ = run(capsys, "check", damaged, "--cfg", damaged.with_name("demo.cfg"), "--json")
    found = {x["kind"]: x for x in json.loads(out)["findings"]}
    assert found["zero-filters"]["indices"] == [3, 5]


def test_check_counts_in_singular_and_plural(damaged: Path) -> None:
    report = dwf.check(damaged, cfg=damaged.with_name("demo.cfg"))
    head = report.explain().splitlines()[0]
    assert "1 error, 1 warning, 0 notes" in head
    assert "1 NaN value (in filter 7)" in report.explain()
    assert "2 of 16 filters (filters 3, 5) are all zeros" in report.explain()


# -- --lenient: say so, and a true size equation ------------------------------------------------

_EQUATION = re.compile(
    r"size: ([\d,]+) bytes = (\d+) \+ 4 × ([\d,]+) floats(?: \+ ([\d,]+) bytes?)?"
)


@pytest.mark.parametrize("size", [1_000, 1_002, None], ids=["short", "ragged", "long"])
def test_info_lenient_prints_a_true_size_equation(
    demo: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], size: int | None
) -> None:
    cfg, weights = demo
    data = weights.read_bytes()
    bad = tmp_path / "bad.weights"
    bad.write_bytes(data[:size] if size else data + b"\0" * 6)
    code, out, _ = run(capsys, "info", bad, "--cfg", cfg, "--lenient")
    assert code == 0
    m = _EQUATION.search(out)
    assert m, out
    total, header, floats, extra = (int((g or "0").replace(",", "")) for g in m.groups())
    assert total == bad.stat().st_size == header + 4 * floats + extra


def test_stats_lenient_says_the_file_does_not_fit(
    demo: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, weights = demo
    bad = tmp_path / "bad.weights"
    bad.write_bytes(weights.read_bytes()[:40_000])
    _, check_out, _ = run(capsys, "check", bad, "--cfg", cfg, "--lenient")
    code, out, _ = run(capsys, "stats", bad, "--cfg", cfg, "--lenient")
    assert code == 0 and "does not fit its cfg" in check_out
    assert "does not fit its cfg" in out
    report = dwf.stats(bad, cfg=cfg, strict=False)
    assert report.mismatch and "needs" in report.mismatch
    _, out, _ = run(capsys, "stats", bad, "--cfg", cfg, "--lenient", "--json")
    assert json.loads(out)["mismatch"] == report.mismatch


# -- import-weights: what it reads ----------------------------------------------------------------


def test_import_weights_of_an_onnx_model_says_what_it_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "x.onnx"
    model.write_bytes(b"\x08\x07")
    code, _, err = run(capsys, "import-weights", model, tmp_path / "y.weights")
    assert code == 2 and len(err.splitlines()) == 1
    for ext in (".npz", ".safetensors", ".pt"):
        assert ext in err
    assert "ONNX" in err and "rename" not in err
    assert not (tmp_path / "y.weights").exists()
