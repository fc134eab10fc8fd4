"""What looking for the right cfg costs when a file does not fit its cfg (issue 13).

Opens a real weights file with the wrong cfg, in folders holding 0, 10, 100 and 1,000 other
cfgs (copies of the real files' cfgs from ../shared/realweights, under new names), and compares
with opening the same file with its own cfg, and with the diagnosis alone (no folder search), in
the same run. Median of ``--repeat`` runs, in one process, warm page cache (the cost measured is
planning cfgs, not disk reads). Also times ``dwf.identify_many`` on the 16 real files.

    python benchmarks/bench_cfg_search.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import dwf  # noqa: E402
from dwf.io import cfg_search  # noqa: E402

REAL = ROOT.parent / "shared" / "realweights"


def timed(fn: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def wrong_open(weights: Path, cfg: Path) -> Callable[[], object]:
    def run() -> object:
        try:
            dwf.open(weights, cfg).close()
        except dwf.SizeMismatchError as e:
            return e
        raise AssertionError("expected a mismatch")

    return run


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if not REAL.is_dir():
        print(f"{REAL} not found", file=sys.stderr)
        return 1
    cfgs = sorted(REAL.glob("*/*.cfg"))
    src_w = REAL / "yolo-fastest-1.1" / "yolo-fastest-1.1.weights"
    wrong_cfg = REAL / "yolo-fastest-xl-1.0" / "yolo-fastest-xl.cfg"
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        own = base / "own"
        own.mkdir()
        shutil.copy(src_w, own / "w.weights")
        shutil.copy(REAL / "yolo-fastest-1.1" / "yolo-fastest-1.1.cfg", own / "w.cfg")
        rows.append(
            (
                "open with its own cfg",
                timed(lambda: dwf.open(own / "w.weights").close(), args.repeat),
            )
        )
        for n in (0, 10, 100, 1000):
            d = base / f"n{n}"
            d.mkdir()
            shutil.copy(src_w, d / "w.weights")
            shutil.copy(wrong_cfg, d / "wrong.cfg")
            for i in range(n):
                # not the right one: every other real cfg, over and over
                others = [c for c in cfgs if c.name != "yolo-fastest-1.1.cfg"]
                shutil.copy(others[i % len(others)], d / f"c{i:04d}.cfg")
            rows.append(
                (
                    f"wrong cfg, {n:>4} other cfgs beside it",
                    timed(wrong_open(d / "w.weights", d / "wrong.cfg"), args.repeat),
                )
            )
        saved = cfg_search.MAX_CFGS
        cfg_search.MAX_CFGS = 0
        try:
            d = base / "n1000"
            rows.append(
                (
                    "wrong cfg, search off (diagnosis only)",
                    timed(wrong_open(d / "w.weights", d / "wrong.cfg"), args.repeat),
                )
            )
        finally:
            cfg_search.MAX_CFGS = saved
        d = base / "right"
        d.mkdir()
        shutil.copy(src_w, d / "w.weights")
        shutil.copy(wrong_cfg, d / "wrong.cfg")
        for i, c in enumerate(cfgs):
            shutil.copy(c, d / f"c{i:04d}.cfg")
        rows.append(
            (
                "wrong cfg, right one among 16",
                timed(wrong_open(d / "w.weights", d / "wrong.cfg"), args.repeat),
            )
        )
    rows.append(
        (
            "identify_many on the 16 real files",
            timed(lambda: dwf.identify_many([REAL]), args.repeat),
        )
    )
    rows.append(
        (
            "  … without nearby cfgs",
            timed(lambda: dwf.identify_many([REAL], nearby=False), args.repeat),
        )
    )
    print(f"| case | median of {args.repeat} (ms) |\n|---|---:|")
    for name, sec in rows:
        print(f"| {name} | {sec * 1000:,.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
