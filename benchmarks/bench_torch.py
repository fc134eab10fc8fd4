#!/usr/bin/env python3
"""Benchmark: the network as a PyTorch module — ``dwf.to_torch`` against the best-known
hand-written converter, Tianxiaomo's ``darknet2pytorch`` (packaged on PyPI as ``darknet2any``).

Two tables:

1. **Building the module** for a yolov4-sized file (``../shared/conformance/cfg/alexeyab/
   yolov4.cfg``, 64,429,405 floats = 257,717,640 bytes of random values, written by
   ``dwf.save`` into a temporary folder): each build in a fresh process, after numpy, torch
   and the converter are imported; wall time and peak RSS growth (``VmHWM`` reset after the
   imports; Linux), with the RSS of the imports beside it. Rows: ``dwf.to_torch`` (copies),
   ``dwf.to_torch(copy=False)`` (views of the file), ``darknet2any``'s ``Darknet(cfg)`` +
   ``load_weights``; and writing the module back with ``dwf.save``.
2. **Error against Darknet**: every case of ``../shared/forward`` (AlexeyAB Darknet's own
   outputs of the real networks cut before their first detection layer), run by both modules
   in eval mode: the largest difference relative to the largest output, or why it fails; and,
   where darknet2any runs, yolov4 cut before its first ``[yolo]`` (320×320, the random
   weights), its output against dwf's.

darknet2any pulls in a CUDA build of torch, TensorRT and tensorflow as dependencies, so it is
never installed beside dwf: give ``--darknet2any PYTHON``, the interpreter of a separate venv
holding ``darknet2any`` (installed with ``--no-deps``), CPU torch, numpy and OpenCV; its rows
run there. Without it, only dwf's rows are measured. Nothing of darknet2any is imported here.

    python benchmarks/bench_torch.py --darknet2any /tmp/d2a-venv/bin/python
    python benchmarks/bench_torch.py --quick          # one run per row, dwf only

Prints the tables; docs/benchmarks.md records a run. No figure here is asserted by a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmark the checkout this script belongs to
    sys.path.insert(0, str(ROOT))

import dwf  # noqa: E402

SHARED = Path(os.environ.get("DWF_SHARED", ROOT.parent / "shared"))
CFG = SHARED / "conformance" / "cfg" / "alexeyab" / "yolov4.cfg"
DETECTION = ("yolo", "region", "Gaussian_yolo", "detection")

# What every child does first: its imports, then the counters.
_PRELUDE = r"""
import json, sys, time
import numpy, torch
def status(key):
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith(key + ":"))
def start():
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return status("VmRSS"), time.perf_counter()
def done(base, t, **extra):
    print(json.dumps({"seconds": time.perf_counter() - t, "peak_kib": status("VmHWM") - base,
                      "base_kib": base, **extra}))
"""

_DWF_BUILD = r"""
import dwf
dwf.to_torch  # the module's code, imported outside the measurement
from dwf.tools import torch_module
weights, mode = sys.argv[1:3]
base, t = start()
m = dwf.to_torch(weights, copy=(mode != "shared"))
if mode == "save":
    base, t = start()
    dwf.save(weights + ".back", m.plan, m)
done(base, t, params=sum(p.numel() for p in m.state_dict().values()))
"""

_D2A_BUILD = r"""
from darknet2any.tool.darknet2pytorch import Darknet
cfg, weights = sys.argv[1:3]
base, t = start()
m = Darknet(cfg)
m.load_weights(weights)
done(base, t, params=sum(p.numel() for p in m.state_dict().values()))
"""

# One forward case: the last layer's output, written to an .npy file.
_DWF_RUN = r"""
import dwf
cfg, weights, x, out = sys.argv[1:5]
m = dwf.to_torch(weights, cfg=cfg)
with torch.no_grad():
    y = m(torch.from_numpy(numpy.load(x)))[-1]
