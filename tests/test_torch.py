"""The PyTorch module (``dwf.to_torch``): a second emitter of the network description.

- Exact in inference: every case of ``../shared/forward`` (Darknet's own outputs) within 1e-4,
  and every layer's output equal to the ONNX export's within 1e-5 on the networks the ONNX tests
  generate (``test_onnx.networks``, its layer cases, both dialects, legacy headers).
- Back to Darknet: byte for byte on every real file that fits its cfg; after training, a file
  that reads back equal to the module; a module that does not fit the cfg is refused with the
  first difference.
- Trainable: every exportable layer type takes a few optimizer steps and the loss falls; batch
  norm in training follows Darknet's GPU build (checked against a numpy model of it here),
  dropout drops.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
from conftest import shared_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_edit import legacy_header
from test_onnx import (
    CONNECTED_BN,
    LAYER_CASES,
    PJREDDIE_CASES,
    REFUSED,
    _forward_cases,
    _source,
    cut_before_detection,
    networks,
    rel_err,
    run,
    write_net,
)
from test_realweights import _files, _kind, _rows

import dwf
from dwf.format.ops import OPS

# CI installs torch where the machine keeps a CPU wheel of it (.ci/run): skipped elsewhere, as
# the other torch tests are.
torch = pytest.importorskip("torch")

from dwf.tools import torch_module  # noqa: E402  (imports torch)

Array = np.ndarray[Any, Any]


def every_layer(module: Any, x: Array) -> dict[str, Array]:
    """Every layer's output for ``x`` (forward hooks), and the module's outputs."""
    seen: dict[str, Array] = {}
    hooks = []
    for layer in module.children():
        if isinstance(layer, torch_module.DarknetLayer):
            name = layer.node.name

            def hook(_m: Any, _args: Any, out: Any, name: str = name) -> None:
                seen[name] = out.detach().numpy()

            hooks.append(layer.register_forward_hook(hook))
    with torch.no_grad():
        outs = module(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    assert [o.shape[0] for o in outs] == [x.shape[0]] * len(outs)
    seen.update((n, o.detach().numpy()) for n, o in zip(module.output_names, outs, strict=True))
    return seen


def test_every_operation_has_one_torch_function() -> None:
    assert set(torch_module.OPS) == set(OPS)


# -- Darknet itself ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", _forward_cases())
def test_darknet_forward_outputs(name: str, tmp_path: Path) -> None:
    forward = shared_path("forward")
    case = json.loads((forward / "index.json").read_text())[name]
    folder = _source(shared_path("realweights"), case["weights"])
    text = cut_before_detection((folder / case["cfg"]).read_text(errors="replace"))
    (tmp_path / "net.cfg").write_text(text)
    plan = dwf.Plan.from_text(text)
    with dwf.open(folder / case["weights"], folder / case["cfg"]) as src:
        hsize = src.header.size
    with open(folder / case["weights"], "rb") as fh:
        (tmp_path / "net.weights").write_bytes(fh.read(hsize + 4 * plan.total_floats))
    x = np.random.default_rng(0).random(tuple(case["input_shape"]), dtype=np.float32)
    want = np.load(forward / f"{name}.npz")["output"]
    module = dwf.to_torch(tmp_path / "net.weights", cfg=tmp_path / "net.cfg")
    assert module.output_names == (case["last_layer"],)
    with torch.no_grad():
        (got,) = module(torch.from_numpy(x))
    assert rel_err(got.numpy(), want) < 1e-4, name


# -- the ONNX export, layer by layer -----------------------------------------------------------
TOL = 1e-5


def matches_onnx(
    folder: Path,
    text: str,
    seed: int,
    dialect: str = "alexeyab",
    header: dwf.Header | None = None,
    batch: int = 2,
    tol: float = TOL,
) -> None:
    weights, plan, _ = write_net(folder, text, seed, dialect, header)
    model = folder / "net.onnx"
    dwf.export(weights, model, cfg=folder / "net.cfg", dialect=dialect)
    module = dwf.to_torch(weights, cfg=folder / "net.cfg", dialect=dialect)
    shape = module.input_shape[1:]
    x = np.random.default_rng(seed).random((batch, *shape), np.float32)
    names = [lp.name for lp in plan.layers if module.network.layers[lp.index].output]
    want = run(model, x, extra=names)
    got = every_layer(module, x)
    assert list(module.output_names) == [n for n in want if n in module.output_names]
    for name in [*names, *module.output_names]:
        assert rel_err(got[name], want[name]) < tol, f"{name}\n{text}"


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_layer_cases_equal_the_onnx_export(tmp_path: Path, name: str) -> None:
    matches_onnx(tmp_path, LAYER_CASES[name], 11, batch=3)


@pytest.mark.parametrize("name", sorted(PJREDDIE_CASES))
def test_pjreddie_cases_equal_the_onnx_export(tmp_path: Path, name: str) -> None:
    matches_onnx(tmp_path, PJREDDIE_CASES[name], 11, "pjreddie")


@pytest.mark.parametrize("dialect", ["alexeyab", "pjreddie"])
def test_connected_batch_norm_and_legacy_header(tmp_path: Path, dialect: str) -> None:
    (tmp_path / "now").mkdir()
    matches_onnx(tmp_path / "now", CONNECTED_BN, 3, dialect)
    matches_onnx(tmp_path, CONNECTED_BN, 3, dialect, legacy_header())
    module = dwf.to_torch(tmp_path / "net.weights", cfg=tmp_path / "net.cfg", dialect=dialect)
    assert module.state_dict()["connected_1.weights"].shape == (60, 7)  # stored (in, out)


def test_tiny_variances_follow_each_dialect(tmp_path: Path) -> None:
    text = (
        "[net]\nchannels=1\nheight=3\nwidth=3\n[convolutional]\nfilters=2\nsize=1\n"
        "batch_normalize=1\nactivation=linear\n"
    )
    outs = {}
    for dialect in ("alexeyab", "pjreddie"):
        folder = tmp_path / dialect
        folder.mkdir()
        plan = dwf.Plan.from_text(text, dialect=dialect)
        arrays = {
            "conv_0.biases": np.zeros(2),
            "conv_0.scales": np.ones(2),
            "conv_0.rolling_mean": np.zeros(2),
            "conv_0.rolling_variance": np.full(2, 1e-6),
            "conv_0.weights": np.ones((2, 1, 1, 1)),
        }
        (folder / "net.cfg").write_text(text)
        dwf.save(folder / "net.weights", plan, arrays)
        module = dwf.to_torch(folder / "net.weights", cfg=folder / "net.cfg", dialect=dialect)
        with torch.no_grad():
            outs[dialect] = module(torch.ones(1, 1, 3, 3))[0].numpy()
    np.testing.assert_allclose(outs["alexeyab"], 1 / np.sqrt(1e-6 + 1e-5), rtol=1e-5)
    np.testing.assert_allclose(outs["pjreddie"], 1 / (np.sqrt(1e-6) + 1e-6), rtol=1e-5)


def test_a_flat_input(tmp_path: Path) -> None:
    matches_onnx(tmp_path, "[net]\ninputs=12\n[connected]\noutput=5\nactivation=tanh\n"
                 "[dropout]\n[softmax]\n", 3)  # fmt: skip


ONNX_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)


@pytest.mark.slow  # many generated networks in two runtimes (~2.5 s)
@settings(ONNX_SETTINGS, max_examples=40)
@given(text=networks(opencv=False), seed=st.integers(0, 2**16))
def test_generated_networks_equal_the_onnx_export(
    tmp_path_factory: pytest.TempPathFactory, text: str, seed: int
) -> None:
    matches_onnx(tmp_path_factory.mktemp("t"), text, seed)


@pytest.mark.slow
@settings(ONNX_SETTINGS, max_examples=150)
@given(text=networks(opencv=False), seed=st.integers(0, 2**16))
def test_many_generated_networks_equal_the_onnx_export(
    tmp_path_factory: pytest.TempPathFactory, text: str, seed: int
) -> None:
    matches_onnx(tmp_path_factory.mktemp("t"), text, seed)


@pytest.mark.slow
@settings(ONNX_SETTINGS, max_examples=100)
@given(text=networks(opencv=True), seed=st.integers(0, 2**16))
def test_opencv_networks_equal_the_onnx_export(
    tmp_path_factory: pytest.TempPathFactory, text: str, seed: int
) -> None:
    matches_onnx(tmp_path_factory.mktemp("t"), text, seed)


@settings(ONNX_SETTINGS, max_examples=15)
@given(text=networks(opencv=False), seed=st.integers(0, 2**16))
def test_generated_networks_in_pjreddie_equal_the_onnx_export(
    tmp_path_factory: pytest.TempPathFactory, text: str, seed: int
) -> None:
    if any(k in text for k in ("weights_type", "stride_x", "maxpool_depth", "group_id")):
        return  # AlexeyAB-only options
    try:
        plan = dwf.Plan.from_text(text, dialect="pjreddie")
    except dwf.DwfError:
        return
    if all(lp.known for lp in plan.layers):
        matches_onnx(tmp_path_factory.mktemp("pj"), text, seed, "pjreddie")


# -- refusals: the ONNX export's, naming PyTorch -----------------------------------------------
REFUSALS = {
    **{k: "[convolutional]\nfilters=2\nsize=1\n" + v for k, v in REFUSED.items()},
    "detection-read": "[convolutional]\nfilters=6\nsize=1\nactivation=linear\n[yolo]\nmask=0\n"
    "anchors=1,1\nclasses=1\n[convolutional]\nfilters=2\nsize=1\nactivation=linear\n",
    "size-0": "[maxpool]\nsize=0\nstride=1\n",
    "antialiased-reference": "[maxpool]\nsize=2\nstride=2\nantialiasing=1\n"
    "[convolutional]\nfilters=2\nsize=1\n[route]\nlayers=-2\n",
}


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_refused_as_the_onnx_export_refuses(tmp_path: Path, kind: str) -> None:
    text = "[net]\nchannels=2\nheight=8\nwidth=8\n" + REFUSALS[kind]
    weights, _, _ = write_net(tmp_path, text, 1)
    with pytest.raises(dwf.UnsupportedLayerError) as onnx_err:
        dwf.export(weights, tmp_path / "net.onnx", cfg=tmp_path / "net.cfg")
    with pytest.raises(dwf.UnsupportedLayerError) as torch_err:
        dwf.to_torch(weights, cfg=tmp_path / "net.cfg")
    assert str(torch_err.value) == str(onnx_err.value).replace("to ONNX", "to PyTorch")
    assert "cannot be exported to PyTorch" in str(torch_err.value)


def test_a_partial_file_builds_the_layers_it_holds(tmp_path: Path) -> None:
    weights, _, _ = write_net(tmp_path, CONNECTED_BN, 1)
    part, cfg = tmp_path / "part.weights", tmp_path / "net.cfg"
    dwf.cut(weights, part, upto=2, cfg=cfg)
    # Failed before: refused, telling the user to cut the cfg; dwf export to ONNX builds the
    # layers a partial file holds without being told, and to_torch now does the same.
    module = dwf.to_torch(part, cfg=cfg)
    assert module.output_names == ("connected_1",)
    assert [lp.name for lp in module.plan.layers] == ["conv_0", "connected_1"]
    dwf.export(part, tmp_path / "p.onnx", cfg=cfg)
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 4)).astype(np.float32)
    (ours,) = module(torch.from_numpy(x))
    theirs = run(tmp_path / "p.onnx", x)["connected_1"]
    np.testing.assert_allclose(ours.detach().numpy(), theirs, rtol=1e-5, atol=1e-6)
    dwf.save(tmp_path / "back.weights", module.plan, module)
    assert (tmp_path / "back.weights").read_bytes() == part.read_bytes()
    with dwf.open(part, cfg=cfg) as f:  # an open partial file too, and views of it
        assert dwf.to_torch(f, copy=False).output_names == ("connected_1",)


def test_without_torch_the_extra_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights, _, _ = write_net(tmp_path, CONNECTED_BN, 1)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    with pytest.raises(dwf.DwfError, match=r"optional package 'torch'.*\[torch\]"):
        dwf.to_torch(weights, cfg=tmp_path / "net.cfg")


def test_a_wrong_input_is_refused_with_the_shape_it_takes(tmp_path: Path) -> None:
    weights, _, _ = write_net(tmp_path, CONNECTED_BN, 1)
    module = dwf.to_torch(weights, cfg=tmp_path / "net.cfg")
    with pytest.raises(dwf.DwfError, match=r"inputs of shape \(N, 2, 5, 4\); got \(1, 2, 4, 5\)"):
        module(torch.zeros(1, 2, 4, 5))


# -- back to Darknet -------------------------------------------------------------------------------
@pytest.mark.parametrize("row", _rows())
def test_real_files_round_trip_byte_for_byte(row: Any, tmp_path: Path) -> None:
    if _kind(row.verdict) != "matches exactly":
        pytest.skip("the file does not fit its cfg")
    weights, cfg = _files(row)
    for copy in (True, False):
        module = dwf.to_torch(weights, cfg=cfg, copy=copy)
        out = tmp_path / f"back-{copy}.weights"
        dwf.save(out, module.plan, module)
        assert out.read_bytes() == weights.read_bytes(), (row.folder, copy)
    seen = attrs.evolve(module.header, seen=123)
    dwf.save(tmp_path / "seen.weights", module.plan, module, header=seen)
    with dwf.open(tmp_path / "seen.weights", cfg) as again:
        assert again.header.seen == 123


SMALL = (
    "[net]\nchannels=2\nheight=5\nwidth=5\n[convolutional]\nfilters=4\nsize=3\npad=1\n"
    "batch_normalize=1\nactivation=leaky\n[convolutional]\nfilters=2\nsize=1\n"
    "[convolutional]\nfilters=2\nsize=1\n"
)


def test_save_refuses_its_source_and_a_module_that_does_not_fit(tmp_path: Path) -> None:
    weights, plan, _ = write_net(tmp_path, SMALL, 2)
    module = dwf.to_torch(weights, cfg=tmp_path / "net.cfg")
    with pytest.raises(dwf.DwfError, match="one of this command's inputs"):
        dwf.save(weights, module.plan, module)
    other = dwf.Plan.from_text(SMALL.replace("filters=4", "filters=3"))
    with pytest.raises(
        dwf.ArrayError,
        match=r"does not fit the cfg: layer 0 \(conv_0, convolutional\) stores biases of shape"
        r" \(3,\); the module's conv_0.biases has shape \(4,\)",
    ):
        dwf.save(tmp_path / "x.weights", other, module)
    fewer = dwf.Plan.from_text(SMALL.rsplit("[convolutional]", 1)[0])
    with pytest.raises(dwf.ArrayError, match=r"its conv_2.biases of shape \(2,\) \(and 1 more\)"):
        dwf.save(tmp_path / "x.weights", fewer, module)
    module.conv_1.weights = torch.nn.Parameter(torch.zeros(1, 4, 1, 1))  # pruned by hand
    with pytest.raises(dwf.ArrayError, match=r"conv_1.weights has shape \(1, 4, 1, 1\)"):
        dwf.save(tmp_path / "x.weights", plan, module)
    assert not (tmp_path / "x.weights").exists()


def test_a_pruned_module_saves_to_its_pruned_cfg(tmp_path: Path) -> None:
    text = SMALL
    weights, _, _ = write_net(tmp_path, text, 2)
    module = dwf.to_torch(weights, cfg=tmp_path / "net.cfg")
    keep = [0, 2, 3]  # conv_0's filters kept, and conv_1's input channels with them
    conv0, conv1 = module.conv_0, module.conv_1
    with torch.no_grad():
        for name in ("biases", "scales", "weights"):
            setattr(conv0, name, torch.nn.Parameter(getattr(conv0, name)[keep]))
        for name in ("rolling_mean", "rolling_variance"):
            setattr(conv0, name, getattr(conv0, name)[keep])
        conv1.weights = torch.nn.Parameter(conv1.weights[:, keep])
    pruned_cfg = tmp_path / "pruned.cfg"
    pruned_cfg.write_text(text.replace("filters=4", "filters=3"))
    dwf.save(tmp_path / "pruned.weights", dwf.plan(pruned_cfg), module)
    pruned = dwf.to_torch(tmp_path / "pruned.weights", cfg=pruned_cfg)
    x = torch.rand(2, 2, 5, 5)
    with torch.no_grad():
        np.testing.assert_allclose(pruned(x)[0].numpy(), module(x)[0].numpy(), rtol=1e-6)


# -- training --------------------------------------------------------------------------------------
TRAIN_CASES = {
    **LAYER_CASES,
    "connected-bn": CONNECTED_BN,
    "every-kind": "[net]\nchannels=3\nheight=8\nwidth=8\n"
    "[convolutional]\nfilters=8\nsize=3\npad=1\nbatch_normalize=1\nactivation=mish\n"
    "[convolutional]\nfilters=8\nsize=1\nbatch_normalize=1\nactivation=swish\n"
    "[shortcut]\nfrom=-2\nweights_type=per_channel\nweights_normalization=softmax\n"
    "activation=linear\n"
    "[dropout]\nprobability=0.1\n"
    "[route]\nlayers=-1,-3\ngroups=2\ngroup_id=1\n"
    "[avgpool]\n[convolutional]\nfilters=8\nsize=1\nactivation=logistic\n"
    "[scale_channels]\nfrom=-3\n"
    "[convolutional]\nfilters=8\nsize=1\nactivation=logistic\n[sam]\nfrom=-2\n"
    "[local_avgpool]\nsize=2\nstride=2\n[upsample]\nstride=2\n[maxpool]\nsize=2\nstride=2\n"
    "[reorg3d]\nstride=2\n[activation]\nactivation=gelu\n[normalization]\nsize=3\n"
    "[empty]\n[crop]\ncrop_height=2\ncrop_width=2\n[connected]\noutput=6\nactivation=leaky\n"
    "[softmax]\n[cost]\n",
}
PJ_TRAIN_CASES = {**PJREDDIE_CASES, "connected-bn": CONNECTED_BN}


def train(module: Any, x: Array, steps: int = 12) -> list[float]:
    """Steps of Adam on the mean squared distance of the outputs to fixed targets."""
    torch.manual_seed(0)
    xs = torch.from_numpy(x)
    with torch.no_grad():
        targets = [torch.randn_like(o) for o in module(xs)]
    module.train()
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=0.01)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = sum(((o - t) ** 2).mean() for o, t in zip(module(xs), targets, strict=True))
        assert isinstance(loss, torch.Tensor)
        loss.backward()
        for name, p in module.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        opt.step()
        losses.append(loss.item())
    return losses


def trains_and_reads_back(folder: Path, text: str, dialect: str = "alexeyab") -> None:
    weights, _, _ = write_net(folder, text, 4, dialect)
    module = dwf.to_torch(weights, cfg=folder / "net.cfg", dialect=dialect)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    x = np.random.default_rng(4).random((4, *module.input_shape[1:]), np.float32)
    if not any(True for _ in module.parameters()):  # nothing to train: the gradient flows
        xs = torch.from_numpy(x).requires_grad_()
        sum(o.sum() for o in module.train()(xs)).backward()  # type: ignore[union-attr]
        assert xs.grad is not None and torch.isfinite(xs.grad).all()
        return
    losses = train(module, x)
    assert losses[-1] < losses[0], (losses, text)
    state = module.state_dict()
    assert all(not torch.equal(before[k], v) for k, v in state.items()), "every array moved"
    dwf.save(folder / "trained.weights", module.plan, module)
    with dwf.open(folder / "trained.weights", folder / "net.cfg", dialect=dialect) as f:
        assert f.header == module.header
        arrays = module.arrays_for(module.plan)
        for name, value in f.arrays():
            np.testing.assert_array_equal(value, arrays[name], err_msg=name)
    again = dwf.to_torch(folder / "trained.weights", cfg=folder / "net.cfg", dialect=dialect)
    for k, v in again.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_the_training_cases_cover_every_layer_type_the_description_computes() -> None:
    from dwf.format.lowering import LOWERINGS

    types = {
        lp.type
        for cases, dialect in ((TRAIN_CASES, "alexeyab"), (PJ_TRAIN_CASES, "pjreddie"))
        for text in cases.values()
        for lp in dwf.Plan.from_text(text, dialect=dialect).layers
    }
    assert set(LOWERINGS) <= types, set(LOWERINGS) - types


@pytest.mark.slow  # trains every layer type (~0.2 s each)
@pytest.mark.parametrize("name", sorted(TRAIN_CASES))
def test_every_layer_type_trains_and_reads_back(tmp_path: Path, name: str) -> None:
    trains_and_reads_back(tmp_path, TRAIN_CASES[name])


@pytest.mark.parametrize("name", sorted(PJ_TRAIN_CASES))
def test_pjreddie_layers_train_and_read_back(tmp_path: Path, name: str) -> None:
    trains_and_reads_back(tmp_path, PJ_TRAIN_CASES[name], "pjreddie")


def _darknet_training_batch_norm(
    z: Array, scale: Array, bias: Array, mean: Array, var: Array
) -> tuple[Array, Array, Array]:
    """Darknet's GPU build with cuDNN (cudnnBatchNormalizationForwardTraining, factor .01,
    epsilon .00001): the batch's biased variance normalizes, the unbiased one is averaged."""
    z = z.astype(np.float64)
    axes = (0, 2, 3) if z.ndim == 4 else (0,)
    n = z.size // z.shape[1]
    m, v = z.mean(axis=axes), z.var(axis=axes)
    shape = (1, -1, 1, 1) if z.ndim == 4 else (1, -1)
    y = (z - m.reshape(shape)) / np.sqrt(v.reshape(shape) + 1e-5)
    y = y * scale.reshape(shape) + bias.reshape(shape)
    return y, 0.99 * mean + 0.01 * m, 0.99 * var + 0.01 * v * n / (n - 1)


