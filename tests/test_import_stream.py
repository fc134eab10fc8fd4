"""Imports stream (Reliability III #7, issue 25): every kind of export comes back byte for byte
entry by entry, in bounded memory, and every way it can go wrong is one DwfError.

The tests marked "failed before" were run against 0.2.0 (main before the streaming import) and
failed there.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from small_net import CFG, random_arrays, write_model

import dwf
from dwf.format.header import Header
from dwf.interfaces.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]
LEGACY = Header(0, 1001, 0, 5, 16)  # connected weights stored transposed, as the flipped conv's


@pytest.fixture(params=["current", "legacy"])
def model(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    """The small network (a flipped conv: stored transposed), with a current header or a legacy
    one (its connected layer stored transposed too)."""
    header = LEGACY if request.param == "legacy" else None
    return write_model(tmp_path, header)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".dwf-"))


# -- every kind of export, byte for byte --------------------------------------------------------
@pytest.mark.parametrize("kind", ["npz", "npz-compressed", "safetensors"])
def test_exports_come_back_byte_for_byte(
    model: tuple[Path, Path], tmp_path: Path, kind: str
) -> None:
    weights, cfg = model
    out = tmp_path / ("e.safetensors" if kind == "safetensors" else "e.npz")
    dwf.export(weights, out, cfg=cfg, compress=kind == "npz-compressed")
    back = tmp_path / "back.weights"
    dwf.import_weights(out, back)
    assert back.read_bytes() == weights.read_bytes()
    assert _leftovers(tmp_path) == []


def test_a_pt_state_dict_comes_back_byte_for_byte(
    model: tuple[Path, Path], tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    weights, cfg = model
    out = tmp_path / "e.pt"
    dwf.export(weights, out, cfg=cfg)
    back = tmp_path / "back.weights"
    with dwf.open(weights, cfg) as f:
        header = f.header
    dwf.import_weights(out, back, cfg=cfg, header=header)
    assert back.read_bytes() == weights.read_bytes()


def test_a_pt_renamed_over_after_opening_is_loaded_from_the_file_opened(
    model: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch opens by name: it is given the descriptor dwf opened, so another file renamed over
    the path meanwhile is not what gets loaded (failed before: torch loaded the other file and
    the import failed on its contents; a FIFO put there would have blocked torch)."""
    pytest.importorskip("torch")
    from dwf.io.source import LocalSource

    weights, cfg = model
    out, other = tmp_path / "e.pt", tmp_path / "other.pt"
    dwf.export(weights, out, cfg=cfg)
    other.write_bytes(b"not a state dict at all")
    real_open = LocalSource.open.__func__  # type: ignore[attr-defined]

    def open_then_replace(cls: type[LocalSource], path: str, **kw: Any) -> LocalSource:
        src = real_open(cls, path, **kw)
        if path == str(out):
            os.replace(other, out)
        return src

    monkeypatch.setattr(LocalSource, "open", classmethod(open_then_replace))
    back = tmp_path / "back.weights"
    with dwf.open(weights, cfg) as f:
        header = f.header
    dwf.import_weights(out, back, cfg=cfg, header=header)
    assert back.read_bytes() == weights.read_bytes()


@pytest.mark.parametrize("form", ["legacy-format", "non-contiguous", "float64"])
def test_pt_files_torch_cannot_map_or_that_need_converting_come_back(
    tmp_path: Path, form: str
) -> None:
    """A legacy-format .pt (torch reads it whole), tensors saved as non-contiguous views (read
    through torch's map) and float64 tensors (converted piece by piece)."""
    torch = pytest.importorskip("torch")
    from dwf.tools.export import to_state_dict

    weights, cfg = write_model(tmp_path)
    with dwf.open(weights, cfg) as f:
        state = to_state_dict(f, copy=True)
        header = f.header
    pt = tmp_path / "s.pt"
    if form == "legacy-format":
        torch.save(state, pt, _use_new_zipfile_serialization=False)
    elif form == "non-contiguous":
        views = {k: v.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2) if v.ndim == 4 else v
                 for k, v in state.items()}
        assert not all(v.is_contiguous() for v in views.values())
        torch.save(views, pt)
    else:
        torch.save({k: v.double() for k, v in state.items()}, pt)
    back = tmp_path / "back.weights"
    dwf.import_weights(pt, back, cfg=cfg, header=header)
    assert back.read_bytes() == weights.read_bytes()


