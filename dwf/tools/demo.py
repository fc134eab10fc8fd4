"""The bundled demo model: a tiny YOLO-style cfg shipped with dwf and deterministic weights."""

from __future__ import annotations

import os
from importlib import resources
from typing import Any

import numpy as np

from dwf.errors import DwfError
from dwf.format.header import Header
from dwf.format.planner import Plan
from dwf.io.writer import array_filler, atomic_writes, write_body

DEMO_CFG = "demo-tiny-yolo.cfg"
DEMO_SEEN = 64_000


def demo_cfg_text() -> str:
    """The demo network's cfg text."""
    return resources.files("dwf").joinpath("data").joinpath(DEMO_CFG).read_text(encoding="utf-8")


def demo_arrays(plan: Plan, seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    """Deterministic, plausible values for every array of ``plan``.

    Weights are He-initialised, biases small, batch-norm scales near 1, means near 0 and
    variances positive, so the statistics look like a trained network's.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray[Any, Any]] = {}
    for lp, a in plan.arrays():
        leaf = a.name.rsplit(".", 1)[-1]
        if leaf == "weights":
            fan_in = max(int(np.prod(a.shape[1:])), 1) if len(a.shape) > 1 else 1
            v = rng.normal(0.0, np.sqrt(2.0 / fan_in), a.shape)
        elif leaf == "scales":
            v = rng.normal(1.0, 0.1, a.shape)
        elif leaf == "rolling_variance":
            v = rng.uniform(0.5, 1.5, a.shape)
        else:  # biases, rolling_mean
            v = rng.normal(0.0, 0.05, a.shape)
        out[f"{lp.name}.{a.name}"] = v.astype(np.float32)
    return out


def write_demo(folder: str | os.PathLike[str]) -> tuple[str, str]:
    """Write ``demo.cfg`` and ``demo.weights`` into ``folder`` (created if needed; files of
    those names in it are replaced, both together or neither); return their paths.

    Raises:
        DwfError: ``folder`` exists and is not a folder, or cannot be written.
    """
    folder = os.fspath(folder)
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise DwfError(
            "exists and is not a folder; give a folder (new or existing) to write"
            " demo.cfg and demo.weights into",
            path=folder,
        )
    try:
        os.makedirs(folder, exist_ok=True)
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or e
        raise DwfError(f"cannot create the folder: {why}", path=folder) from None
    cfg_path = os.path.join(folder, "demo.cfg")
    weights_path = os.path.join(folder, "demo.weights")
    text = demo_cfg_text()
    plan = Plan.from_text(text, path=cfg_path)
    arrays = demo_arrays(plan)
    header = Header(0, 2, 5, DEMO_SEEN, 20)
    fill = array_filler(lambda lp, a: arrays[f"{lp.name}.{a.name}"], header)
    # one commit point: both files are published together, or neither (a full disk)
    with atomic_writes([cfg_path, weights_path]) as (cfg_fh, weights_fh):
        cfg_fh.write(text.encode("utf-8"))
        write_body(weights_fh, plan, fill, header=header)
    return cfg_path, weights_path