@pytest.mark.parametrize("dialect", ["alexeyab", "pjreddie"])
def test_batch_norm_trains_as_darknets_gpu_build(tmp_path: Path, dialect: str) -> None:
    text = CONNECTED_BN.replace("activation=leaky", "batch_normalize=1\nactivation=linear", 1)
    text = text.replace("activation=mish", "activation=linear")
    weights, _, arrays = write_net(tmp_path, text, 6, dialect)
    module = dwf.to_torch(weights, cfg=tmp_path / "net.cfg", dialect=dialect).train()
    x = np.random.default_rng(6).random((5, 2, 5, 4), np.float32)
    seen: dict[str, Array] = {}
    conv = module.conv_0
    # the convolution's output before batch norm: the layer's first operation
    conv.register_forward_hook(lambda m, a, out: seen.update(y=out.detach().numpy()))
    with torch.no_grad():
        z = torch.nn.functional.conv2d(torch.from_numpy(x), conv.weights, padding=1).numpy()
        module(torch.from_numpy(x))
    a = arrays["conv_0"]
    y, mean, var = _darknet_training_batch_norm(
        z, a["scales"], a["biases"], a["rolling_mean"], a["rolling_variance"]
    )
    np.testing.assert_allclose(seen["y"], y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(conv.rolling_mean.numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(conv.rolling_variance.numpy(), var, rtol=1e-5)
    module.eval()  # and back: the dialect's inference formula with the moved statistics
    eps = 1e-6 if dialect == "pjreddie" else 1e-5
    with torch.no_grad():
        module(torch.from_numpy(x))
    v = var.reshape(1, -1, 1, 1)
    den = np.sqrt(v) + eps if dialect == "pjreddie" else np.sqrt(v + eps)
    want = (z - mean.reshape(1, -1, 1, 1)) / den * a["scales"].reshape(1, -1, 1, 1)
    np.testing.assert_allclose(seen["y"], want + a["biases"].reshape(1, -1, 1, 1), rtol=1e-4,
                               atol=1e-5)  # fmt: skip


def test_dropout_drops_in_training_only(tmp_path: Path) -> None:
    text = "[net]\nchannels=4\nheight=16\nwidth=16\n[dropout]\nprobability=0.25\n"
    text += "[activation]\nactivation=linear\n"
    weights, _, _ = write_net(tmp_path, text, 1)
    module = dwf.to_torch(weights, cfg=tmp_path / "net.cfg")
    x = torch.ones(8, 4, 16, 16)
    (y,) = module(x)
    assert torch.equal(y, x)
    torch.manual_seed(1)
    (y,) = module.train()(x)
    kept = y != 0
    assert 0.70 < float(kept.float().mean()) < 0.80
    assert torch.allclose(y[kept], torch.tensor(1 / 0.75))
    defaults = {d: dwf.Plan.from_text(text.replace("probability=0.25\n", ""), dialect=d)
                for d in ("alexeyab", "pjreddie")}  # fmt: skip
    assert {d: p.layers[0].params["probability"] for d, p in defaults.items()} == {
        "alexeyab": 0.2,
        "pjreddie": 0.5,
    }


# -- sharing the file's memory -------------------------------------------------------------
def test_shared_module_points_into_the_file_and_never_writes_it(tmp_path: Path) -> None:
    weights, _, _ = write_net(tmp_path, CONNECTED_BN, 8)
    raw = weights.read_bytes()
    shared = dwf.to_torch(weights, cfg=tmp_path / "net.cfg", copy=False)
    copied = dwf.to_torch(weights, cfg=tmp_path / "net.cfg")
    assert not any(p.requires_grad for p in shared.parameters())
    assert all(p.requires_grad for p in copied.parameters())
    x = torch.rand(3, 2, 5, 4)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(shared(x), copied(x), strict=True))
        shared.conv_0.weights.mul_(2)  # a private page: the file is not touched
    assert weights.read_bytes() == raw
    again = dwf.to_torch(weights, cfg=tmp_path / "net.cfg", copy=False)
    assert torch.equal(again.conv_0.weights, copied.conv_0.weights)
    with dwf.open(weights, tmp_path / "net.cfg", backend="pread") as f:  # no map: copies
        assert dwf.to_torch(f, copy=False).conv_0.weights.requires_grad is False


def test_an_open_file_stays_open(tmp_path: Path) -> None:
    weights, _, _ = write_net(tmp_path, CONNECTED_BN, 8)
    with dwf.open(weights, tmp_path / "net.cfg") as f:
        module = dwf.to_torch(f)
        assert not f.closed
        np.testing.assert_array_equal(f["conv_0"].weights, module.conv_0.weights.detach().numpy())



def test_a_whole_detection_network(tmp_path: Path) -> None:
    """yolo-fastest-1.1 whole: one output per [yolo] input, as the ONNX export's; the first is
    Darknet's output of the network cut before its first [yolo]."""
    folder = shared_path("realweights", "yolo-fastest-1.1")
    weights = folder / "yolo-fastest-1.1.weights"
    module = dwf.to_torch(weights, copy=False)  # views of the file: the same values
    yolos = [d.input for d in module.network.detections]
    assert module.output_names == tuple(yolos) and len(yolos) == 2
    model = tmp_path / "m.onnx"
    dwf.export(weights, model, embed=True)
    x = np.random.default_rng(0).random((1, 3, 320, 320), np.float32)
    want = run(model, x)
    got = every_layer(module, x)
    for name in yolos:
        assert rel_err(got[name], want[name]) < TOL, name
    darknet = np.load(shared_path("forward") / "yolo-fastest-1.1.npz")["output"]
    assert rel_err(got[yolos[0]], darknet) < 1e-4


def _corpus_cases() -> list[Path]:
    corpus = shared_path("conformance", "cfg")
    return sorted(corpus.glob("*/*.cfg"))


@pytest.mark.slow
def test_corpus_networks_equal_the_onnx_export_or_are_refused_alike(tmp_path: Path) -> None:
    """The conformance corpus's networks small enough to run here (up to 20 M floats and 2
    BFLOPs), with random weights: refused with the ONNX export's message, or equal to it, every
    layer, within 1e-4 (deep networks: float32 sums in another order differ by more than in the
    generated ones)."""
    compared = refused = 0
    for i, cfg in enumerate(_corpus_cases()):
        dialect = cfg.parent.name
        try:
            plan = dwf.plan(cfg, dialect=dialect)
        except dwf.DwfError:
            continue
        if plan.total_floats > 20_000_000 or plan.total_bflops > 2:
            continue
        folder = tmp_path / str(i)
        folder.mkdir()
        text = cfg.read_text(errors="replace")
        weights = _small_weights(folder, text, plan, i)
        try:
            dwf.export(weights, folder / "net.onnx", cfg=folder / "net.cfg", dialect=dialect)
        except dwf.UnsupportedLayerError as e:
            with pytest.raises(dwf.UnsupportedLayerError) as err:
                dwf.to_torch(weights, cfg=folder / "net.cfg", dialect=dialect)
            assert str(err.value) == str(e).replace("to ONNX", "to PyTorch")
            refused += 1
            continue
        module = dwf.to_torch(weights, cfg=folder / "net.cfg", dialect=dialect)
        x = np.random.default_rng(i).random((1, *module.input_shape[1:]), np.float32)
        names = [lay.name for lay in module.network.layers if lay.output]
        want = run(folder / "net.onnx", x, extra=names)
        got = every_layer(module, x)
        for name in [*names, *module.output_names]:
            assert rel_err(got[name], want[name]) < 1e-4, (cfg.name, name)
        compared += 1
    assert compared > 15 and refused > 10, (compared, refused)


def _small_weights(folder: Path, text: str, plan: dwf.Plan, seed: int) -> Path:
    """Random weights scaled by each layer's fan-in, so deep networks keep moderate values."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for lp, a in plan.arrays():
        if a.name.endswith("rolling_variance"):
            v = rng.uniform(0.5, 1.5, a.shape)
        elif a.name.endswith("weights") and len(a.shape) > 1:
            v = rng.normal(0, 1 / np.sqrt(max(a.count // a.shape[0], 1)), a.shape)
        else:
            v = rng.normal(0, 0.1, a.shape)
        arrays[f"{lp.name}.{a.name}"] = v
    (folder / "net.cfg").write_text(text)
    return Path(dwf.save(folder / "net.weights", plan, arrays))


def test_a_deep_copy_and_a_pickled_module_work(tmp_path: Path) -> None:
    """An EMA of the weights deep-copies the module; torch.save pickles it whole."""
    import copy
    import io

    weights, _, _ = write_net(tmp_path, LAYER_CASES["share-index"], 8)
    module = dwf.to_torch(weights, cfg=tmp_path / "net.cfg")
    twin = copy.deepcopy(module)
    assert twin.network is module.network  # the description is shared, the tensors are not
    assert twin.conv_0.weights.data_ptr() != module.conv_0.weights.data_ptr()
    buf = io.BytesIO()
    torch.save(module, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    x = torch.rand(2, 2, 5, 5)
    with torch.no_grad():
        for other in (twin, loaded):
            assert torch.equal(other(x)[0], module(x)[0])
    dwf.save(tmp_path / "back.weights", loaded.plan, loaded)
    assert (tmp_path / "back.weights").read_bytes() == weights.read_bytes()
