"""A file opened with the wrong cfg names the right one; damaged files are named for what they are.

Real files from ../shared/realweights are paired with each other's cfgs in temporary folders
(copies: nothing under ../shared is written), laid out as users keep them: side by side, or in
Darknet's ``backup/`` + ``cfg/`` training layout. Damaged copies are made from a real file the
way the damage happens: through a text decoder, CRLF translation, compression.
"""

from __future__ import annotations

import gzip
import io
import itertools
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import shared_path

import dwf
from dwf.format.known import CfgFit
from dwf.io import cfg_search
from dwf.tools.identify import identify

# folder -> (weights, cfg); files that fit their own cfg exactly (INDEX.md: "matches exactly")
REAL = {
    "darknet-reference-tiny": ("tiny.weights", "tiny.cfg"),
    "number-lenet": ("number_lenet.weights", "number_lenet.cfg"),
    "yolo-fastest-1.1": ("yolo-fastest-1.1.weights", "yolo-fastest-1.1.cfg"),
    "yolo-fastest-xl-1.0": ("yolo-fastest-xl.weights", "yolo-fastest-xl.cfg"),
    "mnv2-yolov3-nano-voc": (
        "MobileNetV2-YOLOv3-Nano-voc.weights",
        "MobileNetV2-YOLOv3-Nano-voc.cfg",
    ),
    "yoloface-500k-SE": ("yoloface-500k-SE.weights", "yoloface-500k-SE.cfg"),
    "yoloface-50k": ("yoloface-50k.weights", "yoloface-50k.cfg"),
    "yolo-lite-trial3": ("tiny-yolov2-trial3.weights", "tiny-yolov2-trial3.cfg"),
    "yolo-lite-trial3-noBatch": (
        "tiny-yolov2-trial3-noBatch.weights",
        "tiny-yolov2-trial3-noBatch.cfg",
    ),
    "lebhoryi-yolo-v2-tiny-last": ("yolo_v2_tiny_last.weights", "yolo_v2_tiny.cfg"),
    "pjreddie-pr1012-cifar-small": ("cifar_small.backup", "cifar_small.cfg"),
    "sonhm-yolo-fastest-custom-origin": ("origin.weights", "origin.cfg"),
    "lebhoryi-yolo-s-relu": ("yolo-s_with_relu_last.weights", "yolo-s_with_relu.cfg"),
}
PAIRS = [(a, b) for a, b in itertools.permutations(sorted(REAL), 2)]


def real(folder: str, name: str) -> Path:
    return shared_path("realweights", folder, name)


def fits_exactly(weights: Path, cfg: Path) -> bool:
    try:
        with dwf.open(weights, cfg) as f:
            return f.complete
    except dwf.SizeMismatchError:
        return False


