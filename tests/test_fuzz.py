"""Bounded fuzzing: hostile cfg text and damaged weights files never crash, hang or blow up.

Every case either works or raises a :class:`dwf.DwfError` subclass with a useful message (a
:class:`dwf.CfgError` names the line to blame; an error about a weights file names the file);
any other exception, a case slower than :data:`fuzz.strategies.SOFT_LIMIT`, or an allocation
above :data:`fuzz.strategies.MEMORY_LIMIT` fails the test. The strategies and checks live in
``tests/fuzz/strategies.py``; ``tests/fuzz/run_fuzz.py`` runs the same properties with many more
examples (see docs/robustness.md).

Examples are derandomized so CI is reproducible; set ``DWF_FUZZ_RANDOM=1`` to explore.
"""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fuzz import strategies as S
from hypothesis import HealthCheck, given, settings

import dwf
import dwf.format.diagnosis
import dwf.tools.stats
from dwf.format.header import Header

SETTINGS = settings(
    deadline=None,  # time is checked per example by S.budget, with a limit for a loaded machine
    database=None,
    derandomize=os.environ.get("DWF_FUZZ_RANDOM") is None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# -- the properties --------------------------------------------------------------------------------
@settings(SETTINGS, max_examples=100)
@given(S.networks())
def test_generated_networks_are_valid(net: S.Net) -> None:
    with S.budget() as b:
        S.check_valid_network(net)
    b.check("planning a valid network")


@pytest.mark.slow  # 300 damaged cfgs, each with tracemalloc on (~4 s)
@settings(SETTINGS, max_examples=300)
@given(S.cfg_cases())
def test_damaged_cfg_plans_or_raises_located_cfg_error(case: S.CfgCase) -> None:
    with S.budget(trace_memory=True) as b:
        S.check_cfg(case)
    b.check("planning a damaged cfg")


@pytest.mark.slow  # 200 damaged files written, opened and read back (~4 s)
@settings(SETTINGS, max_examples=200)
@given(S.weights_cases())
def test_damaged_weights_open_or_raise_dwf_error(folder: Path, case: S.WeightsCase) -> None:
    with S.budget(trace_memory=True) as b:
        S.check_weights(case, folder)
    b.check("opening a damaged weights file")


def test_the_checks_can_fail() -> None:
    """The checks reject what they must: a non-dwf exception, a CfgError without its line."""
    with pytest.raises(AssertionError, match="not a DwfError"):
        S.check_error(ValueError("boom"))
    with pytest.raises(AssertionError, match="without a line"):
        S.check_error(dwf.CfgError("something"), text="[net]\n")
    with pytest.raises(AssertionError, match="does not name the file"):
        S.check_error(dwf.HeaderError("bad header"), path="/x/y.weights")
    with pytest.raises(AssertionError, match="took"):
        S.Budget(seconds=S.SOFT_LIMIT + 1).check("a slow case")
    with pytest.raises(S.Hang), S.time_limit(0.05):
        time.sleep(1)


# -- the hostile cfgs the issue names --------------------------------------------------------------
NET = "[net]\nwidth=8\nheight=8\nchannels=8\n"


def _line_of(text: str, needle: str) -> int:
    return text.split("\n").index(needle) + 1


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (NET + "[convolutional]\nfilters=99999999999\n", "filters=99999999999"),
        (NET + "[convolutional]\nfilters=" + "9" * 5000 + "\n", "filters=" + "9" * 5000),
        (NET + "[convolutional]\nstride=-3\n", "stride=-3"),
        (NET + "[maxpool]\nstride=-3\n", "stride=-3"),
        (NET + "[convolutional]\n[route]\nlayers=7\n", "layers=7"),
        (NET + "[convolutional]\n[route]\nlayers=-5\n", "layers=-5"),
        (NET + "[convolutional]\n[shortcut]\nfrom=-99\n", "from=-99"),
        ("width=8\n" + NET + "[convolutional]\n", "width=8"),
        ("[convolutional]\nfilters=2\n", "[convolutional]"),
        (NET.replace("width=8", "width=-8") + "[convolutional]\n", "width=-8"),
        (NET + "[yolo]\nclasses=80\n", "[yolo]"),
    ],
    ids=[
        "filters-too-big",
        "5000-digit-number",
        "negative-stride",
        "negative-maxpool-stride",
        "route-past-the-end",
        "route-before-the-start",
        "shortcut-out-of-range",
        "option-before-any-section",
        "missing-net",
        "negative-width",
        "yolo-after-a-mismatched-layer",
    ],
)
@pytest.mark.parametrize("dialect", S.DIALECTS)
def test_hostile_cfg_names_its_line(text: str, needle: str, dialect: str) -> None:
    with S.budget(trace_memory=True) as b, pytest.raises(dwf.CfgError) as info:
        dwf.Plan.from_text(text, dialect=dialect)
    b.check("a hostile cfg")
    assert info.value.line == _line_of(text, needle), info.value.message
    S.check_error(info.value, text=text)


