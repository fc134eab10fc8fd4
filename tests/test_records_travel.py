"""Plans and the records a worker needs pickle and deep-copy (a process pool can take them)."""

from __future__ import annotations

import concurrent.futures
import copy
import pickle

import dwf
from dwf.tools.demo import demo_cfg_text


def _total(plan: dwf.Plan) -> int:
    return plan.total_floats


def test_a_plan_pickles_and_deep_copies() -> None:
    plan = dwf.Plan.from_text(demo_cfg_text(), path="demo.cfg")
    for back in (pickle.loads(pickle.dumps(plan)), copy.deepcopy(plan), copy.copy(plan)):
        assert back.layers == plan.layers
        assert (back.dialect, back.side, back.cfg_path, back.warnings) == (
            plan.dialect, plan.side, plan.cfg_path, plan.warnings,
        )
        assert back.section(3).line == plan.section(3).line


def test_a_layer_plan_pickles_with_read_only_params() -> None:
    lp = dwf.Plan.from_text(demo_cfg_text())["conv_2"]
    back = pickle.loads(pickle.dumps(lp))
    assert back == lp and dict(back.params) == dict(lp.params)
    assert back.arrays == lp.arrays
    try:
        back.params["filters"] = 1  # type: ignore[index]
    except TypeError:
        pass
    else:  # pragma: no cover - the assertion below reports it
        raise AssertionError("params must stay read-only after unpickling")


def test_a_process_pool_takes_a_plan() -> None:
    plan = dwf.Plan.from_text(demo_cfg_text())
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        assert list(pool.map(_total, [plan, plan])) == [plan.total_floats] * 2
