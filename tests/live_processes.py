"""The two processes of the live-checkpoint tests (tests/test_live.py): a reader that holds views
of a weights file while another process changes it, and a writer that changes it — the way
Darknet's ``save_weights`` does (``fopen(name, "wb")``, the header, then the arrays layer by
layer), or by truncation, rename or deletion.

Each runs as its own process, so that a signal kills only the reader and the test sees its exit
status::

    python live_processes.py reader WEIGHTS CFG BACKEND [--thread] [--close] [--state-dict]
    python live_processes.py writer PATTERN WEIGHTS CFG SEED [--pause S]

The reader prints ``ready`` once it holds a view of every array, then touches every view over
and over, and makes new ones, until a line arrives on its stdin; it exits 0 if every held view
kept the values it had when it was made and every new view either had them too or raised
``dwf.FileChangedError``; 4 on a wrong value, 5 on any other exception.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from typing import Any

import numpy as np

import dwf

# The ways another process changes the file under the reader.
PATTERNS = (
    "darknet",  # fopen "wb": truncate to 0, header, arrays layer by layer
    "truncate-write",  # truncate(2) to 0, then write the file back through another descriptor
    "truncate-sizes",  # truncate(2) to arbitrary sizes, shorter and longer, several times
    "in-place",  # open "r+b" and overwrite the arrays without truncating (same size)
    "rename",  # write a new file beside it and rename it over the path
    "delete",  # unlink the path
)


def _views(f: dwf.WeightsFile) -> dict[str, np.ndarray[Any, Any]]:
    return dict(f.arrays())


def _state_dict(f: dwf.WeightsFile) -> dict[str, np.ndarray[Any, Any]]:
    """``to_state_dict(f)``'s tensors, as the numpy arrays they share memory with (a stand-in
    torch whose ``from_numpy`` is the identity: torch itself is slow to import)."""
    import types

    torch = types.ModuleType("torch")
    torch.from_numpy = lambda a: a  # type: ignore[attr-defined]
    sys.modules["torch"] = torch
    from dwf.tools.export import to_state_dict

    return to_state_dict(f)


def reader(
    weights: str, cfg: str, backend: str, *, in_thread: bool, close: bool, state: bool = False
) -> int:
    opened: dict[str, Any] = {}

    def open_and_view() -> None:
        f = dwf.open(weights, cfg, backend=backend)  # type: ignore[arg-type]
        opened["file"] = f
        opened["views"] = _state_dict(f) if state else _views(f)

    if in_thread:  # opened, and its views made, in a thread that then ends
        t = threading.Thread(target=open_and_view)
        t.start()
        t.join()
    else:
        open_and_view()
    f: dwf.WeightsFile = opened["file"]
    views: dict[str, np.ndarray[Any, Any]] = opened.pop("views")
    expected = {name: v.tobytes() for name, v in views.items()}
    if close:
        f.close()
    done = threading.Event()

    def wait_for_line() -> None:
        sys.stdin.readline()
        done.set()

    threading.Thread(target=wait_for_line, daemon=True).start()
    print("ready", getattr(f, "view_mode", backend), flush=True)
    touches = new_ok = changed = 0
    last = False
    while True:
        stop = done.is_set()  # one more full pass after the writer is done
        for name, v in views.items():
            if v.tobytes() != expected[name]:
                print("WRONG held view", name, flush=True)
                return 4
        touches += 1
        if not close:
            try:
                for name, v in f.arrays():
                    if not state and v.tobytes() != expected[name]:
                        print("WRONG new view", name, flush=True)
                        return 4
                    new_ok += 1
            except dwf.FileChangedError:
                changed += 1
        if last:
            break
        last = stop
    print("ok touches", touches, "new", new_ok, "changed", changed, flush=True)
    return 0


def _layout(cfg: str) -> tuple[dwf.Header, list[tuple[int, int]]]:
    plan = dwf.plan(cfg)
    header = dwf.Header(0, 2, 5, 5678, 20)
    spans = [lp.byte_span(header.size) for lp in plan.layers if lp.count]
    return header, spans


def writer(pattern: str, weights: str, cfg: str, seed: int, pause: float) -> int:
    rng = np.random.default_rng(seed)
    header, spans = _layout(cfg)
    size = spans[-1][1]

    def body(start: int, stop: int) -> bytes:
        return rng.standard_normal((stop - start) // 4).astype("<f4").tobytes()

    def write_layers(fh: Any) -> None:
        fh.write(header.encode())
        fh.flush()
        for start, stop in spans:
            time.sleep(pause)
            fh.seek(start)
            fh.write(body(start, stop))
            fh.flush()

    t0 = time.perf_counter()
    blocked = 0.0
    if pattern == "darknet":
        fh = open(weights, "wb")  # noqa: SIM115 - how Darknet opens it: O_WRONLY|O_CREAT|O_TRUNC
        blocked = time.perf_counter() - t0
        with fh:
            write_layers(fh)
    elif pattern == "truncate-write":
        os.truncate(weights, 0)
        blocked = time.perf_counter() - t0
        time.sleep(pause)
        with open(weights, "r+b") as fh:
            write_layers(fh)
    elif pattern == "truncate-sizes":
        sizes = random.Random(seed).sample(range(0, size * 5 // 4), 6)
        for s in sizes:
            os.truncate(weights, s)
            time.sleep(pause)
        blocked = time.perf_counter() - t0
    elif pattern == "in-place":
        with open(weights, "r+b") as fh:
            blocked = time.perf_counter() - t0
            for start, stop in spans:
                time.sleep(pause)
                fh.seek(start)
                fh.write(body(start, stop))
                fh.flush()
    elif pattern == "rename":
        tmp = weights + ".new"
        with open(tmp, "wb") as fh:
            write_layers(fh)
        os.replace(tmp, weights)
    elif pattern == "delete":
        os.unlink(weights)
    else:
        print("unknown pattern", pattern, file=sys.stderr)
        return 2
    print(f"blocked {blocked:.6f}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    role, *rest = argv
    if role == "reader":
        weights, cfg, backend, *flags = rest
        return reader(
            weights,
            cfg,
            backend,
            in_thread="--thread" in flags,
            close="--close" in flags,
            state="--state-dict" in flags,
        )
    pattern, weights, cfg, seed, *flags = rest
    pause = float(flags[flags.index("--pause") + 1]) if "--pause" in flags else 0.01
    return writer(pattern, weights, cfg, int(seed), pause)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as e:  # a clean, recognisable failure rather than a traceback's exit 1
        print("EXCEPTION", type(e).__name__, e, flush=True)
        sys.exit(5)
