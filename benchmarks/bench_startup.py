#!/usr/bin/env python3
"""Benchmark: the way into a weights file — dwf against safetensors, same conditions, same run.

"Open a file and look at one layer" is what a script, ``dwf info`` or a notebook cell does. This
measures it the way a user meets it, for dwf and for safetensors (the reference for lazy tensor
loading) on the *same arrays*: a yolov4-sized ``.weights`` file (``yolov4.cfg`` from
``../shared``, random values) and a ``.safetensors`` copy of every one of its arrays.

Rows (every comparison interleaves dwf and safetensors run by run, so that a busy machine slows
both alike; min and median are reported):

- **fresh process**: the wall time of a whole ``python -c`` process, imports included, that opens
  the file and sums ``conv_12``'s weights — dwf ``dwf.open`` vs safetensors ``safe_open`` +
  ``get_tensor`` — next to a process that only imports numpy (what both pay);
- **imports**: inside such processes, ``import dwf`` and ``import dwf`` + the modules opening
  needs (the reader, the planner …), after ``import numpy``;
- **first open in a process**: imports done, dwf's plan not cached (the cfg is read and planned),
  in a fresh process per run;
- **repeated, one process**: dwf's reopen (plan cached) vs safetensors' reopen, and a kept-open
  dwf file vs safetensors' kept-open handle;
- **planning**: ``yolov4.cfg`` planned from text with no cache, in one process;
- **10,000 layers**: a generated 10,000-layer cfg (1×1 convolutions, 4–32 filters drawn at random,
  so that few layers are alike) opened for the first time in a fresh process, vs safetensors
  opening the same 20,000 arrays, and a file of 10,000 of them.

    python benchmarks/bench_startup.py            # 21 runs per row (~3 min, ~600 MB of temp files)
    python benchmarks/bench_startup.py --quick    # yolov4-tiny-sized file, 5 runs per row (~30 s)

Without safetensors (``pip install 'dwf-darknet[safetensors]'``) its rows are skipped, with a
note. The report is printed; everything, per run, is written to
``benchmarks/out/bench_startup.json``.
docs/benchmarks.md records a run and explains it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _harness import (
    ROOT,
    Job,
    generated_cfg,
    load_average,
    machine_info,
    positive,
    versions,
    warm,
    worker_env,
    write_weights,
)

import dwf

SCRIPT = Path(__file__).resolve()
SHARED = Path(os.environ.get("DWF_SHARED", ROOT.parent / "shared"))
CFG_DIR = SHARED / "conformance" / "cfg" / "alexeyab"
DEFAULT_OUT = ROOT / "benchmarks" / "out" / "bench_startup.json"
YOLOV4_FLOATS = 64_429_405  # a generated stand-in's size when ../shared is absent
TINY_FLOATS = 6_056_606
MANY_LAYERS = 10_000

# -- what the fresh processes run (nothing of the harness: their imports are measured) ----------
FRESH_NUMPY = "import numpy"
FRESH_DWF = """\
import dwf
f = dwf.open({weights!r}, {cfg!r})
float(f[{layer!r}].weights.sum())
"""
FRESH_SAFETENSORS = """\
from safetensors import safe_open
with safe_open({st!r}, framework="np") as h:
    float(h.get_tensor({tensor!r}).sum())