numpy.save(out, y.numpy())
"""

_D2A_RUN = r"""
import contextlib, io
from darknet2any.tool.darknet2pytorch import Darknet
cfg, weights, x, out = sys.argv[1:5]
with contextlib.redirect_stdout(io.StringIO()):  # it prints every layer
    m = Darknet(cfg)
    m.load_weights(weights)
    m.eval()
    m.training = True  # eval() for its layers; its forward returns boxes otherwise
    with torch.no_grad():
        m(torch.from_numpy(numpy.load(x)))
numpy.save(out, m.outputs[max(m.outputs)].numpy())
"""


def child(python: str, code: str, *args: str, dwf_path: bool = True) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = str(ROOT) if dwf_path else ""
    proc = subprocess.run(
        [python, "-c", _PRELUDE + code, *args],
        env=env,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        return {"error": last}
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def random_weights(folder: Path) -> Path:
    """yolov4.cfg's arrays, random (weights scaled by their fan-in, variances in 0.5..0.6),
    written by dwf.save."""
    plan = dwf.plan(CFG)
    rng = np.random.default_rng(0)
    arrays = {}
    for lp, a in plan.arrays():
        v = rng.standard_normal(a.shape, dtype=np.float32) * np.float32(0.05)
        if a.name == "weights" and len(a.shape) > 1:
            v *= np.float32(20 / np.sqrt(a.count // a.shape[0]))
        if a.name.endswith("rolling_variance"):
            v = np.abs(v) + np.float32(0.5)
        arrays[f"{lp.name}.{a.name}"] = v
    (folder / "yolov4.cfg").write_bytes(CFG.read_bytes())
    path = folder / "yolov4.weights"
    dwf.save(path, plan, arrays, header=dwf.Header(0, 2, 5, 32_000, 20))
    # as a weights file usually is: not modified in the last seconds (dwf reads a file modified
    # just now twice, to be sure it holds one version: docs/robustness.md)
    hour_ago = time.time() - 3600
    os.utime(path, (hour_ago, hour_ago))
    return path


def build_table(folder: Path, repeats: int, d2a: str | None) -> list[tuple[str, Any, Any, Any]]:
    weights = random_weights(folder)
    rows = []
    cases = [
        ("dwf.to_torch (copies)", sys.executable, _DWF_BUILD, [str(weights), "copy"]),
        ("dwf.to_torch(copy=False)", sys.executable, _DWF_BUILD, [str(weights), "shared"]),
        ("dwf.save(path, module.plan, module)", sys.executable, _DWF_BUILD, [str(weights), "save"]),
    ]
    if d2a:
        cases.append(
            (
                "darknet2any Darknet(cfg) + load_weights",
                d2a,
                _D2A_BUILD,
                [str(folder / "yolov4.cfg"), str(weights)],
            )
        )
    for label, python, code, args in cases:
        own = python == sys.executable
        runs = [child(python, code, *args, dwf_path=own) for _ in range(repeats)]
        ok = [r for r in runs if "error" not in r]
        if not ok:
            rows.append((label, runs[0]["error"], None, None))
            continue
        rows.append(
            (
                label,
                statistics.median(r["seconds"] for r in ok),
                statistics.median(r["peak_kib"] for r in ok) / 1024,
                statistics.median(r["base_kib"] for r in ok) / 1024,
            )
        )
    print(f"yolov4.cfg, {weights.stat().st_size:,} B weights file; {repeats} run(s) each")
    print(f"{'build':44s} {'median s':>9s} {'peak RSS growth MiB':>20s} {'RSS of imports':>15s}")
    for label, sec, peak, base in rows:
        if peak is None:
            print(f"{label:44s} fails: {sec}")
        else:
            print(f"{label:44s} {sec:9.3f} {peak:20.1f} {base:15.1f}")
    return rows


def _source(name: str) -> Path:
    for folder in sorted((SHARED / "realweights").iterdir()):
        if (folder / name).exists():
            return folder
    raise SystemExit(f"{name} not in ../shared/realweights")


def _cut(text: str) -> str:
    keep = []
    for line in text.split("\n"):
        s = line.lstrip()
        if s.startswith("[") and s[1:].split("]")[0].strip() in DETECTION:
            break
        keep.append(line)
    return "\n".join(keep)


def rel_err(got: Any, want: Any) -> float:
    got = np.asarray(got, np.float64).reshape(-1)
    want = np.asarray(want, np.float64).reshape(-1)
    if got.shape != want.shape:
        return float("inf")
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def error_table(folder: Path, d2a: str | None) -> None:
    forward = SHARED / "forward"
    index = json.loads((forward / "index.json").read_text())
    who = [("dwf", sys.executable, _DWF_RUN)] + ([("darknet2any", d2a, _D2A_RUN)] if d2a else [])
    print(f"\n{'case (cut before the first detection layer)':40s}", end="")
    print("".join(f" {w:>28s}" for w, _, _ in who))
    for name, case in sorted(index.items()):
        src = _source(case["weights"])
        text = _cut((src / case["cfg"]).read_text(errors="replace"))
        cfg = folder / f"{name}.cfg"
        cfg.write_text(text)
        plan = dwf.Plan.from_text(text)
        with dwf.open(src / case["weights"], src / case["cfg"]) as f:
            hsize = f.header.size
        weights = folder / f"{name}.weights"
        with open(src / case["weights"], "rb") as fh:
            weights.write_bytes(fh.read(hsize + 4 * plan.total_floats))
        x = np.random.default_rng(0).random(tuple(case["input_shape"]), dtype=np.float32)
        np.save(folder / "x.npy", x)
        want = np.load(forward / f"{name}.npz")["output"]
        cells = []
        for _, python, code in who:
            out = folder / "y.npy"
            out.unlink(missing_ok=True)
            r = child(python, code, str(cfg), str(weights), str(folder / "x.npy"), str(out),
                      dwf_path=python == sys.executable)  # fmt: skip
            if "error" in r:
                cells.append("fails: " + r["error"][:21])
            else:
                got = np.load(out)
                err = rel_err(got, want)
                cells.append("shape " + str(got.shape[1:]) if err == float("inf") else f"{err:.1e}")
        print(f"{name:40s}" + "".join(f" {c:>28s}" for c in cells))


def agreement_row(folder: Path, weights: Path, d2a: str) -> None:
    """Where darknet2any runs: yolov4 cut before its first [yolo], at 320×320, with the random
    weights of the build table — its output against dwf's (no Darknet output exists for it)."""
    import re

    text = _cut(CFG.read_text())
    text = re.sub(r"(?m)^(width|height)=\d+", r"\1=320", text)
    cfg = folder / "yolov4-cut.cfg"
    cfg.write_text(text)
    plan = dwf.Plan.from_text(text)
    cut = folder / "yolov4-cut.weights"
    with open(weights, "rb") as fh:
        cut.write_bytes(fh.read(20 + 4 * plan.total_floats))
    x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    np.save(folder / "x.npy", x)
    outs = []
    for python, code in ((sys.executable, _DWF_RUN), (d2a, _D2A_RUN)):
        out = folder / "y.npy"
        out.unlink(missing_ok=True)
        r = child(python, code, str(cfg), str(cut), str(folder / "x.npy"), str(out),
                  dwf_path=python == sys.executable)  # fmt: skip
        if "error" in r:
            print(f"yolov4 cut, 320×320: fails: {r['error']}")
            return
        outs.append(np.load(out))
    err = rel_err(outs[1], outs[0])
    last = plan.layers[-1].name
    print(f"\nyolov4 cut before its first [yolo] ({last}), 320×320, random weights:")
    print(f"darknet2any against dwf: {err:.1e} (largest output {np.abs(outs[0]).max():.3g})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one run per row")
    ap.add_argument("--darknet2any", metavar="PYTHON", help="a venv's python with darknet2any")
    ap.add_argument("--no-errors", action="store_true", help="only the build table")
    args = ap.parse_args()
    if not CFG.exists():
        print(f"{CFG} not found: the benchmark needs ../shared", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="dwf-bench-torch-") as tmp:
        build_table(Path(tmp), 1 if args.quick else 3, args.darknet2any)
        if not args.no_errors:
            error_table(Path(tmp), args.darknet2any)
            if args.darknet2any:
                agreement_row(Path(tmp), Path(tmp) / "yolov4.weights", args.darknet2any)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
