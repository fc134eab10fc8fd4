"""Exports (``.npz``, ``.safetensors``, PyTorch ``state_dict``) and importing them back.

Round trips ``.weights → export → .weights`` must be byte-identical, also for partial files and
legacy headers; the state dict must load into ``torch.nn`` modules of the planned shapes and
compute what the numpy reference of Darknet's forward pass computes. safetensors tests skip
without the package; torch tests skip without torch (CI has no torch).
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_edit import (
    CASE_IDS,
    CASES,
    F32,
    Array,
    Case,
    batch_norm,
    conv2d,
    fingerprint,
    header_bytes,
    held_floats,
    leftovers,
    run_cli,
    write_case,
)

import dwf
import dwf.interfaces.cli as cli
import dwf.tools.export as export
from dwf.tools.demo import write_demo

# Fixtures here only hand out modules, which are the same for every example.
SETTINGS = settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
META = ["__dwf__.header", "__dwf__.dialect", "__dwf__.cfg", "__dwf__.cfg_name"]


@pytest.fixture
def safetensors() -> ModuleType:
    mod: ModuleType = pytest.importorskip("safetensors")
    return mod


@pytest.fixture
def torch() -> ModuleType:
    mod: ModuleType = pytest.importorskip("torch")
    return mod


def drawn_source(
    folder: Path, case: Case, seed: int, upto: int | None
) -> tuple[Path, Path, dict[str, Array], int]:
    """A source file holding layers ``0..upto-1``, and how many floats it holds."""
    cfg, src, arrays = write_case(folder, case, seed, upto)
    plan = dwf.plan(cfg, dialect=case.dialect)
    return cfg, src, arrays, held_floats(plan, len(plan.layers) if upto is None else upto)


def open_source(src: Path, cfg: Path, case: Case, held: int) -> dwf.WeightsFile:
    # A file holding no stored layer at all (header only) opens only with strict=False.
    return dwf.open(src, cfg, dialect=case.dialect, strict=held > 0)


def check_imported(dst: Path, src: Path, cfg: Path, case: Case, held: int) -> None:
    """Byte-identical, and partial when the source was."""
    assert dst.read_bytes() == src.read_bytes()
    with dwf.open(dst, cfg, dialect=case.dialect, strict=held > 0) as g:
        assert g.available_floats == held
        if 0 < held < g.plan.total_floats:
            assert g.partial


upto_strategy = st.one_of(st.none(), st.integers(0, 6))


# -- npz ---------------------------------------------------------------------------------------


@SETTINGS
@given(
    case=st.sampled_from(CASES),
    seed=st.integers(0, 2**32 - 1),
    upto=upto_strategy,
    compress=st.booleans(),
)
def test_npz_round_trip(case: Case, seed: int, upto: int | None, compress: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cfg, src, arrays, held = drawn_source(folder, case, seed, upto)
        before = fingerprint(src)
        out = folder / "export.npz"
        with open_source(src, cfg, case, held) as f:
            names = [name for name, _ in f.arrays()]
            assert export.to_npz(f, out, compress=compress) == os.fspath(out)
        assert fingerprint(src) == before
        with np.load(out, allow_pickle=False) as z:
            assert sorted(z.files) == sorted(names + META)
            for name in names:
                assert z[name].dtype == F32
                np.testing.assert_array_equal(z[name], arrays[name])
            assert bytes(z["__dwf__.header"]) == header_bytes(case.header)
            assert bytes(z["__dwf__.cfg"]).decode() == case.text
            assert bytes(z["__dwf__.cfg_name"]).decode() == f"{case.name}.cfg"
            assert bytes(z["__dwf__.dialect"]).decode() == case.dialect
        # without being told the cfg or the header
        dst = folder / "back.weights"
        assert dwf.import_weights(out, dst) == os.fspath(dst)
        check_imported(dst, src, cfg, case, held)
        assert leftovers(folder) == []


def test_npz_entries_are_named_per_array(tmp_path: Path) -> None:
    cfg, src, _ = write_case(tmp_path, CASES[0], 2)
    out = tmp_path / "e.npz"
    with dwf.open(src, cfg) as f:
        export.to_npz(f, out)
    with np.load(out, allow_pickle=False) as z:
        assert [k for k in z.files if not k.startswith("__dwf__.")] == [
            "conv_0.biases",
            "conv_0.scales",
            "conv_0.rolling_mean",
            "conv_0.rolling_variance",
            "conv_0.weights",
            "conv_2.biases",
            "conv_2.scales",
            "conv_2.rolling_mean",
            "conv_2.rolling_variance",
            "conv_2.weights",
            "batchnorm_3.biases",
            "batchnorm_3.scales",
            "batchnorm_3.rolling_mean",
            "batchnorm_3.rolling_variance",
            "conv_5.biases",
            "conv_5.weights",
        ]
        assert z["conv_0.weights"].shape == (6, 2, 3, 3)
        assert z["conv_5.weights"].shape == (5, 12, 1, 1)


# -- safetensors -------------------------------------------------------------------------------


@SETTINGS
@given(case=st.sampled_from(CASES), seed=st.integers(0, 2**32 - 1), upto=upto_strategy)
def test_safetensors_round_trip(
    safetensors: ModuleType, case: Case, seed: int, upto: int | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cfg, src, arrays, held = drawn_source(folder, case, seed, upto)
        before = fingerprint(src)
        out = folder / "export.safetensors"
        with open_source(src, cfg, case, held) as f:
            names = [name for name, _ in f.arrays()]
            assert export.to_safetensors(f, out) == os.fspath(out)
        assert fingerprint(src) == before
        with safetensors.safe_open(str(out), framework="np") as fh:
            meta = fh.metadata()
            assert sorted(fh.keys()) == sorted(names)
            for name in names:
                t = fh.get_tensor(name)
                assert t.dtype == F32
                np.testing.assert_array_equal(t, arrays[name])
        h = case.header
        assert meta["header"] == f"{h.major}.{h.minor}.{h.revision}"
        assert meta["seen"] == str(h.seen) and meta["header_size"] == str(h.size)
        assert meta["cfg_name"] == f"{case.name}.cfg"
        assert meta["cfg"] == case.text
        assert meta["dialect"] == case.dialect
        dst = folder / "back.weights"
        assert dwf.import_weights(out, dst) == os.fspath(dst)
        check_imported(dst, src, cfg, case, held)
        assert leftovers(folder) == []


# -- PyTorch state dict ------------------------------------------------------------------------


@SETTINGS
@given(
    case=st.sampled_from(CASES),
    seed=st.integers(0, 2**32 - 1),
    upto=upto_strategy,
    copy=st.booleans(),
)
def test_state_dict_round_trip(
    torch: ModuleType, case: Case, seed: int, upto: int | None, copy: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cfg, src, arrays, held = drawn_source(folder, case, seed, upto)
        before = fingerprint(src)
        with open_source(src, cfg, case, held) as f:
            sd = export.to_state_dict(f, copy=copy)
            header = f.header
            n_arrays = len(list(f.arrays()))
        assert len(sd) == n_arrays
        assert all(t.dtype == torch.float32 for t in sd.values())
        dst = folder / "back.weights"
        dwf.import_weights(sd, dst, cfg=cfg, dialect=case.dialect, header=header)
        check_imported(dst, src, cfg, case, held)
        # dwf names are accepted too
        dst2 = folder / "back2.weights"
        dwf_named = {name: arrays[name] for name in held_names(cfg, case, held)}
        dwf.import_weights(dwf_named, dst2, cfg=cfg, dialect=case.dialect, header=header)
        assert dst2.read_bytes() == src.read_bytes()
        assert fingerprint(src) == before


def held_names(cfg: Path, case: Case, held: int) -> list[str]:
    plan = dwf.plan(cfg, dialect=case.dialect)
    return [f"{lp.name}.{a.name}" for lp, a in plan.arrays() if a.stop <= held]


def test_state_dict_names(torch: ModuleType, tmp_path: Path) -> None:
    cfg, src, _ = write_case(tmp_path, CASES[0], 1)
    with dwf.open(src, cfg) as f:
        assert list(export.to_state_dict(f)) == [
            "conv_0.bn.bias",
            "conv_0.bn.weight",
            "conv_0.bn.running_mean",
            "conv_0.bn.running_var",
            "conv_0.weight",
            "conv_2.bn.bias",
            "conv_2.bn.weight",
            "conv_2.bn.running_mean",
            "conv_2.bn.running_var",
            "conv_2.weight",
            "batchnorm_3.bias",
            "batchnorm_3.weight",
            "batchnorm_3.running_mean",
            "batchnorm_3.running_var",
            "conv_5.bias",
            "conv_5.weight",
        ]
    cfg, src, _ = write_case(tmp_path, CASES[1], 1)
    with dwf.open(src, cfg) as f:
        assert list(export.to_state_dict(f)) == [
            "conv_0.bn.bias",
            "conv_0.bn.weight",
            "conv_0.bn.running_mean",
            "conv_0.bn.running_var",
            "conv_0.weight",
            "connected_1.bn.bias",
            "connected_1.weight",
            "connected_1.bn.weight",
            "connected_1.bn.running_mean",
            "connected_1.bn.running_var",
            "connected_3.bias",
            "connected_3.weight",
        ]


def torch_model(torch: ModuleType, plan: dwf.Plan) -> Any:
    """``nn`` modules of the planned shapes: conv/connected with a ``bn`` child when they have
    batch norm, ``[batchnorm]`` as a BatchNorm2d."""
    nn = torch.nn
    mods: dict[str, Any] = {}
    for lp in plan.layers:
        p = lp.params
        bn = bool(p.get("batch_normalize"))
        m: Any
        if lp.type == "convolutional":
            m = nn.Conv2d(
                lp.in_c,
                p["filters"],
                p["size"],
                stride=p["stride_x"],
                padding=p["padding"],
                groups=p["groups"],
                bias=not bn,
            )
            if bn:
                m.bn = nn.BatchNorm2d(p["filters"])
        elif lp.type == "connected":
            m = nn.Linear(lp.inputs, p["output"], bias=not bn)
            if bn:
                m.bn = nn.BatchNorm1d(p["output"])
        elif lp.type == "batchnorm":
            m = nn.BatchNorm2d(lp.out_c)
        else:
            continue
        mods[lp.name] = m
    return nn.ModuleDict(mods).eval()


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_state_dict_loads_into_torch_modules(torch: ModuleType, tmp_path: Path, case: Case) -> None:
    cfg, src, arrays = write_case(tmp_path, case, 31)
    with dwf.open(src, cfg, dialect=case.dialect) as f:
        model = torch_model(torch, f.plan)
        result = model.load_state_dict(export.to_state_dict(f), strict=False)
        lp_types = {lp.name: lp.type for lp in f.plan.layers}
    missing = list(result.missing_keys)
    # pjreddie's [batchnorm] stores no biases, so its BN module keeps the default shift.
    if case.dialect == "pjreddie":
        assert missing == ["batchnorm_3.bias"]
    else:
        assert missing == []
    assert list(result.unexpected_keys) == []
    for name, value in arrays.items():
        layer, _, array = name.partition(".")
        m = model[layer]
        bn = getattr(m, "bn", m)  # the BN part: a child of conv/connected, or the layer
        attr = {
            "weights": (m, "weight"),
            "biases": (bn, "bias"),
            "scales": (bn, "weight"),
            "rolling_mean": (bn, "running_mean"),
            "rolling_variance": (bn, "running_var"),
        }[array]
        if lp_types[layer] != "batchnorm" and array == "biases" and bn is m:
            attr = (m, "bias")
        t = getattr(*attr)
        np.testing.assert_array_equal(t.detach().numpy(), value)


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.name in ("groups_bn", "flipped", "pjreddie")],
    ids=lambda c: c.name,
)
def test_torch_conv_forward_equals_numpy_reference(
    torch: ModuleType, tmp_path: Path, case: Case
) -> None:
    cfg, src, arrays = write_case(tmp_path, case, 41)
    with dwf.open(src, cfg, dialect=case.dialect) as f:
        model = torch_model(torch, f.plan)
        model.load_state_dict(export.to_state_dict(f), strict=False)
        plan = f.plan
    checked = 0
    for lp in plan.layers:
        if lp.type != "convolutional":
            continue
        p = lp.params
        x = np.random.default_rng(lp.index).standard_normal((lp.in_c, lp.in_h, lp.in_w))
        a = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(lp.name + ".")}
        y = conv2d(x, a["weights"], p["stride_x"], p["padding"], p["groups"])
        m = model[lp.name]
        with torch.no_grad():
            out = m(torch.from_numpy(x.astype(np.float32))[None])
            if p["batch_normalize"]:
                out = m.bn(out)
                y = batch_norm(
                    y, a["rolling_mean"], a["rolling_variance"], a["scales"], a["biases"]
                )
            else:
                y = y + a["biases"].astype(np.float64)[:, None, None]
        assert tuple(out.shape[1:]) == (lp.out_c, lp.out_h, lp.out_w)
        np.testing.assert_allclose(out[0].numpy(), y, rtol=1e-4, atol=1e-4)
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("case", [CASES[1], CASES[2]], ids=["connected_bn", "legacy"])
def test_torch_linear_forward_equals_numpy_reference(
    torch: ModuleType, tmp_path: Path, case: Case
) -> None:
    cfg, src, arrays = write_case(tmp_path, case, 43)
    with dwf.open(src, cfg) as f:
        model = torch_model(torch, f.plan)
        model.load_state_dict(export.to_state_dict(f), strict=True)
    x = np.random.default_rng(2).standard_normal(12)
    a = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("connected_1.")}
    y = batch_norm(
        a["weights"].astype(np.float64) @ x,
        a["rolling_mean"],
        a["rolling_variance"],
        a["scales"],
        a["biases"],
    )
    m = model["connected_1"]
    with torch.no_grad():
        out = m.bn(m(torch.from_numpy(x.astype(np.float32))[None]))
    np.testing.assert_allclose(out[0].numpy(), y, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "case", [CASES[0], CASES[2], CASES[3]], ids=["groups_bn", "legacy", "flipped"]
)
def test_state_dict_is_zero_copy_and_private(torch: ModuleType, tmp_path: Path, case: Case) -> None:
    cfg, src, _ = write_case(tmp_path, case, 51)
    before = fingerprint(src)
    with dwf.open(src, cfg) as f:
        sd = export.to_state_dict(f)
        keys = list(sd)
        # consecutive arrays are consecutive in one buffer: views of the file's body, no copies
        for k0, k1 in itertools.pairwise(keys):
            t0 = sd[k0]
            if t0.is_contiguous() and sd[k1].is_contiguous():
                assert sd[k1].data_ptr() == t0.data_ptr() + 4 * t0.numel()
        assert all(t.numpy().flags.writeable for t in sd.values())
        views = {name: np.array(v) for name, v in f.arrays()}
        for t in sd.values():
            t.fill_(123.0)
        # neither the file nor the open file's views nor a new state dict see the writes
        assert fingerprint(src) == before
        for name, v in f.arrays():
            np.testing.assert_array_equal(v, views[name])
        fresh = export.to_state_dict(f)
        copied = export.to_state_dict(f, copy=True)
    for k in keys:
        assert not bool((fresh[k] == 123.0).all())
        assert torch.equal(fresh[k], copied[k])
        assert copied[k].data_ptr() != fresh[k].data_ptr()
    assert fingerprint(src) == before


# -- import: errors ----------------------------------------------------------------------------


def test_import_state_dict_needs_a_cfg(tmp_path: Path) -> None:
    dst = tmp_path / "out.weights"
    with pytest.raises(dwf.DwfError, match="cfg"):
        dwf.import_weights({"conv_0.weight": np.zeros((6, 2, 3, 3))}, dst)
    assert not dst.exists()


def test_import_errors_write_nothing(tmp_path: Path) -> None:
    cfg, src, arrays = write_case(tmp_path, CASES[0], 61)
    dst = tmp_path / "out.weights"
    bad: list[tuple[dict[str, Any], type[dwf.DwfError], str]] = [
        ({**arrays, "conv_9.weight": np.zeros(3)}, dwf.ArrayError, "conv_9.weight"),
        (
            {k: v for k, v in arrays.items() if k != "conv_2.scales"},
            dwf.ArrayError,
            "conv_2",
        ),  # an incomplete layer
        (
            {k: v for k, v in arrays.items() if not k.startswith("conv_2.")},
            dwf.ArrayError,
            "conv_2",
        ),  # a hole before later layers
        (
            {**arrays, "conv_5.weights": np.zeros((5, 12, 3, 3))},
            dwf.ArrayError,
            "conv_5",
        ),  # wrong shape
    ]
    for state, err, text in bad:
        with pytest.raises(err, match=text):
            dwf.import_weights(state, dst, cfg=cfg)
        assert not dst.exists()
    with pytest.raises(dwf.DwfError, match="format"):
        dwf.import_weights(src, dst)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(dwf.DwfError, match="npz"):
        dwf.import_weights(tmp_path / "junk.npz", dst)
    assert not dst.exists()
    assert leftovers(tmp_path) == []


def test_import_with_a_new_header_and_cfg(tmp_path: Path) -> None:
    cfg, src, arrays = write_case(tmp_path, CASES[0], 62)
    out = tmp_path / "e.npz"
    with dwf.open(src, cfg) as f:
        export.to_npz(f, out)
    dst = tmp_path / "out.weights"
    new = dwf.Header(0, 2, 5, 7, 20)
    dwf.import_weights(out, dst, cfg=cfg, header=new)
    assert dst.read_bytes() == header_bytes(new) + src.read_bytes()[20:]
    # a state dict without header: 0.2.5, seen 0
    dwf.import_weights(arrays, dst, cfg=cfg)
    assert dst.read_bytes()[:20] == header_bytes(dwf.Header(0, 2, 5, 0, 20))


# -- optional packages missing ------------------------------------------------------------------


def test_safetensors_round_trip_needs_no_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dwf writes the format itself and reads it back by its header's offsets (Reliability III:
    imports stream), so neither direction needs the safetensors package."""
    cfg, src, _ = write_case(tmp_path, CASES[0], 71)
    out = tmp_path / "e.safetensors"
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)  # in case it was imported
    with dwf.open(src, cfg) as f:
        export.to_safetensors(f, out)
    dwf.import_weights(out, tmp_path / "back.weights")
    assert (tmp_path / "back.weights").read_bytes() == src.read_bytes()


