"""How long a size mismatch takes to diagnose, against the plan it explains (issue 11).

For each depth, a cfg of N identical conv+batch-norm layers and a file short by one layer's
batch-norm arrays — the worst case for the diagnosis: every layer's batch norm explains the size
by its float count alone. Reported: the time of one plan (the unit of work), the time of the
diagnosis that follows (``dwf.open`` with the plan given, so only the diagnosis is timed), their
ratio, and the memory the diagnosis still holds once it returned (tracemalloc, a separate run).

Usage: python benchmarks/bench_diagnose.py [--layers 2000 20000] [--root PATH]
``--root`` benchmarks another checkout (e.g. the code before the change) in the same run.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

BLOCK = "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=1\nstride=1\nactivation=leaky\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--layers", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[1]))
    args = ap.parse_args()
    sys.path.insert(0, args.root)
    import dwf

    print(f"dwf from {Path(dwf.__file__).parent}")
    print(f"{'layers':>7} {'plan s':>8} {'diagnose s':>11} {'ratio':>6} {'held after MB':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.layers:
            cfg = Path(tmp) / f"deep{n}.cfg"
            cfg.write_text("[net]\nwidth=8\nheight=8\nchannels=3\n" + BLOCK * n)
            t = time.perf_counter()
            plan = dwf.plan(cfg)
            t_plan = time.perf_counter() - t
            weights = Path(tmp) / f"deep{n}.weights"
            with open(weights, "wb") as fh:
                fh.write(dwf.Header(0, 2, 5, 0, 20).encode())
                fh.truncate(plan.expected_size(20) - 4 * 12)

            def diagnose(weights: Path = weights, plan: dwf.Plan = plan) -> str:
                try:
                    dwf.open(weights, plan)
                except dwf.SizeMismatchError as e:
                    return str(e.diagnosis.cause.kind)
                raise AssertionError("no mismatch")

            t = time.perf_counter()
            kind = diagnose()
            t_diag = time.perf_counter() - t
            assert kind == "batch-normalize", kind
            # Memory: a cold diagnosis of a different text (a cached one would allocate nothing).
            other = Path(tmp) / f"deep{n}-mem.cfg"
            other.write_text(cfg.read_text() + "# another text\n")
            plan2 = dwf.plan(other)
            gc.collect()
            tracemalloc.start()
            diagnose(weights, plan2)
            gc.collect()
            held = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            ratio = t_diag / t_plan
            print(f"{n:>7} {t_plan:>8.2f} {t_diag:>11.2f} {ratio:>6.1f} {held / 1e6:>14.1f}")


if __name__ == "__main__":
    main()
