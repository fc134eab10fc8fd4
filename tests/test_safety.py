"""Safety (issue 11): writes never destroy an input or a special file, close() is safe under
concurrent readers, hostile input fails boundedly and cleanly.

Every test here was run against the code before the fix and failed there (see
docs/robustness.md for which guarantee each one holds).
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dwf
import dwf.format.planner as planner
from dwf.interfaces.cli import main as cli
from dwf.io.writer import atomic_write
from dwf.tools.demo import write_demo

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file semantics")
ROOT = Path(dwf.__file__).resolve().parents[1]


@pytest.fixture
def demo(tmp_path: Path) -> tuple[Path, Path]:
    """The bundled demo (cfg with batch norm, ~100 KiB of weights) in ``tmp_path``."""
    cfg, weights = write_demo(tmp_path)
    return Path(weights), Path(cfg)


def _snapshot(*paths: Path) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), os.stat(p).st_ino) for p in paths}


def _run(script: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``script`` in a child Python (so a hang or a runaway read cannot take the test run down):
    at most 2 GiB of address space, killed after ``timeout``."""

    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=limit,
        timeout=timeout,
    )


def _alias(kind: str, target: Path, where: Path) -> Path:
    """A name for ``target``: itself, a symlink to it, or a hard link (same inode)."""
    if kind == "same":
        return target
    link = where / f"alias-{kind}-{target.name}"
    if kind == "symlink":
        link.symlink_to(target)
    else:
        os.link(target, link)
    return link


ALIASES = ["same", "symlink", "hardlink"]


# -- writes never destroy an input -----------------------------------------------------------------
@posix_only
@pytest.mark.parametrize("kind", ALIASES)
def test_cut_refuses_to_write_over_its_input(demo: tuple[Path, Path], kind: str) -> None:
    weights, cfg = demo
    before = _snapshot(weights, cfg)
    for target in (weights, cfg):
        sub = weights.parent / f"links-{target.name}"
        sub.mkdir()
        dst = _alias(kind, target, sub)
        with pytest.raises(dwf.DwfError, match="input"):
            dwf.cut(weights, dst, 3, cfg=cfg)
    assert _snapshot(weights, cfg) == before


@posix_only
@pytest.mark.parametrize("kind", ALIASES)
def test_export_refuses_to_write_over_its_input(demo: tuple[Path, Path], kind: str) -> None:
    weights, cfg = demo
    before = _snapshot(weights, cfg)
    sub = weights.parent / "links"
    sub.mkdir()
    dst = _alias(kind, weights, sub)
    with pytest.raises(dwf.DwfError, match="input"):
        dwf.export(weights, dst, format="npz", cfg=cfg)
    assert _snapshot(weights, cfg) == before


@posix_only
@pytest.mark.parametrize("kind", ALIASES)
def test_fuse_refuses_to_write_over_its_inputs(demo: tuple[Path, Path], kind: str) -> None:
    weights, cfg = demo
    before = _snapshot(weights, cfg)
    out = weights.parent / "out"
    out.mkdir()
    for i, (target, which) in enumerate(((weights, "w"), (weights, "c"), (cfg, "w"), (cfg, "c"))):
        sub = out / str(i)
        sub.mkdir()
        alias = _alias(kind, target, sub)
        dst, dst_cfg = (alias, sub / "f.cfg") if which == "w" else (sub / "f.weights", alias)
        with pytest.raises(dwf.DwfError, match="input"):
            dwf.fuse(weights, dst, dst_cfg, cfg=cfg)
        assert sorted(p.name for p in sub.iterdir()) == ([alias.name] if kind != "same" else [])
    assert _snapshot(weights, cfg) == before