@pytest.mark.parametrize(
    ("text", "needle", "warning"),
    [
        (NET + "[convolutional]\nfilters=8\ngroups=7\n", "groups=7", "does not divide"),
        (NET + "[convolutional]\n[route]\nlayers=1\n", "layers=1", "not built yet"),
        (NET + "[convolutional]\n[route]\nlayers=2\n[dropout]\n", "layers=2", "not built"),
    ],
    ids=["groups-7-of-8-channels", "route-at-itself", "route-forward"],
)
def test_accepted_oddities_warn_with_their_line(text: str, needle: str, warning: str) -> None:
    """Darknet loads these, so dwf plans them too, and says where the oddity is."""
    plan = dwf.Plan.from_text(text)
    line = _line_of(text, needle)
    assert any(w.startswith(f"line {line}:") and warning in w for w in plan.warnings), plan.warnings


def test_size_zero_plans_an_empty_kernel() -> None:
    plan = dwf.Plan.from_text(NET + "[convolutional]\nfilters=4\nsize=0\n")
    assert plan.layers[0].array("weights").count == 0  # type: ignore[union-attr]


@pytest.mark.parametrize("text", ["", "\n\n", "   \t\n", "# only a comment\n"])
def test_empty_cfg_says_so(text: str) -> None:
    with pytest.raises(dwf.CfgError, match=r"no \[section\]") as info:
        dwf.Plan.from_text(text)
    assert info.value.line is None


def test_unicode_digits_are_not_digits_to_atoi() -> None:
    """Regression: ``\\d`` matched ARABIC-INDIC digits, so ``filters=٣`` planned 3 filters where
    Darknet's atoi reads 0."""
    plan = dwf.Plan.from_text(NET + "[convolutional]\nfilters=\u0663\n")
    assert plan.layers[0].params["filters"] == 0


def test_layer_lookup_by_a_5000_digit_name() -> None:
    """Regression: the did-you-mean hint converted the trailing digits with int() (ValueError
    past 4300 digits)."""
    plan = dwf.Plan.from_text(NET + "[convolutional]\n")
    with pytest.raises(dwf.LayerNotFoundError):
        plan.layer("conv_" + "1" * 5000)


def test_statistics_of_values_near_the_float32_limit(tmp_path: Path) -> None:
    """Regression (found by the weights fuzz: a flipped exponent bit makes a huge float): float32
    sums of squares overflowed, so std came out inf with a RuntimeWarning."""
    values = np.array([3e38, -3e38, 1.0, 0.5], dtype="<f4")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        st = dwf.tools.stats.array_stats(values)
    assert st.std == pytest.approx(float(np.std(values.astype(np.float64))))
    assert st.mean == pytest.approx(float(np.mean(values.astype(np.float64))))
    plan = dwf.Plan.from_text(NET + "[convolutional]\nfilters=2\nsize=1\n")
    path = tmp_path / "huge.weights"
    body = np.zeros(plan.total_floats, dtype="<f4")
    body[-4:] = values
    path.write_bytes(Header().encode() + body.tobytes())
    with dwf.open(path, plan) as f, warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        report = f.check()
    assert any(x.kind == "extreme" for x in report.findings)


def test_scan_of_signalling_nans_is_quiet(tmp_path: Path) -> None:
    """Regression (found by the long fuzz run: random bytes appended to a file): signalling NaNs
    made the all-zero-filter count emit numpy's "invalid value encountered in reduce" — noise
    from the very command meant to report NaNs."""
    plan = dwf.Plan.from_text(NET + "[convolutional]\nfilters=4\nsize=1\n")
    body = np.zeros(plan.total_floats, dtype="<u4")
    weights = plan.layers[0].array("weights")
    assert weights is not None
    body[weights.offset] = 0x7F800001  # a signalling NaN
    path = tmp_path / "snan.weights"
    path.write_bytes(Header().encode() + body.tobytes())
    with dwf.open(path, plan) as f, warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        report = f.check()
    kinds = {x.kind: x.count for x in report.findings}
    assert kinds["nan"] == 1 and kinds["zero-filters"] == 3, kinds