def test_missing_torch_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, src, _ = write_case(tmp_path, CASES[0], 72)
    monkeypatch.setitem(sys.modules, "torch", None)
    with dwf.open(src, cfg) as f, pytest.raises(dwf.DwfError, match=r"dwf-darknet\[torch\]"):
        export.to_state_dict(f)
    out = tmp_path / "e.pt"
    code = cli.main(["export", str(src), "--cfg", str(cfg), "--format", "torch", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("dwf: error:") and len(err.splitlines()) == 1
    assert "dwf-darknet[torch]" in err
    assert not out.exists()


def test_exports_leave_the_source_alone(tmp_path: Path) -> None:
    cfg, src, _ = write_case(tmp_path, CASES[2], 73)
    before = fingerprint(src)
    with dwf.open(src, cfg) as f:
        export.to_npz(f, tmp_path / "e.npz")
        export.to_npz(f, tmp_path / "c.npz", compress=True)
        if _importable("safetensors"):
            export.to_safetensors(f, tmp_path / "e.safetensors")
        if _importable("torch"):
            for t in export.to_state_dict(f).values():
                t.mul_(-1.0)
    assert fingerprint(src) == before
    assert leftovers(tmp_path) == []


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# -- the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_cli_export_import_round_trip(tmp_path: Path, fmt: str) -> None:
    if fmt == "safetensors":
        pytest.importorskip("safetensors")
    cfg, weights = (Path(p) for p in write_demo(tmp_path / "demo"))
    before = fingerprint(weights)
    out = tmp_path / f"demo.{fmt}"
    r = run_cli("export", str(weights), "--format", fmt, str(out))
    assert r.returncode == 0, r.stderr
    assert out.is_file() and str(out) in r.stdout
    back = tmp_path / "back.weights"
    r = run_cli("import", str(out), str(back))
    assert r.returncode == 0, r.stderr
    assert back.read_bytes() == weights.read_bytes()
    # (in-process from here on: the same code path, without a new interpreter each time)
    # a partial file exports and imports back as a partial file
    part = tmp_path / "demo.conv.9"
    assert cli.main(["cut", str(weights), str(part), "9"]) == 0
    out2 = tmp_path / f"part.{fmt}"
    assert cli.main(["export", str(part), "--cfg", str(cfg), "--format", fmt, str(out2)]) == 0
    back2 = tmp_path / "back2.weights"
    assert cli.main(["import", str(out2), str(back2)]) == 0
    assert back2.read_bytes() == part.read_bytes()
    with dwf.open(back2, cfg) as g:
        assert g.partial and not g.complete
    # --seen gives a 0.2.5 header with that seen
    back3 = tmp_path / "back3.weights"
    assert cli.main(["import", str(out), str(back3), "--seen", "5"]) == 0
    assert (
        back3.read_bytes() == header_bytes(dwf.Header(0, 2, 5, 5, 20)) + weights.read_bytes()[20:]
    )
    assert fingerprint(weights) == before


@pytest.mark.slow  # a child importing torch (~1.4 s)
def test_cli_torch_round_trip(
    torch: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, weights = (Path(p) for p in write_demo(tmp_path / "demo"))
    out = tmp_path / "demo.pt"
    r = run_cli("export", str(weights), "--format", "torch", str(out))
    assert r.returncode == 0, r.stderr
    state = torch.load(out, map_location="cpu", weights_only=True)
    with dwf.open(weights) as f:
        assert list(state) == list(export.to_state_dict(f))
    back = tmp_path / "back.weights"
    with dwf.open(weights) as f:
        seen = f.header.seen
    # in-process from here on (a new interpreter takes seconds to load torch)
    assert cli.main(["import", str(out), str(back), "--cfg", str(cfg), "--seen", str(seen)]) == 0
    assert back.read_bytes() == weights.read_bytes()
    capsys.readouterr()
    # a state dict carries no cfg: a one-line error, exit 2
    assert cli.main(["import", str(out), str(tmp_path / "nocfg.weights")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dwf: error:") and len(err.strip().splitlines()) == 1
    assert "cfg" in err and "Traceback" not in err
    assert not (tmp_path / "nocfg.weights").exists()


def test_cli_import_of_a_bad_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    assert cli.main(["import", str(bad), str(tmp_path / "o.weights")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dwf: error:") and "bad.npz" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.weights").exists()
