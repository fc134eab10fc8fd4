"""Files for the remote and many-file tests: a sparse yolov4-sized file and small checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import dwf

YOLOV4_SIZE = 257_717_640
YOLOV4_SEEN = 32_013_312

SMALL_CFG = """[net]
batch=1
width=32
height=32
channels=3

[convolutional]
batch_normalize=1
filters={f1}
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters={f2}
size=3
stride=1
pad=1
activation=leaky

[convolutional]
filters=8
size=1
stride=1
pad=1
activation=linear
"""


def sparse_yolov4(
    path: Path, cfg: Path | None, *, seen: int = YOLOV4_SEEN, seed: int = 0
) -> dict[str, np.ndarray]:
    """A file of yolov4's exact size: a real header, holes (zeros) everywhere but ``conv_12``,
    which holds random values; returns those values by array name."""
    plan = dwf.plan(cfg if cfg is not None else path.with_name("yolov4.cfg"))
    lp = plan.layer("conv_12")
    rng = np.random.default_rng(seed)
    values = {a.name: rng.standard_normal(a.shape).astype(np.float32) for a in lp.arrays}
    values["rolling_variance"] = np.abs(values["rolling_variance"]) + 0.5
    with open(path, "wb") as fh:
        fh.write(dwf.Header(0, 2, 5, seen, 20).encode())
        os.truncate(fh.fileno(), YOLOV4_SIZE)
        for a in lp.arrays:
            fh.seek(20 + 4 * a.offset)
            fh.write(values[a.name].tobytes())
    return values


def small_checkpoint(
    folder: Path, stem: str, *, seed: int, nan: bool = False, big: bool = False
) -> tuple[str, str]:
    """``<folder>/<stem>.weights`` (random values of SMALL_CFG; a NaN in it with ``nan``) and
    the cfg beside it, named as find_cfg looks for it (``run_1000`` → ``run.cfg``); ``big``:
    wider layers (about 600 KB instead of 6 KB)."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / (stem.rsplit("_", 1)[0] + ".cfg")
    if not cfg.exists():
        cfg.write_text(SMALL_CFG.format(f1=64, f2=256) if big else SMALL_CFG.format(f1=8, f2=16))
    plan = dwf.plan(cfg)
    rng = np.random.default_rng(seed)
    arrays = {}
    for lp in plan.stored:
        for a in lp.arrays:
            v = rng.standard_normal(a.shape).astype(np.float32)
            if a.name == "rolling_variance":
                v = np.abs(v) + 0.1
            arrays[f"{lp.name}.{a.name}"] = v
    if nan:
        arrays["conv_0.weights"].flat[3] = np.nan
    out = folder / f"{stem}.weights"
    dwf.save(out, plan, arrays, header=dwf.Header(0, 2, 5, 1000 * seed, 20))
    return str(out), str(cfg)