# -- claimed sizes cost nothing --------------------------------------------------------------------
HUGE = {
    "filters": NET + "[convolutional]\nfilters=2000000000\nsize=3\npad=1\n",
    "width": "[net]\nwidth=2000000000\nheight=2000000000\nchannels=3\n"
    "[convolutional]\nfilters=16\nsize=3\n[local]\nfilters=2000000000\nsize=3\n"
    "[connected]\noutput=2000000000\n",
}


@pytest.mark.parametrize("which", sorted(HUGE))
def test_claimed_huge_cfg_plans_without_allocating(which: str) -> None:
    tracemalloc.start()
    try:
        plan = dwf.Plan.from_text(HUGE[which])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert plan.expected_size() > 10**10  # it does claim a huge file
    assert peak < 4 * 2**20, f"planning allocated {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize("which", sorted(HUGE))
@pytest.mark.parametrize("backend", ["mmap", "pread"])
def test_claimed_huge_cfg_on_a_tiny_file_is_diagnosed_cheaply(
    tmp_path: Path, which: str, backend: str
) -> None:
    plan = dwf.Plan.from_text(HUGE[which])
    path = tmp_path / "tiny.weights"
    path.write_bytes(Header().encode() + b"\0" * 64)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(dwf.SizeMismatchError) as info:
            dwf.open(path, plan, backend=backend)  # type: ignore[arg-type]
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < S.SOFT_LIMIT, f"took {seconds:.2f} s"
    assert peak < 4 * 2**20, f"opening allocated {peak / 2**20:.1f} MiB"
    assert info.value.expected_size == plan.expected_size()
    assert f"{plan.expected_size():,}" in info.value.message
    # strict=False opens it: nothing of the huge layers is readable, nothing is allocated
    with dwf.open(path, plan, strict=False, backend=backend) as f:  # type: ignore[arg-type]
        assert f.keys() == [] and f.mismatch


def test_diagnosis_replans_a_bounded_number_of_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: with ``cbn=1`` (batch norm kept whatever batch_normalize says) every layer's
    batch-norm count matched the missing floats but its re-plan did not, so the diagnosis
    re-planned the whole cfg once per layer: 800 layers took 99 s (quadratic)."""
    n = 300
    text = "[net]\nwidth=4\nheight=4\nchannels=2\n" + (
        "[convolutional]\nfilters=2\nsize=1\nbatch_normalize=1\ncbn=1\n" * n
    )
    plan = dwf.Plan.from_text(text)
    path = tmp_path / "short.weights"
    path.write_bytes(Header().encode() + b"\0" * (4 * (plan.total_floats - 6)))
    calls = 0
    real = dwf.format.retrain.replan

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)  # type: ignore[arg-type]

    # the checkers that edit the cfg, and the class model they measure (dwf/format/retrain.py)
    monkeypatch.setattr(dwf.format.cfg_causes, "replan", counting)
    monkeypatch.setattr(dwf.format.retrain, "replan", counting)
    with pytest.raises(dwf.SizeMismatchError):
        dwf.open(path, plan)
    assert calls <= 12, f"{calls} re-plans of a {n}-layer cfg"


# -- weights paths no strategy makes ---------------------------------------------------------------
PLAN_TEXT = "[net]\nwidth=4\nheight=4\nchannels=1\n[convolutional]\nfilters=2\n"


@pytest.fixture
def plan() -> dwf.Plan:
    return dwf.Plan.from_text(PLAN_TEXT)


@pytest.mark.parametrize("cfg_given", [True, False])
def test_empty_file(tmp_path: Path, plan: dwf.Plan, cfg_given: bool) -> None:
    path = tmp_path / "empty.weights"
    path.write_bytes(b"")
    with pytest.raises(dwf.DwfError, match="empty") as info:
        dwf.open(path, plan if cfg_given else None)
    S.check_error(info.value, path=str(path))


@pytest.mark.parametrize("cfg_given", [True, False])
def test_directory(tmp_path: Path, plan: dwf.Plan, cfg_given: bool) -> None:
    path = tmp_path / "dir.weights"
    path.mkdir()
    with pytest.raises(dwf.DwfError, match="directory") as info:
        dwf.open(path, plan if cfg_given else None)
    S.check_error(info.value, path=str(path))


@pytest.mark.parametrize("cfg_given", [True, False])
def test_missing_file(tmp_path: Path, plan: dwf.Plan, cfg_given: bool) -> None:
    path = tmp_path / "missing.weights"
    with pytest.raises(dwf.DwfError, match="not found") as info:
        dwf.open(path, plan if cfg_given else None)
    S.check_error(info.value, path=str(path))


def test_nul_byte_in_path(plan: dwf.Plan) -> None:
    """Regression: os.stat's ValueError for an embedded NUL escaped as a bare ValueError."""
    for call in (
        lambda: dwf.open("a\0b.weights", plan),
        lambda: dwf.open("a\0b.weights"),
        lambda: dwf.plan("a\0b.cfg"),
        lambda: dwf.identify("a\0b.weights"),
    ):
        with pytest.raises(dwf.DwfError):
            call()


