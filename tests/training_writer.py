"""A stand-in for Darknet saving checkpoints while it trains, run in its own process.

Darknet's ``save_weights`` opens the file with ``fopen(name, "wb")`` (truncating it, the same
inode when the file exists), writes the header, then each layer's arrays in turn, and closes it.
This writer does the same, with a flush and a small sleep after every layer so that a reader
sees every intermediate size. ``_last`` is rewritten in place, as Darknet does every 100
iterations.

Run as ``python training_writer.py CFG STEPS_JSON``: ``STEPS_JSON`` is a list of
``{"path": ..., "seen": N, "scale": {"conv_0": 1.02}, "nan": "conv_3", "collapse": "conv_2",
"pause": seconds, "after": seconds}``; each step starts from the previous step's values
(the first from the values in ``start.npz`` beside the cfg, when present, else seed 0).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import dwf


def values(plan: dwf.Plan, seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    out = {}
    for lp, a in plan.arrays():
        v = rng.standard_normal(a.shape).astype(np.float32)
        out[f"{lp.name}.{a.name}"] = np.abs(v) + 0.1 if a.name == "rolling_variance" else v
    return out


def write_like_darknet(
    path: Path, plan: dwf.Plan, arrays: dict[str, np.ndarray[Any, Any]], seen: int, pause: float
) -> None:
    with open(path, "wb") as fh:  # truncates in place, like fopen(name, "wb")
        fh.write(dwf.Header(0, 2, 5, seen, 20).encode())
        fh.flush()
        for lp in plan.stored:
            for a in lp.arrays:
                fh.write(np.ascontiguousarray(arrays[f"{lp.name}.{a.name}"], "<f4").tobytes())
            fh.flush()
            time.sleep(pause)


def main(cfg: str, steps_json: str) -> None:
    plan = dwf.plan(cfg)
    start = Path(cfg).with_name("start.npz")
    arrays = dict(np.load(start)) if start.exists() else values(plan)
    for step in json.loads(steps_json):
        for layer, factor in step.get("scale", {}).items():
            for key in arrays:
                if key.startswith(layer + ".") and not key.endswith("rolling_variance"):
                    arrays[key] = (arrays[key] * np.float32(factor)).astype(np.float32)
        if "nan" in step:
            arrays[step["nan"] + ".weights"].flat[0] = np.nan
        if "collapse" in step:
            arrays[step["collapse"] + ".rolling_variance"][:] = 1e-9
        write_like_darknet(Path(step["path"]), plan, arrays, step["seen"], step.get("pause", 0.02))
        time.sleep(step.get("after", 0.5))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