def _npz_of(arrays: dict[str, Any], path: Path, meta: dict[str, bytes], compress: bool) -> None:
    entries = dict(arrays)
    for k, v in meta.items():
        entries["__dwf__." + k] = np.frombuffer(v, np.uint8)
    (np.savez_compressed if compress else np.savez)(path, **entries)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("layout", ["float64", "big-endian", "fortran", "float16", "int32"])
def test_any_numeric_layout_is_converted_as_it_streams(
    tmp_path: Path, compress: bool, layout: str
) -> None:
    """Entries of other dtypes, byte orders and memory orders are stored as Darknet lays out
    float32 — the transposed arrays too — exactly as dwf.save stores the same arrays."""
    cfg = tmp_path / "net.cfg"
    cfg.write_text(CFG)
    plan = dwf.plan(cfg)
    arrays = random_arrays(plan, seed=3)
    if layout == "int32":
        arrays = {k: (v * 100).astype(np.int32) for k, v in arrays.items()}
    converted: dict[str, Any] = {}
    for k, v in arrays.items():
        if layout == "float64":
            converted[k] = v.astype(np.float64) * (1 + 1e-9)
        elif layout == "big-endian":
            converted[k] = v.astype(">f4")
        elif layout == "fortran":
            converted[k] = np.asfortranarray(v)
        elif layout == "float16":
            converted[k] = v.astype(np.float16)
        else:
            converted[k] = v
    want = tmp_path / "want.weights"
    dwf.save(want, plan, converted, header=LEGACY)
    npz = tmp_path / "in.npz"
    meta = {"header": LEGACY.encode(), "cfg": CFG.encode(), "dialect": b"alexeyab"}
    _npz_of(converted, npz, meta, compress)
    back = tmp_path / "back.weights"
    dwf.import_weights(npz, back)
    assert back.read_bytes() == want.read_bytes()


# pieces of one value read the small model value by value (seconds): the full run only
@pytest.mark.parametrize("step", [pytest.param(1, marks=pytest.mark.slow), 7, 4096])
def test_chunk_boundaries_do_not_matter(
    model: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: int
) -> None:
    """Pieces of 1, 7 and 4096 values (the transposed arrays read in blocks) give the same file."""
    import dwf.tools.import_weights as iw

    weights, cfg = model
    monkeypatch.setattr(iw, "_STEP", step)
    for kind in ("e.npz", "e.safetensors"):
        out = tmp_path / kind
        dwf.export(weights, out, cfg=cfg)
        back = tmp_path / f"back-{step}.weights"
        dwf.import_weights(out, back)
        assert back.read_bytes() == weights.read_bytes(), (kind, step)


# -- memory does not grow with the export ----------------------------------------------------------
BIG_CFG = "[net]\nwidth=8\nheight=8\nchannels=1024\n" + (
    "[convolutional]\nfilters=1024\nsize=3\npad=1\nbatch_normalize=1\n" * 7
)
MAXRSS_CHILD = r"""
import sys
from dwf.interfaces.cli import main
code = main(sys.argv[1:])
with open("/proc/self/status") as fh:
    print("HWM_KIB", next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")), flush=True)
sys.exit(code)
"""
RSS_BOUND_MIB = 150  # Python + numpy + dwf ~40 MiB (+ torch's import for .pt); the file 252 MiB


@pytest.fixture
def big(tmp_path: Path) -> tuple[Path, Path]:
    """A 252 MiB sparse weights file (no disk used)."""
    cfg = tmp_path / "big.cfg"
    cfg.write_text(BIG_CFG)
    weights = tmp_path / "big.weights"
    with open(weights, "wb") as fh:
        fh.write(Header(0, 2, 5, 0, 20).encode())
    os.truncate(weights, dwf.plan(cfg).expected_size(20))
    return weights, cfg