def test_fuse_refuses_the_same_output_twice(demo: tuple[Path, Path], tmp_path: Path) -> None:
    weights, cfg = demo
    out = tmp_path / "o.weights"
    with pytest.raises(dwf.DwfError, match="both"):
        dwf.fuse(weights, out, out, cfg=cfg)
    assert not out.exists()
    out.write_bytes(b"keep")
    link = tmp_path / "o-link.weights"
    link.symlink_to(out)
    with pytest.raises(dwf.DwfError, match="both"):
        dwf.fuse(weights, out, link, cfg=cfg)
    assert out.read_bytes() == b"keep"


@posix_only
@pytest.mark.parametrize(
    "argv",
    [
        ["fuse", "{w}", "{o}", "{w}"],
        ["fuse", "{w}", "{w}", "{o}"],
        ["fuse", "{w}", "{o}", "{o}"],
        ["cut", "{w}", "{w}", "3"],
        ["export", "{w}", "{w}", "--format", "npz"],
    ],
)
def test_cli_refuses_to_destroy_its_input(
    demo: tuple[Path, Path], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    weights, cfg = demo
    before = _snapshot(weights, cfg)
    out = weights.parent / "o.cfg"
    args = [a.format(w=weights, o=out) for a in argv]
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("dwf: error:") and err.count("\n") == 1, err
    assert _snapshot(weights, cfg) == before
    assert not out.exists()


def test_import_refuses_to_write_over_its_export(demo: tuple[Path, Path], tmp_path: Path) -> None:
    weights, cfg = demo
    npz = tmp_path / "e.npz"
    dwf.export(weights, npz, cfg=cfg)
    before = npz.read_bytes()
    with pytest.raises(dwf.DwfError, match="input"):
        dwf.import_weights(npz, npz)
    assert npz.read_bytes() == before


def test_save_over_the_open_files_own_path_is_refused(demo: tuple[Path, Path]) -> None:
    weights, cfg = demo
    before = _snapshot(weights)
    with dwf.open(weights, cfg) as f:
        with pytest.raises(dwf.DwfError, match="input"):
            f.save(weights)
        with pytest.raises(dwf.DwfError, match="input"):
            f.save(str(weights.parent / "." / weights.name), upto=2)
    assert _snapshot(weights) == before


def test_atomic_write_refuses_inputs_before_writing(tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(b"precious")
    with pytest.raises(dwf.DwfError, match="input"), atomic_write(src, inputs=(src,)) as fh:
        fh.write(b"lost")
    assert src.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["in.bin"]


# -- special files ---------------------------------------------------------------------------------
@posix_only
def test_a_fifo_as_output_is_refused_not_replaced(demo: tuple[Path, Path], tmp_path: Path) -> None:
    weights, cfg = demo
    fifo = tmp_path / "pipe.weights"
    os.mkfifo(fifo)
    for write in (
        lambda: dwf.cut(weights, fifo, 3, cfg=cfg),
        lambda: dwf.export(weights, fifo, format="npz", cfg=cfg),
        lambda: dwf.fuse(weights, fifo, tmp_path / "f.cfg", cfg=cfg),
        lambda: dwf.fuse(weights, tmp_path / "f.weights", fifo, cfg=cfg),
    ):
        with pytest.raises(dwf.DwfError, match="not a regular file"):
            write()
        assert fifo.is_fifo()
    assert not (tmp_path / "f.cfg").exists() and not (tmp_path / "f.weights").exists()


@posix_only
def test_a_device_as_output_is_refused_not_replaced(
    demo: tuple[Path, Path], tmp_path: Path
) -> None:
    weights, cfg = demo
    dev = tmp_path / "null.weights"
    try:
        os.mknod(dev, 0o600 | __import__("stat").S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError) as e:
        pytest.skip(f"cannot create a device node here: {e}")
    with pytest.raises(dwf.DwfError, match="not a regular file"):
        dwf.cut(weights, dev, 3, cfg=cfg)
    assert dev.is_char_device()


def test_overwriting_an_existing_regular_output_is_allowed(
    demo: tuple[Path, Path], tmp_path: Path
) -> None:
    weights, cfg = demo
    dst = tmp_path / "cut.weights"
    dst.write_bytes(b"old output")
    dwf.cut(weights, dst, 3, cfg=cfg)
    with dwf.open(dst, cfg, strict=False) as g:
        assert g.partial


def test_a_246_character_output_name_works(demo: tuple[Path, Path], tmp_path: Path) -> None:
    weights, cfg = demo
    dst = tmp_path / ("n" * 238 + ".weights")
    assert len(dst.name) == 246
    dwf.cut(weights, dst, 3, cfg=cfg)
    assert dst.stat().st_size > 20
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [dst.name, weights.name, cfg.name]
    )


KILLED_WRITER = """
import os, signal, sys
from dwf.io.writer import atomic_write
with atomic_write(sys.argv[1]) as fh:
    fh.write(b"x" * 1_000_000)
    fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="O_TMPFILE is Linux's")
def test_a_killed_writer_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "out" / "file.weights"
    out.parent.mkdir()
    proc = _run(KILLED_WRITER, str(out))
    assert proc.returncode == -9, proc.stderr
    assert os.listdir(out.parent) == []


# -- close() under concurrent readers --------------------------------------------------------------
@pytest.mark.slow  # eight threads through close() (~1.7 s)
@posix_only
def test_close_while_threads_read_with_pread(tmp_path: Path) -> None:
    """Readers racing close() get ClosedFileError or the right values; never another file's
    bytes (the freed descriptor number is reused at once by other files) nor OSError."""
    cfg, weights = write_demo(tmp_path)
    other = tmp_path / "other.bin"
    other.write_bytes(b"\x7f" * 200_000)  # reads of it as float32 are obviously wrong values
    with dwf.open(weights, cfg) as ref:
        names = list(ref.keys())
        expected = {n: {a: np.array(v) for a, v in ref[n].arrays.items()} for n in names}
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    problems: list[str] = []
    try:
        for _ in range(40):
            f = dwf.open(weights, cfg, backend="pread")
            stop = threading.Event()

            def read(f: dwf.WeightsFile = f, stop: threading.Event = stop) -> None:
                while not stop.is_set():
                    for n in names:
                        try:
                            arrays = f[n].arrays
                        except dwf.ClosedFileError:
                            return
                        except BaseException as e:
                            problems.append(f"{type(e).__name__}: {e}")
                            return
                        for a, v in arrays.items():
                            if not np.array_equal(v, expected[n][a]):
                                problems.append(f"wrong values in {n}.{a}")
                                return

            def churn(stop: threading.Event = stop) -> None:
                while not stop.is_set():  # grab every freed descriptor number
                    fds = [os.open(other, os.O_RDONLY) for _ in range(4)]
                    for fd in fds:
                        os.close(fd)

            threads = [threading.Thread(target=read) for _ in range(3)]
            threads.append(threading.Thread(target=churn))
            for t in threads:
                t.start()
            f.close()
            fds = [os.open(other, os.O_RDONLY) for _ in range(4)]
            threading.Event().wait(0.02)
            stop.set()
            for t in threads:
                t.join(timeout=30)
            for fd in fds:
                os.close(fd)
            if problems:
                break
    finally:
        sys.setswitchinterval(old)
    assert not problems, problems[:3]


# -- hostile cfgs ----------------------------------------------------------------------------------
OPEN_CFG = """
import sys, dwf
try:
    dwf.plan(sys.argv[1])
except dwf.CfgError as e:
    print("CfgError:", str(e)[:300])
    sys.exit(0)
print("planned")
sys.exit(3)
"""


@posix_only
def test_a_fifo_as_cfg_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "net.cfg"
    os.mkfifo(fifo)
    proc = _run(OPEN_CFG, str(fifo), timeout=30)
    assert proc.returncode == 0 and "regular file" in proc.stdout, proc.stdout + proc.stderr


@posix_only
def test_a_device_as_cfg_is_refused(tmp_path: Path) -> None:
    proc = _run(OPEN_CFG, "/dev/zero", timeout=60)
    assert proc.returncode == 0 and "regular file" in proc.stdout, proc.stdout + proc.stderr[-500:]


def test_a_directory_as_cfg_is_a_cfg_error(tmp_path: Path) -> None:
    with pytest.raises(dwf.CfgError):
        dwf.plan(tmp_path)


def test_a_cfg_over_64_mib_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "huge.cfg"
    with open(cfg, "w") as fh:
        fh.write("[net]\nwidth=8\nheight=8\nchannels=3\n")
        line = "#" * 1023 + "\n"
        for _ in range(65 * 1024):
            fh.write(line)
    with pytest.raises(dwf.CfgError, match="MiB"):
        dwf.plan(cfg)


LONG = "Q" * 100_000
HOSTILE_CFGS = {
    "section": f"[net]\nwidth=8\nheight=8\nchannels=3\n[{LONG}]\n",
    "value": f"[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nactivation={LONG}\n",
    "layers": f"[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\n[route]\nlayers={LONG}\n",
    "number": f"[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nstride=-{'9' * 100_000}\n",
    "option before section": f"{LONG}=1\n[net]\n",
    "no equals": f"[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\n{LONG}\n",
    "dialect": f"[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\n[maxpool]\n[{LONG}\n",
}


@pytest.mark.parametrize("which", sorted(HOSTILE_CFGS))
def test_messages_quote_at_most_about_200_characters_of_a_token(which: str) -> None:
    try:
        p = dwf.Plan.from_text(HOSTILE_CFGS[which])
    except dwf.CfgError as e:
        message = str(e)
    else:
        message = "\n".join(p.warnings)
    assert len(message) < 1000, (len(message), message[:300])


IDENTIFY = """
import sys, dwf
try:
    dwf.identify(sys.argv[1])
except dwf.DwfError as e:
    print("DwfError:", e)
    sys.exit(0)
sys.exit(3)
"""


@posix_only
def test_identify_on_a_fifo_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "x.weights"
    os.mkfifo(fifo)
    proc = _run(IDENTIFY, str(fifo), timeout=30)
    assert proc.returncode == 0 and "regular file" in proc.stdout, proc.stdout + proc.stderr


def _planned_text(n: int) -> str:
    block = "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=1\nstride=1\nactivation=leaky\n"
    return "[net]\nwidth=8\nheight=8\nchannels=3\n" + block * n


def test_diagnosis_replans_a_bounded_number_of_times_and_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A size that one missing batch norm in *any* of 300 identical layers explains: the
    diagnosis may plan only a few times (not once per candidate layer), and must not leave its
    edited plans in the plan cache."""
    cfg = tmp_path / "deep.cfg"
    cfg.write_text(_planned_text(300))
    plan = dwf.plan(cfg)
    weights = tmp_path / "deep.weights"
    with open(weights, "wb") as fh:
        fh.write(dwf.Header(0, 2, 5, 0, 20).encode())
        fh.truncate(plan.expected_size(20) - 4 * 12)
    calls = 0
    real = planner._plan_document

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(planner, "_plan_document", counting)
    cached = planner._plan_cached.cache_info().currsize
    with pytest.raises(dwf.SizeMismatchError) as info:
        dwf.open(weights, plan)
    assert info.value.diagnosis.cause.kind == "batch-normalize"
    assert calls <= 4, calls
    assert planner._plan_cached.cache_info().currsize == cached


# -- hostile imports -------------------------------------------------------------------------------
def _export(demo: tuple[Path, Path], tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    weights, cfg = demo
    npz = tmp_path / "e.npz"
    dwf.export(weights, npz, cfg=cfg)
    with np.load(npz) as z:
        entries = {k: z[k] for k in z.files}
    return npz, entries


def _npz_bomb(path: Path, entries: dict[str, Any], name: str, nbytes: int) -> None:
    """An npz whose ``name`` entry is a deflated all-zero float32 array of ``nbytes``."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for k, v in entries.items():
            if k != name:
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(v))
                z.writestr(k + ".npy", buf.getvalue())
        with z.open(name + ".npy", "w", force_zip64=True) as fh:
            head = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                head, {"descr": "<f4", "fortran_order": False, "shape": (nbytes // 4,)}
            )
            fh.write(head.getvalue())
            chunk = bytes(1 << 20)
            for _ in range(nbytes >> 20):
                fh.write(chunk)


def test_a_decompression_bomb_is_rejected_before_it_is_decompressed(
    demo: tuple[Path, Path], tmp_path: Path
) -> None:
    _, entries = _export(demo, tmp_path)
    bomb = tmp_path / "bomb.npz"
    _npz_bomb(bomb, entries, "conv_0.weights", 256 << 20)
    assert bomb.stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(dwf.DwfError, match=r"conv_0\.weights"):
            dwf.import_weights(bomb, tmp_path / "out.weights")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, peak
    assert not (tmp_path / "out.weights").exists()


def _rewrite_npz(path: Path, entries: dict[str, Any], **changes: Any) -> None:
    out = dict(entries, **changes)
    np.savez(path, **out)


@pytest.mark.parametrize(
    "bad",
    [
        np.array([object(), None], dtype=object),
        np.zeros(3, dtype=np.complex64),
        np.array(["a", "b"]),
        np.zeros((2, 2), dtype=np.float32),
    ],
    ids=["object", "complex", "str", "shape"],
)
def test_a_bad_npz_entry_is_a_dwf_error_naming_it(
    demo: tuple[Path, Path], tmp_path: Path, bad: Any
) -> None:
    npz, entries = _export(demo, tmp_path)
    np.savez(npz, **dict(entries, **{"conv_0.biases": bad}))
    with pytest.raises(dwf.DwfError, match=r"conv_0\.biases"):
        dwf.import_weights(npz, tmp_path / "out.weights")


def test_a_npy_named_npz_is_a_dwf_error(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    with open(path, "wb") as fh:
        np.save(fh, np.zeros(10, np.float32))
    with pytest.raises(dwf.DwfError, match="npz"):
        dwf.import_weights(path, tmp_path / "out.weights")


def test_a_bad_utf8_cfg_in_an_export_is_a_cfg_error(
    demo: tuple[Path, Path], tmp_path: Path
) -> None:
    npz, entries = _export(demo, tmp_path)
    cfg = bytes(entries["__dwf__.cfg"]) + b"\n# \xff\xfe bad\n"
    np.savez(npz, **dict(entries, **{"__dwf__.cfg": np.frombuffer(cfg, np.uint8)}))
    with pytest.raises(dwf.CfgError, match="UTF-8"):
        dwf.import_weights(npz, tmp_path / "out.weights")


def test_a_bare_array_as_import_source_is_a_dwf_error(tmp_path: Path) -> None:
    with pytest.raises(dwf.DwfError, match="state dict"):
        dwf.import_weights(np.zeros(3, np.float32), tmp_path / "o.weights")  # type: ignore[arg-type]


def _safetensors(path: Path, tensors: dict[str, tuple[str, tuple[int, ...], bytes]]) -> None:
    header: dict[str, Any] = {}
    body = b""
    for name, (dtype, shape, data) in tensors.items():
        offsets = [len(body), len(body) + len(data)]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": offsets}
        body += data
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)


def test_a_bf16_safetensors_entry_is_a_dwf_error_naming_it(tmp_path: Path) -> None:
    pytest.importorskip("safetensors")
    st = tmp_path / "x.safetensors"
    _safetensors(st, {"conv_0.weights": ("BF16", (4,), bytes(8))})
    with pytest.raises(dwf.DwfError, match=r"conv_0\.weights"):
        dwf.import_weights(st, tmp_path / "o.weights", cfg=None)


# -- demo ------------------------------------------------------------------------------------------
def test_demo_on_an_existing_file_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = tmp_path / "file"
    existing.write_bytes(b"mine")
    assert cli(["demo", str(existing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dwf: error:") and err.count("\n") == 1, err
    assert existing.read_bytes() == b"mine"


def test_demo_in_an_existing_folder_works(tmp_path: Path) -> None:
    assert cli(["demo", str(tmp_path)]) == 0
    assert cli(["demo", str(tmp_path)]) == 0
    assert (tmp_path / "demo.weights").stat().st_size > 0


def test_cli_export_format_must_agree_with_the_extension(
    demo: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights, cfg = demo
    out = tmp_path / "out.safetensors"
    assert cli(["export", str(weights), str(out), "--format", "npz", "--cfg", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dwf: error:") and "extension" in err and err.count("\n") == 1, err
    assert not out.exists()


def test_a_long_layer_name_is_quoted_short(demo: tuple[Path, Path]) -> None:
    weights, cfg = demo
    with dwf.open(weights, cfg) as f, pytest.raises(dwf.LayerNotFoundError) as info:
        f["conv_" + "9" * 100_000]
    assert len(str(info.value)) < 1000


class _Unconvertible:
    """Stands in for a tensor numpy cannot hold (a bf16 torch tensor raises TypeError)."""

    def detach(self) -> _Unconvertible:
        return self

    def cpu(self) -> _Unconvertible:
        return self

    def numpy(self) -> Any:
        raise TypeError("Got unsupported ScalarType BFloat16")


def test_an_unconvertible_state_dict_entry_is_a_dwf_error_naming_it(
    demo: tuple[Path, Path], tmp_path: Path
) -> None:
    _, cfg = demo
    state = {"conv_0.weight": _Unconvertible()}
    with pytest.raises(dwf.DwfError, match=r"conv_0\.weight"):
        dwf.import_weights(state, tmp_path / "o.weights", cfg=cfg)
    with pytest.raises(dwf.DwfError, match=r"conv_0\.weights"):
        dwf.import_weights(
            {"conv_0.weights": np.array([object()])}, tmp_path / "o.weights", cfg=cfg
        )


def test_cfg_text_over_64_mib_is_refused() -> None:
    text = "[net]\nwidth=8\nheight=8\nchannels=3\n" + "#" * (65 << 20)
    with pytest.raises(dwf.CfgError, match="MiB"):
        dwf.Plan.from_text(text)


def test_millions_of_sections_are_refused_before_planning(tmp_path: Path) -> None:
    """A legal 16 MB cfg of 4 million one-line sections took 115 s and 5.6 GB to plan (0.2.0):
    the section count is bounded up front, with a message saying why."""
    cfg = tmp_path / "many.cfg"
    cfg.write_text("[net]\nwidth=8\nheight=8\nchannels=3\n" + "[dropout]\n" * 4_000_000)
    with pytest.raises(dwf.CfgError, match="4,000,001 sections; dwf plans at most 100,000"):
        dwf.plan(cfg)


def test_a_nul_byte_in_any_file_name_is_one_dwf_error(
    demo: tuple[Path, Path], tmp_path: Path
) -> None:
    """A name with a NUL byte cannot name a file: every verb says so as a DwfError naming it
    (failed before: ``ValueError: embedded null byte`` from cut's and import's destination
    checks, and dwf.open repeated the name inside its message)."""
    weights, cfg = demo
    export = tmp_path / "e.npz"
    dwf.export(weights, export)
    bad = str(tmp_path / "o\0.weights")
    calls = [
        lambda: dwf.open("a\0b.weights"),
        lambda: dwf.cut(weights, bad, 3),
        lambda: dwf.import_weights(str(tmp_path / "a\0b.npz"), tmp_path / "x.weights", cfg=cfg),
        lambda: dwf.import_weights(export, bad, cfg=cfg),
        lambda: dwf.export(weights, str(tmp_path / "o\0.npz")),
    ]
    for call in calls:
        with pytest.raises(dwf.DwfError, match="not a usable file name") as e:
            call()
        assert str(e.value).count("\\x00") == 1, str(e.value)