"""
IMPORTS = """\
import time
c0, t0 = time.process_time(), time.perf_counter()
import numpy
c1, t1 = time.process_time(), time.perf_counter()
import dwf
c2, t2 = time.process_time(), time.perf_counter()
dwf.open  # the reader and what it imports: everything opening needs
c3, t3 = time.process_time(), time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t1, c1 - c0, c2 - c1, c3 - c1)
"""
# attrs on its own, after numpy: dwf's records are attrs classes, so opening imports it
ATTRS_IMPORT = """\
import time
import numpy
c0, t0 = time.process_time(), time.perf_counter()
import attrs
print(time.perf_counter() - t0, time.process_time() - c0)
"""


# == worker side ==================================================================================
def worker(job: Job) -> Any:
    root = job.get("root")
    if root is not None and not Path(dwf.__file__).resolve().is_relative_to(Path(root).resolve()):
        raise RuntimeError(f"the worker imported {dwf.__file__}, not the dwf of {root}")
    kind = job["kind"]
    if kind == "first":
        return first_open(job)
    if kind == "repeated":
        return repeated(job)
    if kind == "plan":
        return planning(job)
    raise ValueError(f"unknown job kind {kind!r}")


def first_open(job: Job) -> float:
    """One open + one small array's sum, the first in this process (imports already done)."""
    layer = job["layer"]
    if job["method"] == "dwf":
        weights, cfg = job["weights"], job["cfg"]
        gc.collect()
        t0 = time.perf_counter()
        f = dwf.open(weights, cfg)
        w = f[layer].weights
        assert w is not None
        float(w.sum())
        return time.perf_counter() - t0
    from safetensors import safe_open

    path, tensor = job["st"], f"{layer}.weights"
    gc.collect()
    t0 = time.perf_counter()
    with safe_open(path, framework="np") as h:
        float(h.get_tensor(tensor).sum())
    return time.perf_counter() - t0


def _times(call: Callable[[], object], n: int) -> list[float]:
    call()  # the first call outside: lazy imports, caches
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


def repeated(job: Job) -> dict[str, list[float]]:
    """In one process, repeated: reopening and kept-open handles, dwf and safetensors."""
    weights, cfg, layer, n = job["weights"], job["cfg"], job["layer"], job["n"]
    tensor = f"{layer}.weights"

    def dwf_reopen() -> float:
        with dwf.open(weights, cfg) as f:
            w = f[layer].weights
            assert w is not None
            return float(w.sum())

    kept = dwf.open(weights, cfg)

    def dwf_kept() -> float:
        w = kept[layer].weights
        assert w is not None
        return float(w.sum())

    out = {"dwf-reopen": _times(dwf_reopen, n), "dwf-kept": _times(dwf_kept, n)}
    if job.get("st"):
        from safetensors import safe_open

        def st_reopen() -> float:
            with safe_open(job["st"], framework="np") as h:
                return float(h.get_tensor(tensor).sum())

        with safe_open(job["st"], framework="np") as handle:
            out["st-reopen"] = _times(st_reopen, n)
            out["st-kept"] = _times(lambda: float(handle.get_tensor(tensor).sum()), n)
    kept.close()
    return out


def planning(job: Job) -> dict[str, list[float]]:
    """Tokenising and planning a cfg from text, no cache, repeated in one process."""
    from dwf.format import planner
    from dwf.format.cfg import tokenize

    text = Path(job["cfg"]).read_text(encoding="utf-8")

    def uncached() -> object:
        planner._plan_cached.cache_clear()
        return dwf.Plan.from_text(text)

    n = job["n"]
    return {"tokenize": _times(lambda: tokenize(text), n), "plan": _times(uncached, n)}


# == driver side ==================================================================================
def spawn(code: str, root: Path = ROOT) -> tuple[float, float, str]:
    """Wall time and CPU time (user + system) of a whole fresh ``python -c code`` process, and
    its stdout. CPU time is what the process itself did: on a busy machine it moves much less
    than the wall time, which also counts the time the process waited for a core. ``root``: the
    checkout whose dwf the process imports (this one unless ``--against`` names another)."""
    env = worker_env()
    # this checkout's dwf, whatever else is installed; safetensors' process gets the same path
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=root,  # `python -c` puts its working directory first on sys.path
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"fresh process failed:\n{code}\n{proc.stderr}")
    return wall, cpu, proc.stdout