def _peak_mib(argv: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", MAXRSS_CHILD, *argv],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return int(run.stdout.rsplit("HWM_KIB", 1)[1].split()[0]) / 1024


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM")
@pytest.mark.parametrize("kind", ["npz-compressed", "npz", "safetensors", "pt"])
def test_import_memory_does_not_grow_with_the_export(
    big: tuple[Path, Path], tmp_path: Path, kind: str
) -> None:
    """Failed before: the import held every array (a 1.2 MB npz inflating to 252 MiB: a peak
    of ~560 MiB)."""
    if kind == "pt":
        pytest.importorskip("torch")
    weights, cfg = big
    name = {"npz-compressed": "e.npz", "npz": "e.npz", "safetensors": "e.safetensors",
            "pt": "e.pt"}[kind]
    out = tmp_path / name
    argv = ["export", str(weights), str(out), "--cfg", str(cfg)]
    assert cli([*argv, "--compress"] if kind == "npz-compressed" else argv) == 0
    if kind == "npz-compressed":
        assert out.stat().st_size < 4 << 20  # it inflates to 252 MiB
    back = tmp_path / "back.weights"
    extra = ["--cfg", str(cfg)] if kind == "pt" else []
    peak = _peak_mib(["import", str(out), str(back), *extra])
    assert back.stat().st_size == weights.stat().st_size
    bound = RSS_BOUND_MIB + (250 if kind == "pt" else 0)  # torch's own import is ~250 MiB
    assert peak < bound, f"{kind}: peak RSS {peak:.0f} MiB"


# -- the export changes while it is read ---------------------------------------------------------
def test_an_export_rewritten_during_the_import_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever reads a file in pieces checks it is the same file after the last piece."""
    import dwf.io.writer as writer

    weights, cfg = write_model(tmp_path)
    npz = tmp_path / "e.npz"
    dwf.export(weights, npz, cfg=cfg)
    real = writer.check_header
    calls = []

    def touch_then_check(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        st = npz.stat()
        os.utime(npz, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a same-size rewrite
        return real(*args, **kwargs)

    monkeypatch.setattr(writer, "check_header", touch_then_check)
    dst = tmp_path / "back.weights"
    with pytest.raises(dwf.FileChangedError):
        dwf.import_weights(npz, dst)
    assert calls and not dst.exists() and _leftovers(tmp_path) == []


def test_an_export_rewritten_in_place_keeping_its_time_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failed before (the import's own identity check): a same-size rewrite that leaves the
    modification time as it was — a file modified moments before, within its clock's tick — went
    unseen, and the import wrote the first entries of one version and the rest of another. The
    export is now read through a LocalSource, whose rule reads such a file's bytes again."""
    import time

    import dwf.tools.import_weights as iw

    weights, cfg = write_model(tmp_path)
    plan = dwf.plan(cfg)
    other = tmp_path / "other.weights"
    dwf.save(other, plan, random_arrays(plan, seed=1), header=dwf.Header(0, 2, 5, 1234, 20))
    exp, new = tmp_path / "e.safetensors", tmp_path / "new.safetensors"
    dwf.export(weights, exp, cfg=cfg)
    dwf.export(other, new, cfg=cfg)
    assert exp.stat().st_size == new.stat().st_size and exp.read_bytes() != new.read_bytes()
    stamp = time.time_ns() + 10_000_000_000  # ahead of the clock: the time vouches for nothing
    os.utime(exp, ns=(stamp, stamp))
    real = iw._copy_entry
    calls = []

    def rewrite_after_the_first(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        if not calls:  # the other version, in place, its time put back
            with open(exp, "r+b") as fh:
                fh.write(new.read_bytes())
            os.utime(exp, ns=(stamp, stamp))
        calls.append(1)

    monkeypatch.setattr(iw, "_copy_entry", rewrite_after_the_first)
    dst = tmp_path / "back.weights"
    with pytest.raises(dwf.FileChangedError, match="its bytes"):
        dwf.import_weights(exp, dst)
    assert len(calls) > 1 and not dst.exists() and _leftovers(tmp_path) == []


@pytest.mark.parametrize("change", ["rewritten", "truncated"])
def test_an_npz_that_changes_under_an_entry_is_a_change_not_damage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """Failed before: an .npz rewritten in place (its time moving, as every write's does) or cut
    short after the first entry failed the next entry's read — "fails its zip CRC check (the
    file is damaged, or was rewritten while read)", "ends early (truncated)" — a plain DwfError
    though the export's identity said it had changed: FileChangedError, as import_weights says."""
    import dwf.tools.import_weights as iw

    weights, cfg = write_model(tmp_path)
    plan = dwf.plan(cfg)
    other = tmp_path / "other.weights"
    dwf.save(other, plan, random_arrays(plan, seed=1), header=dwf.Header(0, 2, 5, 1234, 20))
    exp, new = tmp_path / "e.npz", tmp_path / "new.npz"
    dwf.export(weights, exp, cfg=cfg)
    dwf.export(other, new, cfg=cfg)
    assert exp.stat().st_size == new.stat().st_size
    real = iw._copy_entry
    calls = []

    def change_after_the_first(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        if not calls:
            with open(exp, "r+b") as fh:
                if change == "rewritten":  # the other version, in place
                    fh.write(new.read_bytes())
                else:
                    fh.truncate(exp.stat().st_size // 2)
            st = exp.stat()
            later = st.st_mtime_ns + 1_000_000_000  # a coarse clock must not hide it
            os.utime(exp, ns=(st.st_atime_ns, later))
        calls.append(1)

    monkeypatch.setattr(iw, "_copy_entry", change_after_the_first)
    dst = tmp_path / "back.weights"
    with pytest.raises(dwf.FileChangedError, match="changed while it was being read") as e:
        dwf.import_weights(exp, dst)
    assert str(e.value).startswith(f"{exp}: ")
    assert calls and not dst.exists() and _leftovers(tmp_path) == []


# -- damaged and hostile exports: one DwfError, nothing written ------------------------------------
def _export_entries(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    weights, cfg = write_model(tmp_path)
    npz = tmp_path / "e.npz"
    dwf.export(weights, npz, cfg=cfg)
    with np.load(npz) as z:
        return npz, {k: z[k] for k in z.files}


def test_a_damaged_stored_npz_member_fails_its_crc(tmp_path: Path) -> None:
    npz, _ = _export_entries(tmp_path)
    raw = bytearray(npz.read_bytes())
    with zipfile.ZipFile(npz) as z:
        info = z.getinfo("conv_3.weights.npy")
    raw[info.header_offset + 200] ^= 0xFF  # inside the data
    npz.write_bytes(bytes(raw))
    with pytest.raises(dwf.DwfError, match=r"conv_3\.weights.*CRC"):
        dwf.import_weights(npz, tmp_path / "back.weights")
    assert not (tmp_path / "back.weights").exists()


@pytest.mark.parametrize("where", ["npz", "safetensors"])
def test_a_nul_byte_in_the_kept_cfg_name_is_no_bug(tmp_path: Path, where: str) -> None:
    """Failed before: ``ValueError: embedded null byte`` (a "bug in dwf" line). The kept name is
    a label; it names no file here."""
    weights, cfg = write_model(tmp_path)
    out = tmp_path / f"e.{where}"
    dwf.export(weights, out, cfg=cfg)
    if where == "npz":
        with np.load(out) as z:
            entries = {k: z[k] for k in z.files}
        entries["__dwf__.cfg_name"] = np.frombuffer(b"n\x00et.cfg", np.uint8)
        np.savez(out, **entries)
    else:
        raw = out.read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        head = json.loads(raw[8 : 8 + n])
        head["__metadata__"]["cfg_name"] = "n\x00et.cfg"
        new = json.dumps(head).encode()
        new += b" " * (-len(new) % 8)
        out.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n :])
    back = tmp_path / "back.weights"
    assert cli(["import", str(out), str(back)]) == 0
    assert back.read_bytes() == weights.read_bytes()


def _safetensors(path: Path, tensors: dict[str, tuple[str, list[int], list[int]]], data: bytes,
                 meta: dict[str, str] | None = None) -> None:
    head: dict[str, Any] = {k: {"dtype": d, "shape": s, "data_offsets": o}
                            for k, (d, s, o) in tensors.items()}
    if meta is not None:
        head["__metadata__"] = meta
    raw = json.dumps(head).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


@pytest.mark.parametrize(
    ("tensors", "data", "match"),
    [
        ({"conv_0.biases": ("F32", [16], [0, 64])}, b"", "0..64"),  # data past the end
        ({"conv_0.biases": ("F32", [16], [0, 60])}, bytes(64), "shape"),  # size disagrees
        ({"conv_0.biases": ("F32", [-1], [0, 64])}, bytes(64), "counts"),
        ({"conv_0.biases": ("F32", "16", [0, 64])}, bytes(64), "counts"),
        ({"conv_0.biases": ("BF16", [16], [0, 32])}, bytes(32), "BF16"),
    ],
    ids=["past-end", "size", "negative", "string-shape", "bf16"],
)
def test_a_hostile_safetensors_header_is_a_dwf_error(
    tmp_path: Path, tensors: Any, data: bytes, match: str
) -> None:
    st = tmp_path / "x.safetensors"
    _safetensors(st, tensors, data, {"cfg": CFG})
    with pytest.raises(dwf.DwfError, match=match):
        dwf.import_weights(st, tmp_path / "o.weights")
    assert not (tmp_path / "o.weights").exists()


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x01\x00", struct.pack("<Q", 1 << 40) + b"{}", struct.pack("<Q", 4) + b"[1] ",
     struct.pack("<Q", 2) + b"\xff\xfe"],
    ids=["empty", "short", "huge-header", "not-object", "not-utf8"],
)
def test_a_file_that_is_no_safetensors_is_a_dwf_error(tmp_path: Path, raw: bytes) -> None:
    st = tmp_path / "x.safetensors"
    st.write_bytes(raw)
    with pytest.raises(dwf.DwfError, match="safetensors"):
        dwf.import_weights(st, tmp_path / "o.weights")


# -- values float32 cannot hold ------------------------------------------------------------------
@pytest.mark.parametrize("how", ["npz", "mapping", "save"])
def test_float64_values_beyond_float32_are_refused_not_written_as_inf(
    tmp_path: Path, how: str
) -> None:
    """Failed before: numpy's overflow warning on stderr, then inf written. dwf refuses them,
    naming the array, the value and its index (docs/robustness.md says why)."""
    import warnings

    cfg = tmp_path / "net.cfg"
    cfg.write_text(CFG)
    plan = dwf.plan(cfg)
    arrays: dict[str, Any] = {k: v.astype(np.float64) for k, v in random_arrays(plan).items()}
    arrays["conv_3.weights"].reshape(-1)[1234] = 1e39
    arrays["conv_0.biases"][0] = np.inf  # an inf given as such is stored as it is
    dst = tmp_path / "o.weights"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warning would fail here
        with pytest.raises(dwf.ArrayError, match=r"conv_3.*1e\+39.*1,234.*float32"):
            if how == "save":
                dwf.save(dst, plan, arrays)
            elif how == "mapping":
                dwf.import_weights(arrays, dst, cfg=cfg)
            else:
                npz = tmp_path / "in.npz"
                np.savez(npz, **arrays)
                dwf.import_weights(npz, dst, cfg=cfg)
        assert not dst.exists()
        arrays["conv_3.weights"].reshape(-1)[1234] = 3.4e38  # within range: stored
        dwf.save(dst, plan, arrays)
    with dwf.open(dst, cfg) as f:
        assert f["conv_0"].biases[0] == np.inf  # type: ignore[index]
        assert f["conv_3"].weights.reshape(-1)[1234] == np.float32(3.4e38)  # type: ignore[union-attr]


# -- PyTorch files ---------------------------------------------------------------------------------
def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dwf: error: ") and err.count("\n") == 1, err
    assert "bug in dwf" not in err, err
    return err


def test_a_missing_pt_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Failed before: ``FileNotFoundError`` as a "bug in dwf"."""
    _, cfg = write_model(tmp_path)
    err = _one_line_error(
        ["import", str(tmp_path / "gone.pt"), str(tmp_path / "o.weights"), "--cfg", str(cfg)],
        capsys,
    )
    assert "not found" in err


@pytest.mark.parametrize("content", ["truncated", "text", "objects", "not-a-dict"])
def test_a_damaged_or_unsafe_pt_is_one_error_line_without_torchs_advice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    """Failed before: torch's UnpicklingError, advising ``weights_only=False`` (which runs the
    file's code), or a KeyError, as a "bug in dwf" line."""
    torch = pytest.importorskip("torch")
    weights, cfg = write_model(tmp_path)
    pt = tmp_path / "x.pt"
    if content == "truncated":
        dwf.export(weights, pt, cfg=cfg)
        pt.write_bytes(pt.read_bytes()[:1000])
    elif content == "text":
        pt.write_text("hello\n")
    elif content == "objects":
        torch.save({"conv_0.weight": torch.zeros(3), "opt": object()}, pt)
    else:
        torch.save([torch.zeros(3)], pt)
    err = _one_line_error(["import", str(pt), str(tmp_path / "o.weights"), "--cfg", str(cfg)],
                          capsys)
    assert "weights_only" not in err and "add_safe_globals" not in err
    assert str(pt) in err
    assert not (tmp_path / "o.weights").exists()
