"""What stock Darknet builds do with a cfg, where dwf's plan and theirs part ways.

pjreddie's loader accepts a ``[crnn]`` after an ``[rnn]`` (whose output shape it leaves unset)
and reads a layout the issue measured on an instrumented stock build: 2,371,909 floats for
AlexeyAB's historical ``crnn.train.cfg`` read as pjreddie (``[rnn]``, two ``[crnn]``, a
``[connected]``). dwf plans that layout. Where stock builds crash, dwf still plans what a build
that survives reads, and says so in the plan's warnings (shown by ``dwf info`` and ``dwf check``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import shared_path

import dwf

# AlexeyAB's crnn.train.cfg as it was before [connected] replaced its [rnn] (the current one is
# in ../shared/conformance/cfg/alexeyab/crnn.train.cfg; the historical one is not).
HISTORICAL_CRNN = """[net]
subdivisions=8
inputs=256
batch = 128
momentum=0.9
decay=0.001
time_steps=576
learning_rate=0.1

[rnn]
batch_normalize=1
output = 1024
hidden=1024
activation=leaky

[crnn]
batch_normalize=1
size=1
pad=0
output = 1024
hidden=1024
activation=leaky

[crnn]
batch_normalize=1
size=1
pad=0
output = 1024
hidden=1024
activation=leaky

[connected]
output=256
activation=leaky

[softmax]

[cost]
type=sse
"""


def test_pjreddie_reads_crnn_after_rnn() -> None:
    p = dwf.Plan.from_text(HISTORICAL_CRNN, dialect="pjreddie")
    assert p.total_floats == 2_371_909
    counts = {lp.index: {a.name: a.count for a in lp.arrays} for lp in p.layers}
    for index, input_weights in ((1, 0), (2, 9)):
        crnn = counts[index]
        assert crnn["input_layer.weights"] == input_weights
        assert crnn["self_layer.weights"] == 9 and crnn["output_layer.weights"] == 9
        for sub in ("input_layer", "self_layer", "output_layer"):
            assert crnn[f"{sub}.biases"] == 1
            assert crnn[f"{sub}.scales"] == crnn[f"{sub}.rolling_mean"] == 1
            assert crnn[f"{sub}.rolling_variance"] == 1
    assert counts[3] == {"biases": 256, "weights": 0}
    assert any("pjreddie builds this crnn anyway" in w for w in p.warnings)


def test_crnn_in_the_current_cfg_still_plans_as_before() -> None:
    path = shared_path("conformance", "cfg", "alexeyab", "crnn.train.cfg")
    assert dwf.plan(path).total_floats == 9_015_808
    assert dwf.plan(path, dialect="pjreddie").total_floats == 68_716


def test_pjreddie_unknown_section_warns_of_the_crash() -> None:
    text = "[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=2\n[foo]\n"
    p = dwf.Plan.from_text(text, dialect="pjreddie")
    [w] = [w for w in p.warnings if "[foo]" in w]
    assert "Stock pjreddie Darknet crashes" in w and "groups 0" in w


def test_alexeyab_shortcut_of_other_size_warns_of_the_makefile_build() -> None:
    p = dwf.plan(shared_path("conformance", "cfg", "alexeyab", "resnet50.cfg"))
    w = [w for w in p.warnings if "Makefile build" in w]
    assert w and "assert" in w[0] and "shortcut_17" in w[0]
    # same-size shortcuts (every YOLO) say nothing
    v4 = dwf.plan(shared_path("conformance", "cfg", "alexeyab", "yolov4.cfg"))
    assert not [w for w in v4.warnings if "crash" in w or "abort" in w]


def test_alexeyab_network_without_a_2d_layer_warns() -> None:
    p = dwf.plan(shared_path("conformance", "cfg", "alexeyab", "rnn.cfg"))
    assert any("no layer is wider and taller than 1" in w for w in p.warnings)
    assert not any(
        "wider and taller" in w
        for w in dwf.plan(
            shared_path("conformance", "cfg", "pjreddie", "rnn.cfg"), dialect="pjreddie"
        ).warnings
    )


def test_info_and_check_show_the_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dwf.interfaces.cli import main

    cfg = tmp_path / "r.cfg"
    cfg.write_text("[net]\ninputs=4\n[connected]\noutput=3\n[softmax]\n")
    plan = dwf.plan(cfg)
    w = tmp_path / "r.weights"
    import numpy as np

    dwf.save(w, plan, {f"{lp.name}.{a.name}": np.ones(a.shape, "f4") for lp, a in plan.arrays()})
    assert main(["info", str(w), "--cfg", str(cfg)]) == 0
    assert "AlexeyAB's Darknet crashes loading this cfg" in capsys.readouterr().out
    report = dwf.check(w, cfg=cfg)
    assert any("wider and taller" in x for x in report.cfg_warnings)
    assert "wider and taller" in report.explain()