def run_worker(job: Job) -> Any:
    """Run one job in a fresh worker process; with ``"root"`` in the job, the worker imports
    the dwf of that checkout (``--against``) instead of this one's."""
    env = worker_env()
    if job.get("root") is not None:
        env["DWF_BENCH_ROOT"] = job["root"]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--worker", json.dumps(job)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {job} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def stats(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "n": len(values)}


def ms(s: float) -> str:
    v = 1e3 * s
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.1f}"


def save_safetensors(weights: Path, cfg: Path, out: Path, limit: int | None = None) -> int:
    """Every array of the weights file (or the first ``limit``) as tensors ``<layer>.<array>``."""
    from safetensors.numpy import save_file

    tensors: dict[str, np.ndarray[Any, Any]] = {}
    with dwf.open(weights, cfg) as f:
        for lp, spec in f.plan.arrays():
            if limit is not None and len(tensors) >= limit:
                break
            view = f[lp.name][spec.name]
            tensors[f"{lp.name}.{spec.name}"] = np.ascontiguousarray(view)
        save_file(tensors, str(out))
    return len(tensors)


def many_layers_cfg(n: int, seed: int) -> str:
    """``n`` 1×1 convolutions of 4–32 filters drawn at random: a long network whose layers are
    seldom alike (repeated sections meeting the same input are planned once; this keeps that
    from flattering dwf)."""
    rng = np.random.default_rng(seed)
    lines = ["[net]", "width=8", "height=8", "channels=3", ""]
    for filters in rng.integers(4, 33, size=n):
        lines += ["[convolutional]", f"filters={filters}", "size=1", "activation=leaky", ""]
    return "\n".join(lines)