@pytest.mark.slow  # every corpus cfg against every other (~4 s in all)
@pytest.mark.parametrize(("own", "other"), PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_wrong_cfg_in_the_same_folder_names_the_right_one(
    tmp_path: Path, own: str, other: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights_name, cfg_name = REAL[own]
    other_cfg = REAL[other][1]
    if other_cfg == cfg_name:
        pytest.skip("same cfg name")
    for folder, name in ((own, weights_name), (own, cfg_name), (other, other_cfg)):
        shutil.copy(real(folder, name), tmp_path / name)
    weights, wrong = tmp_path / weights_name, tmp_path / other_cfg
    if fits_exactly(weights, wrong):
        pytest.skip("the other cfg happens to fit too (same layout)")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(dwf.SizeMismatchError) as info:
        dwf.open(weights, wrong)
    err = info.value
    first = err.diagnosis.causes[0]
    assert first.kind == "other-cfg", str(err)
    msg = str(err)
    assert msg.splitlines()[0].startswith(f"{weights}: this file fits {cfg_name} exactly")
    assert f"it does not fit {other_cfg}" in msg.splitlines()[0]
    assert "download" not in msg
    # The fix is right: the named cfg opens the file.
    assert fits_exactly(weights, tmp_path / cfg_name)


def test_training_layout_backup_and_cfg_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "backup").mkdir()
    (tmp_path / "cfg").mkdir()
    shutil.copy(
        real("yolo-fastest-1.1", "yolo-fastest-1.1.weights"),
        tmp_path / "backup" / "trial_last.weights",
    )
    shutil.copy(real("yolo-fastest-1.1", "yolo-fastest-1.1.cfg"), tmp_path / "cfg" / "trial10.cfg")
    shutil.copy(
        real("yolo-fastest-xl-1.0", "yolo-fastest-xl.cfg"), tmp_path / "cfg" / "trial11.cfg"
    )
    monkeypatch.chdir(tmp_path / "backup")
    with pytest.raises(dwf.SizeMismatchError) as info:
        dwf.open("trial_last.weights", "../cfg/trial11.cfg")
    line = str(info.value).splitlines()[0]
    assert "this file fits ../cfg/trial10.cfg exactly (131 layers, 346,062 floats" in line
    assert line.endswith("it does not fit trial11.cfg")


def test_cli_info_with_the_wrong_cfg_names_the_right_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dwf.interfaces.cli import main

    for folder, name in (
        ("yolo-fastest-1.1", "yolo-fastest-1.1.weights"),
        ("yolo-fastest-1.1", "yolo-fastest-1.1.cfg"),
        ("yolo-fastest-xl-1.0", "yolo-fastest-xl.cfg"),
    ):
        shutil.copy(real(folder, name), tmp_path / name)
    monkeypatch.chdir(tmp_path)
    assert main(["info", "yolo-fastest-1.1.weights", "--cfg", "yolo-fastest-xl.cfg"]) == 2
    err = capsys.readouterr().err
    assert "this file fits yolo-fastest-1.1.cfg exactly" in err
    assert "download the file again" not in err


def test_the_search_is_bounded(tmp_path: Path) -> None:
    src = real("yoloface-50k", "yoloface-50k.cfg").read_text()
    for i in range(1000):
        (tmp_path / f"c{i:04d}.cfg").write_text(src)
    (tmp_path / "a_huge.cfg").write_text(src + "#" * (cfg_search.MAX_CFG_BYTES + 1))
    found = cfg_search.nearby_cfgs(str(tmp_path / "x.weights"))
    assert len(found) == cfg_search.MAX_CFGS
    assert not any(p.endswith("a_huge.cfg") for p in found)


def test_a_cfg_with_other_classes_beside_the_file(tmp_path: Path) -> None:
    """The nearby cfg fits once its class count is solved."""
    shutil.copy(real("yolo-fastest-1.1", "yolo-fastest-1.1.weights"), tmp_path / "w.weights")
    text = real("yolo-fastest-1.1", "yolo-fastest-1.1.cfg").read_text()
    plan = dwf.Plan.from_text(text)
    from dwf.format.retrain import with_classes

    (tmp_path / "edited.cfg").write_text(with_classes(plan, plan.layers[-1].params["classes"] + 4))
    ident = identify(tmp_path / "w.weights")
    [fit] = ident.fits
    assert isinstance(fit, CfgFit)
    assert fit.how == "classes" and fit.classes == plan.layers[-1].params["classes"]


# -- damaged files -------------------------------------------------------------------------------


@pytest.fixture
def small_real(tmp_path: Path) -> tuple[bytes, Path]:
    data = real("yoloface-50k", "yoloface-50k.weights").read_bytes()
    cfg = tmp_path / "yoloface-50k.cfg"
    shutil.copy(real("yoloface-50k", "yoloface-50k.cfg"), cfg)
    return data, cfg


def test_text_decoded_file_is_named(tmp_path: Path, small_real: tuple[bytes, Path]) -> None:
    data, cfg = small_real
    mangled = data.decode("utf-8", errors="replace").encode("utf-8")
    assert mangled.count(b"\xef\xbf\xbd") > 100
    path = tmp_path / "mangled.weights"
    path.write_bytes(mangled)
    ident = identify(path)
    assert ident.problem is not None and "text decoder" in ident.problem
    assert "EF BF BD" in ident.problem
    with pytest.raises(dwf.HeaderError, match="text decoder"):
        dwf.open(path, cfg)


def test_crlf_translated_file_is_named(tmp_path: Path, small_real: tuple[bytes, Path]) -> None:
    data, cfg = small_real
    lf = data.count(b"\n")
    translated = data.replace(b"\n", b"\r\n")
    assert len(translated) == len(data) + lf
    path = tmp_path / "yoloface-50k.weights"
    path.write_bytes(translated)
    ident = identify(path)
    assert ident.problem is not None and "CRLF-translated" in ident.problem
    assert f"{lf:,} 0A bytes" in ident.problem
    assert "yoloface-50k.cfg exactly" in ident.problem
    with pytest.raises(dwf.SizeMismatchError) as info:
        dwf.open(path, cfg)
    first = info.value.diagnosis.causes[0]
    assert first.kind == "crlf" and first.exact
    assert f"grew by {lf:,} bytes" in first.summary
    assert "download" not in info.value.diagnosis.explain().split("likely cause")[1].split("\n")[0]
    # the fix the message gives restores the file
    restored = tmp_path / "restored.weights"
    restored.write_bytes(translated.replace(b"\r\n", b"\n"))
    with dwf.open(restored, cfg) as f:
        assert f.complete


def _gz(data: bytes) -> bytes:
    return gzip.compress(data)


def _zip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("yoloface-50k.weights", data)
    return buf.getvalue()


def _tar(data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("yoloface-50k.weights")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("pack", "words"),
    [(_gz, "gzip-compressed"), (_zip, "a zip archive"), (_tar, "a tar archive")],
    ids=["gzip", "zip", "tar"],
)
def test_compressed_weights_are_named(
    tmp_path: Path, small_real: tuple[bytes, Path], pack: object, words: str
) -> None:
    data, cfg = small_real
    path = tmp_path / "packed.weights"
    path.write_bytes(pack(data))  # type: ignore[operator]
    ident = identify(path)
    assert ident.problem is not None and words in ident.problem
    with pytest.raises(dwf.HeaderError, match=words):
        dwf.open(path, cfg)


def test_no_cfg_beside_by_name_but_one_fits(tmp_path: Path) -> None:
    shutil.copy(real("yoloface-50k", "yoloface-50k.weights"), tmp_path / "best.weights")
    shutil.copy(real("yoloface-50k", "yoloface-50k.cfg"), tmp_path / "trial4.cfg")
    with pytest.raises(dwf.CfgError) as info:
        dwf.open(tmp_path / "best.weights")
    assert "no cfg given and none found" in str(info.value)
    assert "trial4.cfg exactly" in str(info.value)
