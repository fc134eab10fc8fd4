"""A small test network shared by the robustness and streaming tests: ~760 KiB of weights
whose connected layer lies far past the first page, with a flipped convolution and batch norm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import dwf

CFG = """[net]
width=32
height=32
channels=3

[convolutional]
filters=16
size=3
pad=1
batch_normalize=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=32
size=3
pad=1
batch_normalize=1
flipped=1
activation=leaky

[convolutional]
filters=64
size=3
pad=1
activation=linear

[connected]
output=10
activation=linear
"""


def random_arrays(plan: dwf.Plan, seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    """Random values for every array of ``plan``; batch-norm variances positive (folding batch
    norm divides by them)."""
    rng = np.random.default_rng(seed)
    out = {}
    for lp, a in plan.arrays():
        values = rng.standard_normal(a.shape)
        if a.name.endswith("rolling_variance"):
            values = np.abs(values) + 0.1
        out[f"{lp.name}.{a.name}"] = values.astype(np.float32)
    return out


def write_model(folder: Path, header: dwf.Header | None = None) -> tuple[Path, Path]:
    """``net.weights`` (random values, ``header`` or a current 20-byte one) and ``net.cfg`` in
    ``folder``: ~760 KiB, the connected layer far past the first page."""
    cfg = folder / "net.cfg"
    cfg.write_text(CFG)
    weights = folder / "net.weights"
    plan = dwf.plan(cfg)
    dwf.save(weights, plan, random_arrays(plan), header=header or dwf.Header(0, 2, 5, 1234, 20))
    return weights, cfg