class Startup:
    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args = args
        self.quick: bool = args.quick
        self.repeats: int = args.repeats or (5 if args.quick else 21)
        self.folder = folder
        self.notes: list[str] = []
        self.doc: dict[str, Any] = {"quick": self.quick, "repeats": self.repeats}
        if args.against is not None:
            self.doc["against"] = str(args.against)
        try:
            import safetensors  # noqa: F401

            self.has_st = True
        except ImportError:
            self.has_st = False
            self.notes.append(
                "safetensors is not installed (pip install 'dwf-darknet[safetensors]'): its"
                " rows are skipped and no ratio is computed"
            )

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    # -- files ------------------------------------------------------------------------------------
    def network(self) -> tuple[str, str, str]:
        """(cfg text, where it comes from, label) of the file the open rows use."""
        name, floats = ("yolov4-tiny", TINY_FLOATS) if self.quick else ("yolov4", YOLOV4_FLOATS)
        path = CFG_DIR / f"{name}.cfg"
        if path.is_file() and not self.args.generated:
            return path.read_text(encoding="utf-8"), os.path.relpath(path, ROOT), f"{name}.cfg"
        note = f"generated here, {floats:,} floats asked (a stand-in for {name}.cfg)"
        return generated_cfg(floats), note, f"generated {name}-sized cfg"

    def plan_cfg(self) -> tuple[Path, str]:
        """The cfg the planning row plans: yolov4.cfg itself whenever it is there."""
        path = CFG_DIR / "yolov4.cfg"
        if path.is_file() and not self.args.generated:
            return path, os.path.relpath(path, ROOT)
        out = self.folder / "plan-standin.cfg"
        out.write_text(generated_cfg(YOLOV4_FLOATS), encoding="utf-8")
        return out, "a generated yolov4-sized stand-in (../shared/…/yolov4.cfg is absent)"

    # -- sections ---------------------------------------------------------------------------------
    def fresh_section(self, weights: Path, cfg: Path, st: Path | None, layer: str) -> list[str]:
        against: Path | None = self.args.against
        dwf_code = FRESH_DWF.format(weights=str(weights), cfg=str(cfg), layer=layer)
        codes = {"numpy": (FRESH_NUMPY, ROOT), "dwf": (dwf_code, ROOT)}
        if against is not None:
            codes["dwf@against"] = (dwf_code, against)
        if st is not None:
            tensor = f"{layer}.weights"
            codes["safetensors"] = (FRESH_SAFETENSORS.format(st=str(st), tensor=tensor), ROOT)
        walls: dict[str, list[float]] = {k: [] for k in codes}
        cpus: dict[str, list[float]] = {k: [] for k in codes}
        imports: list[list[float]] = []
        imports_against: list[list[float]] = []
        attrs_import: list[list[float]] = []
        for code, root in codes.values():  # warm-up: bytecode caches written, page cache warm
            spawn(code, root)
        spawn(IMPORTS)
        if against is not None:
            spawn(IMPORTS, against)
        warm([weights] + ([st] if st else []))
        self.log(f"fresh processes: {self.repeats} interleaved runs of {len(codes) + 2} ...")
        for _ in range(self.repeats):
            for key, (code, root) in codes.items():
                wall, cpu, _ = spawn(code, root)
                walls[key].append(wall)
                cpus[key].append(cpu)
            imports.append([float(v) for v in spawn(IMPORTS)[2].split()])
            if against is not None:
                imports_against.append([float(v) for v in spawn(IMPORTS, against)[2].split()])
            attrs_import.append([float(v) for v in spawn(ATTRS_IMPORT)[2].split()])
        self.doc["fresh"] = {k: {"runs": v, **stats(v)} for k, v in walls.items()}
        self.doc["fresh_cpu"] = {k: {"runs": v, **stats(v)} for k, v in cpus.items()}
        cols = list(zip(*imports, strict=True))
        names = ("numpy", "dwf", "dwf+open path", "numpy cpu", "dwf cpu", "dwf+open path cpu")
        self.doc["imports"] = {
            name: {"runs": list(c), **stats(list(c))} for name, c in zip(names, cols, strict=True)
        }
        if against is not None:
            cols = list(zip(*imports_against, strict=True))
            self.doc["imports_against"] = {
                name: {"runs": list(c), **stats(list(c))}
                for name, c in zip(names, cols, strict=True)
            }
        cols = list(zip(*attrs_import, strict=True))
        self.doc["imports"]["attrs"] = {"runs": list(cols[0]), **stats(list(cols[0]))}
        self.doc["imports"]["attrs cpu"] = {"runs": list(cols[1]), **stats(list(cols[1]))}
        head = f"{'':<44} {'wall median':>11} {'min':>7} {'CPU median':>11} {'min':>7}"
        rows = ["fresh python process, all of it (ms)" + head[36:]]
        labels = {
            "numpy": "  import numpy only (what both pay)",
            "dwf": f"  dwf: import, open, {layer} weights sum",
            "dwf@against": "  the same with dwf of --against",
            "safetensors": "  safetensors: import, open, get_tensor, sum",
        }
        for key, label in labels.items():
            if key in walls:
                w, c = walls[key], cpus[key]
                rows.append(
                    f"{label:<44} {ms(statistics.median(w)):>11} {ms(min(w)):>7}"
                    f" {ms(statistics.median(c)):>11} {ms(min(c)):>7}"
                )
        rows.append("in such a process, after import numpy (ms)")
        lines = [
            ("imports", "dwf", "import dwf"),
            ("imports", "dwf+open path", "import dwf + open path"),
            ("imports", "attrs", "  of which import attrs (alone)"),
        ]
        if against is not None:
            lines.append(("imports_against", "dwf+open path", "import dwf + open path, --against"))
        for table, name, label in lines:
            w, c = self.doc[table][name], self.doc[table][name + " cpu"]
            rows.append(
                f"{'  ' + label:<44} {ms(w['median']):>11} {ms(w['min']):>7}"
                f" {ms(c['median']):>11} {ms(c['min']):>7}"
            )
        if against is not None:
            rows.append(f"  --against: {against}")
        return rows

    def first_section(self, weights: Path, cfg: Path, st: Path | None, layer: str) -> list[str]:
        jobs = {"dwf": {"kind": "first", "method": "dwf", "weights": str(weights), "cfg": str(cfg)}}
        if st is not None:
            jobs["safetensors"] = {"kind": "first", "method": "safetensors", "st": str(st)}
        for job in jobs.values():
            job["layer"] = layer
        return self.interleaved("first", jobs, f"first open + {layer} sum, imports done")

    def interleaved(self, key: str, jobs: dict[str, Job], title: str) -> list[str]:
        runs: dict[str, list[float]] = {k: [] for k in jobs}
        for job in jobs.values():
            run_worker(job)  # warm-up
        for _ in range(self.repeats):
            for k, job in jobs.items():
                runs[k].append(float(run_worker(job)))
        self.doc[key] = {k: {"runs": v, **stats(v)} for k, v in runs.items()}
        rows = [f"{title + ' (fresh process per run)':<52} {'median ms':>10} {'min ms':>9}"]
        for k, v in runs.items():
            rows.append(f"{'  ' + k:<52} {ms(statistics.median(v)):>10} {ms(min(v)):>9}")
        return rows

    def repeated_section(self, weights: Path, cfg: Path, st: Path | None, layer: str) -> list[str]:
        job = {
            "kind": "repeated",
            "weights": str(weights),
            "cfg": str(cfg),
            "st": str(st) if st else None,
            "layer": layer,
            "n": 100 if self.quick else 1000,
        }
        res: dict[str, list[float]] = run_worker(job)
        self.doc["repeated"] = {k: {"runs": v, **stats(v)} for k, v in res.items()}
        labels = {
            "dwf-reopen": "dwf.open again (plan cached) + sum",
            "st-reopen": "safe_open again + get_tensor + sum",
            "dwf-kept": "kept-open dwf file: f[layer].weights + sum",
            "st-kept": "kept-open safetensors handle: get_tensor + sum",
        }
        rows = [f"{'one process, repeated, ' + layer:<52} {'median ms':>10} {'min ms':>9}"]
        for k, label in labels.items():
            if k in res:
                v = res[k]
                rows.append(f"{'  ' + label:<52} {ms(statistics.median(v)):>10} {ms(min(v)):>9}")
        return rows

    def plan_section(self, cfg: Path, source: str) -> list[str]:
        job: Job = {"kind": "plan", "cfg": str(cfg), "n": 50 if self.quick else 300}
        against: Path | None = self.args.against
        res: dict[str, list[float]] = {}
        # With --against, the two checkouts plan in alternating fresh processes (which one goes
        # first alternates too); the figures are the median and min of all their plans.
        sides: list[tuple[str, str | None]] = [("", None)]
        if against is not None:
            sides.append(("@against", str(against)))
        rounds = 1 if against is None else (3 if self.quick else 5)
        for i in range(rounds):
            for suffix, root in sides if i % 2 == 0 else sides[::-1]:
                got = run_worker({**job, "root": root})
                for k, v in got.items():
                    res.setdefault(k + suffix, []).extend(v)
        layers = len(dwf.plan(cfg).layers)
        self.doc["plan"] = {
            "cfg": source,
            "layers": layers,
            **{k: {"runs": v, **stats(v)} for k, v in res.items()},
        }
        rows = [f"{f'planning {cfg.name} ({layers} layers), no cache':<52} {'median ms':>10}"]
        rows[0] += f" {'min ms':>9}"
        labels = [("tokenize", "tokenise only"), ("plan", "tokenise + plan")]
        if against is not None:
            labels.append(("tokenize@against", "tokenise only, dwf of --against"))
            labels.append(("plan@against", "tokenise + plan, dwf of --against"))
        for k, label in labels:
            v = res[k]
            rows.append(f"{'  ' + label:<52} {ms(statistics.median(v)):>10} {ms(min(v)):>9}")
        rows.append(f"  cfg: {source}")
        return rows

    def many_section(self) -> list[str]:
        self.log(f"writing the {MANY_LAYERS:,}-layer file ...")
        cfg, weights = write_weights(
            self.folder, many_layers_cfg(MANY_LAYERS, self.args.seed), "many", self.args.seed
        )
        layer = "conv_5000"
        jobs: dict[str, Job] = {
            "dwf": {"kind": "first", "method": "dwf", "weights": str(weights), "cfg": str(cfg)}
        }
        if self.args.against is not None:
            jobs["dwf of --against"] = {**jobs["dwf"], "root": str(self.args.against)}
        if self.has_st:
            same = self.folder / "many.safetensors"
            n_same = save_safetensors(weights, cfg, same)
            ten = self.folder / "many-10k.safetensors"
            n_ten = save_safetensors(weights, cfg, ten, MANY_LAYERS)
            jobs[f"safetensors, same {n_same:,} arrays"] = {
                "kind": "first",
                "method": "safetensors",
                "st": str(same),
            }
            jobs[f"safetensors, {n_ten:,} tensors"] = {
                "kind": "first",
                "method": "safetensors",
                "st": str(ten),
                "layer": "conv_2500",
            }
            warm([same, ten])
        for job in jobs.values():
            job.setdefault("layer", layer)
        warm([weights, cfg])
        self.doc["many_cfg"] = "generated: " + (many_layers_cfg.__doc__ or "").split("\n")[0]
        return self.interleaved(
            "many", jobs, f"{MANY_LAYERS:,} layers: first open + one layer's sum"
        )

    # -- targets ----------------------------------------------------------------------------------
    def targets(self) -> list[dict[str, Any]]:
        d = self.doc
        out: list[dict[str, Any]] = []

        def add(name: str, value: float | None, goal: float, higher: bool, text: str) -> None:
            met = None if value is None else (value >= goal if higher else value <= goal)
            out.append(
                {
                    "target": name,
                    "value": value,
                    "goal": goal,
                    "met": met,
                    "text": text,
                    "higher": higher,
                }
            )

        fresh = d.get("fresh", {})
        if "safetensors" in fresh:
            dw, st = fresh["dwf"]["median"], fresh["safetensors"]["median"]
            cpu = d["fresh_cpu"]
            add(
                "fresh process, open + one small layer: safetensors ÷ dwf",
                st / dw,
                1.0,
                True,
                f"wall medians of {len(fresh['dwf']['runs'])} interleaved runs: dwf {ms(dw)} ms,"
                f" safetensors {ms(st)} ms; CPU medians dwf {ms(cpu['dwf']['median'])} ms,"
                f" safetensors {ms(cpu['safetensors']['median'])} ms"
                f" (ratio {cpu['safetensors']['median'] / cpu['dwf']['median']:.3g})",
            )
        imp = d["imports"]["dwf+open path"]["median"]
        add(
            "import dwf + what opening imports, after numpy (ms)",
            1e3 * imp,
            10.0,
            False,
            f"wall median; CPU median {ms(d['imports']['dwf+open path cpu']['median'])} ms;"
            f" import dwf alone {ms(d['imports']['dwf']['median'])} ms (the facade is lazy)",
        )
        first = d.get("first", {})
        if "safetensors" in first:
            dw, st = first["dwf"]["median"], first["safetensors"]["median"]
            add(
                "first open in a process (plan not cached): safetensors ÷ dwf",
                st / dw,
                1.0,
                True,
                f"dwf {ms(dw)} ms, safetensors {ms(st)} ms",
            )
        p = d["plan"]["plan"]["median"]
        add(f"plan {d['plan']['cfg']} uncached (ms)", 1e3 * p, 1.0, False, "median")
        many = d.get("many", {})
        ten = next((k for k in many if k.endswith(f"{MANY_LAYERS:,} tensors")), None)
        if ten:
            dw, st = many["dwf"]["median"], many[ten]["median"]
            add(
                f"{MANY_LAYERS:,}-layer open ÷ safetensors {MANY_LAYERS:,}-tensor open",
                dw / st,
                1.0,
                False,
                f"dwf {ms(dw)} ms, safetensors {ms(st)} ms",
            )
        return out

    def run(self) -> int:
        args = self.args
        command = shlex.join(["python", os.path.relpath(SCRIPT, Path.cwd()), *sys.argv[1:]])
        load_start = load_average()
        started = time.time()
        text, source, label = self.network()
        self.log(f"writing the {label} file ...")
        cfg, weights = write_weights(self.folder, text, "net", args.seed)
        plan = dwf.plan(cfg)
        layer = "conv_12" if "conv_12" in plan.names() else plan.stored[0].name
        st: Path | None = None
        if self.has_st:
            st = self.folder / "net.safetensors"
            save_safetensors(weights, cfg, st)
        sections = [
            self.fresh_section(weights, cfg, st, layer),
            self.first_section(weights, cfg, st, layer),
            self.repeated_section(weights, cfg, st, layer),
            self.plan_section(*self.plan_cfg()),
            self.many_section(),
        ]
        targets = self.targets()
        tlines = ["targets:"]
        for t in targets:
            state = "not measured" if t["met"] is None else "met" if t["met"] else "MISSED"
            sign = "≥" if t["higher"] else "≤"
            tlines.append(f"  {t['target']}: {t['value']:.3g} (goal {sign} {t['goal']:g}) {state}")
            tlines.append(f"      {t['text']}")
        machine = machine_info(self.folder)
        load_end = load_average()
        machine["load_average_1min"] = {"start": load_start, "end": load_end}
        st_version = None
        if self.has_st:
            import safetensors

            st_version = safetensors.__version__
        vers = versions(safetensors=st_version)
        head = [
            f"machine:  {machine['cpu']}, {machine['cores']} cores; load average"
            f" {load_start or 0:.1f} at the start, {load_end or 0:.1f} at the end",
            f"versions: Python {vers['python']}, numpy {vers['numpy']}, dwf {vers['dwf']}"
            f" ({vers['dwf_commit']}), safetensors {st_version or '-'}",
            f"command:  {command}",
            f"file:     {label}: {weights.stat().st_size:,} bytes, {len(plan.layers)} layers"
            f" ({source}); safetensors copy of the same {sum(1 for _ in plan.arrays()):,} arrays",
            f"runs:     {self.repeats} per fresh-process row, interleaved; min and median",
        ]
        report = "\n\n".join(
            ["\n".join(head), *("\n".join(s) for s in sections), "\n".join(tlines), *self.notes]
        )
        print(report)
        elapsed = time.time() - started
        self.doc.update(
            {
                "command": command,
                "file": {"label": label, "source": source, "bytes": weights.stat().st_size},
                "layer": layer,
                "machine": machine,
                "versions": vers,
                "notes": self.notes,
                "targets": targets,
                "report": report,
                "elapsed_s": elapsed,
            }
        )
        out: Path = args.out
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.doc, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out} ({elapsed:.0f} s)")
        return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="dwf vs safetensors: from a fresh process to a layer.")
    p.add_argument("--quick", action="store_true", help="yolov4-tiny-sized file, 5 runs per row")
    p.add_argument("--repeats", type=positive, help="runs per row (default 21, --quick 5)")
    p.add_argument("--generated", action="store_true", help="generated cfgs even if ../shared has")
    p.add_argument("--dir", type=Path, help="where to write the files (default: a temp dir)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--against",
        type=Path,
        metavar="CHECKOUT",
        help="another checkout of dwf: its fresh-process, import, planning and 10,000-layer rows"
        " run interleaved with this one's (a before/after in one run)",
    )
    p.add_argument("--worker", metavar="JOB", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    parent = (args.dir or Path(tempfile.gettempdir())).resolve()
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="dwf-startup-", dir=parent))
    try:
        return Startup(args, folder).run()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
