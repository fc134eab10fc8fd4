#!/usr/bin/env python3
"""Benchmark: detections on real networks (``dwf.detect``, onnxruntime) and what the decoding
costs inside an ONNX model.

For each network (the real detection networks of ``../shared/realweights``, and a yolov3-tiny
and a yolov4 of zeros built from ``../shared/conformance`` cfgs, sparse files, for the sizes the
real ones lack), in this process, imports done first:

- the ONNX model with and without ``decode=True``: nodes, and onnxruntime's time per image
  (batch 1, median of the repeats) for each, so the difference is what the decoding costs in
  the graph;
- ``dwf.detect`` on a 640×480 PNG: the first call (description, model, session) and each
  later call, split into the image (decode, Darknet's resize), the network and the
  post-processing (threshold, NMS, Darknet's order);
- the NMS alone on Darknet's list for that image (``dwf.nms``).

    python benchmarks/bench_detect.py            # 9 repeats
    python benchmarks/bench_detect.py --quick    # 2 repeats, the small networks only

Prints a table and writes JSON (``--out``); docs/benchmarks.md records a run. No figure here is
asserted by a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmark the checkout this script belongs to
    sys.path.insert(0, str(ROOT))

import dwf  # noqa: E402
from dwf.format import nms as dnms  # noqa: E402
from dwf.format.network import describe  # noqa: E402
from dwf.io import images  # noqa: E402
from dwf.tools import detect as detect_mod  # noqa: E402

SHARED = Path(os.environ.get("DWF_SHARED", ROOT.parent / "shared"))
REAL = [
    ("yolo-fastest-1.1", "yolo-fastest-1.1.weights"),
    ("yolo-fastest-xl-1.0", "yolo-fastest-xl.weights"),
    ("mnv2-yolov3-nano-voc", "MobileNetV2-YOLOv3-Nano-voc.weights"),
    ("yolo-lite-trial3", "tiny-yolov2-trial3.weights"),
]
ZEROS = ["yolov3-tiny.cfg", "yolov4.cfg"]


def sparse(folder: Path, cfg_name: str) -> Path:
    """A weights file of zeros for a conformance cfg: the header, then a hole."""
    cfg = SHARED / "conformance" / "cfg" / "alexeyab" / cfg_name
    plan = dwf.plan(cfg)
    path = folder / (Path(cfg_name).stem + ".weights")
    with open(path, "wb") as fh:
        fh.write(dwf.Header(0, 2, 5, 0, 20).encode())
        fh.truncate(plan.expected_size(20))
    (folder / cfg_name).write_bytes(cfg.read_bytes())
    return path


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The median wall time of ``repeats`` calls (after one warm-up call), and a result."""
    result = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def session(weights: Path, decode: bool) -> tuple[Any, int, dict[str, Any]]:
    ort = __import__("onnxruntime")
    with dwf.open(weights) as f:
        network = describe(f.plan, f.header, decode=decode)
        network.require("ONNX")
        from dwf.tools.emit_onnx import in_memory

        model, arrays = in_memory(f, network)
    options = ort.SessionOptions()
    values = [ort.OrtValue.ortvalue_from_numpy(a) for a in arrays.values()]
    options.add_external_initializers(list(arrays), values)
    sess = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    nodes = sum(1 for _ in network.nodes())
    return sess, nodes, {"keep": (arrays, values)}


