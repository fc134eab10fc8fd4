"""Long-running fuzz of dwf: the properties of ``tests/test_fuzz.py`` with many more examples.

    python tests/fuzz/run_fuzz.py                      # a quick run (2,000 cases)
    python tests/fuzz/run_fuzz.py --examples 100000    # the long run recorded in docs/robustness.md
    python tests/fuzz/run_fuzz.py --million            # also time planning 10k/100k/1M layers

Cases are split between the properties (valid networks 20 %, damaged cfgs 40 %, damaged weights
files 40 %) and run in process, in chunks of ``--chunk`` examples with their own seed, so one
failure does not stop the run: it is printed (with Hypothesis' shrunk example and a blob to
reproduce it) and the run goes on with the next chunk. Prints cases per second as it goes and a
summary at the end; exits 1 if anything failed.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, so `fuzz` imports

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

import dwf
from fuzz import strategies as S


@dataclass
class Tally:
    """What one property did."""

    calls: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    slowest: float = 0.0
    peak: int = 0


def _property(
    name: str,
    strategy: st.SearchStrategy[Any],
    check: Callable[[Any], str | None],
    tally: Tally,
    trace_memory: bool,
) -> Callable[[Any], None]:
    def run(case: Any) -> None:
        tally.calls += 1
        with S.budget(trace_memory) as b:
            outcome = check(case)
        tally.outcomes[outcome or "ok"] += 1
        tally.slowest = max(tally.slowest, b.seconds)
        tally.peak = max(tally.peak, b.peak)
        b.check(name)

    return run


def run_property(
    name: str,
    strategy: st.SearchStrategy[Any],
    check: Callable[[Any], str | None],
    examples: int,
    chunk: int,
    first_seed: int,
    trace_memory: bool,
) -> Tally:
    tally = Tally()
    inner = _property(name, strategy, check, tally, trace_memory)
    done = 0
    i = 0
    start = time.perf_counter()
    while done < examples:
        k = min(chunk, examples - done)
        prop = settings(
            max_examples=k,
            deadline=None,
            database=None,
            derandomize=False,
            print_blob=True,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )(seed(first_seed + i)(given(strategy)(inner)))
        try:
            prop()
        except Exception:  # a failing property: keep the report, go on with the next chunk
            report = traceback.format_exc()
            tally.failures.append(report)
            print(f"\n!!! {name}: FAILURE in chunk {i} (seed {first_seed + i}):\n{report}")
        done += k
        i += 1
        elapsed = time.perf_counter() - start
        print(
            f"  {name}: {done:,}/{examples:,} examples, {tally.calls:,} calls,"
            f" {tally.calls / elapsed:,.0f} cases/s, slowest {tally.slowest:.3f} s,"
            f" failures {len(tally.failures)}",
            flush=True,
        )
        gc.collect()
    tally.seconds = time.perf_counter() - start
    return tally


def special_files(folder: Path) -> list[str]:
    """The weights paths no strategy makes: empty, a directory, missing, unreadable."""
    plan = dwf.Plan.from_text("[net]\nwidth=4\nheight=4\nchannels=1\n[conv]\nfilters=2\n")
    problems: list[str] = []
    empty = folder / "empty.weights"
    empty.write_bytes(b"")
    unreadable = folder / "unreadable.weights"
    unreadable.write_bytes(b"\0" * 64)
    unreadable.chmod(0)
    cases = {
        "empty file": empty,
        "directory": folder,
        "missing file": folder / "missing.weights",
        "no permission (only without root)": unreadable,
    }
    for what, path in cases.items():
        for cfg in (plan, None):
            try:
                with dwf.open(path, cfg) as f:
                    f.keys()
                if what != "no permission (only without root)" or os.geteuid() != 0:
                    problems.append(f"{what} (cfg={cfg is not None}): opened without an error")
            except dwf.DwfError as e:
                print(f"  {what}, cfg {'given' if cfg else 'not given'}: {type(e).__name__}: {e}")
            except Exception as e:
                problems.append(f"{what}: {type(e).__name__}: {e}")
    unreadable.chmod(0o644)
    return problems


def scaling(sizes: list[int]) -> dict[int, tuple[float, int]]:
    """Plan time (CPU seconds) and peak RSS growth for cfgs of ``sizes`` layers."""
    out: dict[int, tuple[float, int]] = {}
    for n in sizes:
        text = S.million_layer_text(n)
        dwf.format.planner._plan_cached.cache_clear()
        gc.collect()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.process_time()
        plan = dwf.Plan.from_text(text)
        dt = time.process_time() - t
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        assert len(plan.layers) == n
        out[n] = (dt, grew)
        print(
            f"  {n:>9,} layers: planned in {dt:8.2f} s CPU ({dt / n * 1e6:.1f} µs/layer),"
            f" peak RSS +{grew / 1024:,.0f} MiB",
            flush=True,
        )
        del plan, text
        dwf.format.planner._plan_cached.cache_clear()
        gc.collect()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--examples", type=int, default=2000, help="total cases (default 2,000)")
    ap.add_argument("--chunk", type=int, default=1000, help="examples per seed (default 1,000)")
    ap.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    ap.add_argument("--only", default="valid,cfg,weights", help="properties to run")
    ap.add_argument(
        "--trace-memory",
        action="store_true",
        help=f"trace every case's allocations (fail above {S.MEMORY_LIMIT // 2**20} MiB; slower)",
    )
    ap.add_argument(
        "--million", action="store_true", help="also time planning 10k, 100k and 1M layers"
    )
    args = ap.parse_args(argv)

    share = {"valid": 0.2, "cfg": 0.4, "weights": 0.4}
    wanted = [p for p in args.only.split(",") if p]
    total_share = sum(share[p] for p in wanted)
    folder = Path(tempfile.mkdtemp(prefix="dwf-fuzz-"))
    checks: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], str | None]]] = {
        "valid": (S.networks(), lambda net: S.check_valid_network(net)),
        "cfg": (S.cfg_cases(), S.check_cfg),
        "weights": (S.weights_cases(), lambda case: S.check_weights(case, folder)),
    }
    print(f"dwf fuzz: {args.examples:,} cases, properties {', '.join(wanted)}, seed {args.seed}")
    start = time.perf_counter()
    problems = special_files(folder)
    tallies: dict[str, Tally] = {}
    for i, name in enumerate(wanted):
        n = round(args.examples * share[name] / total_share)
        strategy, check = checks[name]
        print(f"{name}: {n:,} examples", flush=True)
        tallies[name] = run_property(
            name, strategy, check, n, args.chunk, args.seed + 100_000 * i, args.trace_memory
        )
    if args.million:
        print("planning time by layer count (linear: each 10x more layers takes about 10x):")
        times = scaling([10_000, 100_000, 1_000_000])
        for small, big in ((10_000, 100_000), (100_000, 1_000_000)):
            ratio = times[big][0] / max(times[small][0], 1e-9)
            print(f"  {big:,} / {small:,} layers: {ratio:.1f}x the time")
            if ratio > 20:
                problems.append(f"planning is not linear: {big} / {small} layers took {ratio:.1f}x")
    seconds = time.perf_counter() - start
    calls = sum(t.calls for t in tallies.values())
    failures = sum(len(t.failures) for t in tallies.values()) + len(problems)
    print("\nsummary")
    for name, t in tallies.items():
        top = ", ".join(f"{k} {v:,}" for k, v in t.outcomes.most_common(8))
        rate = t.calls / max(t.seconds, 1e-9)
        print(
            f"  {name:8} {t.calls:>9,} cases in {t.seconds:8.1f} s ({rate:,.0f}/s),"
            f" slowest {t.slowest:.3f} s, largest peak {t.peak / 1024:,.0f} KiB,"
            f" failures {len(t.failures)}; outcomes: {top}"
        )
    for p in problems:
        print(f"  problem: {p}")
    print(f"total: {calls:,} cases in {seconds:,.1f} s, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