def _unreadable_script(path: Path, cfg: Path) -> str:
    return (
        "import os, sys, dwf\n"
        "dwf.open, dwf.DwfError  # import the reader while the stdlib is still readable\n"
        "if os.geteuid() == 0:\n"
        "    os.setgid(65534); os.setuid(65534)  # nobody: root reads any file\n"
        "try:\n"
        f"    dwf.open({str(path)!r}, {str(cfg)!r})\n"
        "except dwf.DwfError as e:\n"
        "    print(type(e).__name__, e); sys.exit(0)\n"
        "print('opened'); sys.exit(1)\n"
    )


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions and users")
def test_no_permission(tmp_path: Path) -> None:
    """Run as an unprivileged user (root would read the file anyway)."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o755)
    tmp_path.chmod(0o755)
    path, cfg = folder / "secret.weights", folder / "secret.cfg"
    cfg.write_text(PLAN_TEXT)
    cfg.chmod(0o644)
    path.write_bytes(Header().encode() + b"\0" * 24)
    path.chmod(0)
    env = {**os.environ, "PYTHONPATH": str(Path(dwf.__file__).resolve().parents[1])}
    r = subprocess.run(
        [sys.executable, "-c", _unreadable_script(path, cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd="/",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "permission denied" in r.stdout and str(path) in r.stdout, r.stdout


# -- planning is linear in the number of layers ----------------------------------------------------
def _plan_seconds(n: int) -> float:
    text = S.million_layer_text(n)
    dwf.format.planner._plan_cached.cache_clear()
    gc.collect()
    gc.disable()  # see the test's docstring
    try:
        start = time.process_time()  # CPU time: other processes' load does not count
        plan = dwf.Plan.from_text(text)
        seconds = time.process_time() - start
    finally:
        gc.enable()
    assert len(plan.layers) == n
    del plan
    dwf.format.planner._plan_cached.cache_clear()
    return seconds


@pytest.fixture
def no_plan_cache() -> Iterator[None]:
    yield
    dwf.format.planner._plan_cached.cache_clear()


@pytest.mark.slow  # plans 10k-100k-layer cfgs (~4 s)
@pytest.mark.usefixtures("no_plan_cache")
def test_planning_time_is_linear_in_layers() -> None:
    """10x more layers take about 10x the time (measured 10-11x); a quadratic planner would
    take 100x. No absolute threshold: CI machines differ. Python's cyclic garbage collector is
    paused while timing: its full collections scan the whole heap, whose size depends on what
    else the process holds (a pytest session: every earlier test), which made the same linear
    planner measure anywhere from 11x to 18x. A million layers, collector on, is timed by
    ``run_fuzz.py --million`` (docs/robustness.md).
    """
    _plan_seconds(2_000)  # warm up
    small = statistics.median(_plan_seconds(10_000) for _ in range(3))
    # a quadratic planner would take hours on 100k layers: give up early (linear 3x, quadratic 9x)
    mid = _plan_seconds(30_000)
    assert mid / small < 6, f"10k layers: {small:.2f} s, 30k layers: {mid:.2f} s"
    big = _plan_seconds(100_000)
    ratio = big / small
    assert ratio < 15, f"10k layers: {small:.2f} s, 100k layers: {big:.2f} s ({ratio:.1f}x)"