def bench(weights: Path, picture: Path, repeats: int) -> dict[str, Any]:
    with dwf.open(weights) as f:
        net = f.plan.net
        name = weights.stem
    x = np.random.default_rng(0).random((1, net.channels, net.height, net.width), np.float32)
    row: dict[str, Any] = {"network": name, "input": f"{net.width}x{net.height}"}
    # both models, run in turn so that both see the same machine (the load of others moves)
    made = {decode: session(weights, decode) for decode in (False, True)}
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(3 * repeats + 1):
        for decode, (sess, _, _) in made.items():
            t = time.perf_counter()
            sess.run(None, {"input": x})
            times[decode].append(time.perf_counter() - t)
    for decode, (_, nodes, _) in made.items():
        ms = statistics.median(times[decode][1:]) * 1e3
        row["decode" if decode else "raw"] = {"nodes": nodes, "ms": ms}
    row["decode_ms"] = row["decode"]["ms"] - row["raw"]["ms"]
    # the decoding alone: the part of the model from the raw outputs to the decoded ones
    ort, onnx = __import__("onnxruntime"), __import__("onnx")
    raw_sess = made[False][0]
    names = [o.name for o in raw_sess.get_outputs()]
    raw = dict(zip(names, raw_sess.run(None, {"input": x}), strict=True))
    with dwf.open(weights) as f:
        network = describe(f.plan, f.header, decode=True)
        from dwf.tools.emit_onnx import in_memory

        model = onnx.load_from_string(in_memory(f, network)[0])
    d = network.decoding
    assert d is not None
    # (the input too: AlexeyAB's [region] objectness of 1 takes the batch size from it)
    heads = [name for name in network.outputs if name in raw]
    part = onnx.utils.Extractor(model).extract_model(
        [*heads, "input"], [d.boxes, d.objectness, d.probs]
    )
    alone = ort.InferenceSession(part.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {h: raw[h] for h in heads}
    if "input" in {i.name for i in alone.get_inputs()}:
        feeds["input"] = x
    t_alone, _ = timed(lambda: alone.run(None, feeds), 3 * repeats)
    row["decode_alone_ms"] = t_alone * 1e3
    del made
    # dwf.detect: the first call, then the parts of a later one
    t0 = time.perf_counter()
    dwf.detect(weights, picture)
    row["first_call_s"] = time.perf_counter() - t0
    t_call, found = timed(lambda: dwf.detect(weights, picture), repeats)
    row["call_ms"] = t_call * 1e3
    row["detections"] = len(found[0])
    t_img, _ = timed(
        lambda: images.prepare(picture, net.channels, net.width, net.height, False), repeats
    )
    row["image_ms"] = t_img * 1e3
    with dwf.open(weights) as f:
        network = describe(f.plan, f.header, decode=True)
        run = detect_mod._onnxruntime(f, network)
        xin, sizes = images.prepare(picture, net.channels, net.width, net.height, False)
        t_net, (b, o, p) = timed(lambda: run(xin[None], np.float32([sizes])), repeats)
        d = network.decoding
        assert d is not None
        names = [str(i) for i in range(d.classes)]
        t_post, _ = timed(
            lambda: detect_mod._listed(d, b[0], o[0], p[0], sizes, 0.25, 0.45, names), repeats
        )
        rows, obj, probs = dnms.listed(o[0], p[0], 0.25, d.listing())
        t_nms, _ = timed(
            lambda: dnms.suppress(b[0][rows], obj, probs, 0.45, d.nms_kind, d.beta_nms), repeats
        )
    row.update(network_ms=t_net * 1e3, post_ms=t_post * 1e3, nms_ms=t_nms * 1e3, listed=len(rows))
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 repeats, the small networks only")
    p.add_argument("--dir", help="where to write the test files (default: a temporary folder)")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args()
    repeats = 2 if args.quick else 9
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        from PIL import Image

        yy, xx = np.mgrid[0:480, 0:640]
        pic = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
        picture = folder / "picture.png"
        Image.fromarray(pic).save(picture)
        files = [SHARED / "realweights" / d / w for d, w in REAL]
        files = [f for f in files if f.exists()][: 1 if args.quick else None]
        if not args.quick:
            files += [sparse(folder, c) for c in ZEROS]
        rows = [bench(f, picture, repeats) for f in files]
    head = (
        f"{'network':<28}{'input':>9}{'nodes':>12}{'ort ms':>16}{'Δ':>7}{'alone':>7}"
        f"{'first s':>9}{'call ms':>9}{'image':>7}{'net':>7}{'post':>7}{'nms':>7}"
    )
    print(head)
    for r in rows:
        print(
            f"{r['network']:<28}{r['input']:>9}"
            f"{r['raw']['nodes']:>6}→{r['decode']['nodes']:<5}"
            f"{r['raw']['ms']:>8.1f}→{r['decode']['ms']:<7.1f}{r['decode_ms']:>+7.1f}"
            f"{r['decode_alone_ms']:>7.2f}"
            f"{r['first_call_s']:>9.2f}{r['call_ms']:>9.1f}{r['image_ms']:>7.1f}"
            f"{r['network_ms']:>7.1f}{r['post_ms']:>7.2f}{r['nms_ms']:>7.2f}"
        )
    if args.out:
        doc = {"quick": args.quick, "repeats": repeats, "rows": rows}
        Path(args.out).write_text(json.dumps(doc, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
