"""Regenerate dwf/data/known_models.json: float counts of Darknet's public cfgs.

Run from the repo root with ../shared present:  python scripts/make_model_table.py
The table stores only numbers (name, dialect, layer count, float count, and the float counts of
the common partial backbones); the cfgs themselves stay in ../shared.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import dwf
from dwf.format.retrain import bn_floats, class_model, input_size_free

ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT.parent / "shared" / "conformance" / "cfg"
OUT = ROOT / "dwf" / "data" / "known_models.json"

# The partial backbones Darknet's READMEs tell users to make with `darknet partial`.
PARTIALS = [
    ("darknet53.conv.74", "alexeyab", "yolov3.cfg", 74),
    ("yolov4.conv.137", "alexeyab", "yolov4.cfg", 137),
    ("yolov4-tiny.conv.29", "alexeyab", "yolov4-tiny.cfg", 29),
    ("yolov3-tiny.conv.15", "alexeyab", "yolov3-tiny.cfg", 15),
    ("yolov4-csp.conv.142", "alexeyab", "yolov4-csp.cfg", 142),
    ("yolov4x-mish.conv.166", "alexeyab", "yolov4x-mish.cfg", 166),
    ("darknet19_448.conv.23", "pjreddie", "darknet19_448.cfg", 23),
]


def main() -> int:
    if not CFG.is_dir():
        print(f"{CFG} not found", file=sys.stderr)
        return 1
    models = []
    for dialect in ("alexeyab", "pjreddie"):
        for path in sorted((CFG / dialect).glob("*.cfg")):
            if path.name.startswith(("ab_", "pj_")):
                continue  # the corpus's hand-made feature tests are not models
            plan = dwf.plan(path, dialect=dialect)
            row = {
                "name": path.name.replace("yolov1__", "yolov1/"),
                "dialect": dialect,
                "layers": len(plan.layers),
                "floats": plan.total_floats,
            }
            cm = class_model(plan)
            if cm is not None:
                row["classes"] = cm.classes
                row["per_class"] = cm.per_class
            bn = bn_floats(plan)
            if bn:
                row["bn_floats"] = bn
            row["size_free"] = input_size_free(plan)
            # Where `darknet partial` can cut it: the floats a file holds through each layer.
            row["stops"] = [lp.stop for lp in plan.layers]
            models.append(row)
    partials = []
    for name, dialect, cfg, upto in PARTIALS:
        plan = dwf.plan(CFG / dialect / cfg, dialect=dialect)
        floats = max((lp.stop for lp in plan.layers[:upto]), default=0)
        partials.append(
            {"name": name, "dialect": dialect, "cfg": cfg, "upto": upto, "floats": floats}
        )
    text = json.dumps({"models": models, "partials": partials}, indent=1)
    # One line per list of stops keeps the table diffable without 20,000 one-number lines.
    text = re.sub(
        r"\[\n\s*(\d[\d,\s]*?)\n\s*\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text
    )
    OUT.write_text(text + "\n")
    print(f"wrote {OUT}: {len(models)} models, {len(partials)} partial backbones")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
