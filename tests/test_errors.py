"""The error contract: one hierarchy, plain messages that name the file, errors that pickle."""

from __future__ import annotations

import inspect
import multiprocessing
import os
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dwf
import dwf.errors

NET = "[net]\nwidth=4\nheight=4\nchannels=2\n[conv]\nfilters=3\nsize=1\n[conv]\nfilters=2\n"
FLOATS = (3 + 2 * 3) + (2 + 3 * 2)  # conv_0: biases + weights; conv_1 likewise = 17


def all_error_classes() -> list[type[BaseException]]:
    return [
        obj
        for _, obj in inspect.getmembers(dwf.errors, inspect.isclass)
        if issubclass(obj, BaseException) and obj.__module__ == "dwf.errors"
    ]


def weights_bytes(floats: int = FLOATS, version: tuple[int, int, int] = (0, 2, 5)) -> bytes:
    body = np.arange(floats, dtype="<f4").tobytes()
    return struct.pack("<iiiQ", *version, 123) + body


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A cfg and a matching weights file: ``model.cfg`` and ``model.weights``."""
    (tmp_path / "model.cfg").write_text(NET)
    path = tmp_path / "model.weights"
    path.write_bytes(weights_bytes())
    return path


# -- the hierarchy -----------------------------------------------------------------------------


def test_error_classes_are_exported() -> None:
    classes = all_error_classes()
    assert len(classes) >= 9
    for cls in classes:
        assert getattr(dwf, cls.__name__) is cls
        assert cls.__name__ in dwf.__all__


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_is_a_dwf_error_and_a_value_error(cls: type[BaseException]) -> None:
    assert issubclass(cls, dwf.DwfError)
    assert issubclass(cls, ValueError)


def test_lookup_errors_are_key_errors_with_plain_messages(model: Path) -> None:
    assert issubclass(dwf.LayerNotFoundError, KeyError)
    assert issubclass(dwf.LayerNotInFileError, KeyError)
    with pytest.raises(KeyError) as info:
        dwf.plan(model.with_suffix(".cfg"))["conv_7"]
    err = info.value
    assert isinstance(err, dwf.LayerNotFoundError)
    # KeyError would print repr(message) in quotes; dwf prints the message itself.
    assert str(err) == err.message
    assert not str(err).startswith(("'", '"'))
    assert str(err).startswith(f"no layer named 'conv_7' in {model.with_suffix('.cfg')}")

    partial = model.with_name("model.conv.0")
    partial.write_bytes(weights_bytes(3 + 2 * 3))
    with dwf.open(partial, model.with_suffix(".cfg")) as f, pytest.raises(KeyError) as info2:
        f["conv_1"]
    not_in = info2.value
    assert isinstance(not_in, dwf.LayerNotInFileError)
    assert str(not_in) == not_in.message
    assert str(not_in).startswith(f"{partial}: layer 1 (conv_1, convolutional)")
    assert not_in.layer == "conv_1"
    assert not_in.span == (20 + 4 * 9, 20 + 4 * FLOATS)
    assert not_in.file_size == 20 + 4 * 9

    with dwf.open(model) as f, pytest.raises(KeyError) as info3:
        f["conv_0"]["gamma"]
    no_array = info3.value
    assert isinstance(no_array, dwf.ArrayNotFoundError)
    assert str(no_array) == no_array.message
    assert not str(no_array).startswith(("'", '"'))
    assert "gamma" in str(no_array) and "conv_0" in str(no_array)


# -- pickling ----------------------------------------------------------------------------------

MADE: list[dwf.DwfError] = [
    dwf.DwfError("plain", path="a.weights"),
    dwf.CfgError("bad option", path="a.cfg", line=7),
    dwf.CfgError("no sections"),
    dwf.HeaderError("a.weights: too short", path="a.weights"),
    dwf.SizeMismatchError(
        "a.weights: 10 bytes short",
        path="a.weights",
        expected_size=120,
        actual_size=110,
        header_size=16,
        first_unfilled=(3, "conv_3", "convolutional", "weights", 60, 120),
        diagnosis={"causes": ["truncated"]},
    ),
    dwf.LayerNotFoundError("no layer conv3", key="conv3", suggestions=("conv_3",), path="a"),
    dwf.LayerNotInFileError(
        "layer 5 past the end", layer="conv_5", span=(100, 200), file_size=150, path="a"
    ),
    dwf.ArrayError("missing conv_0.weights"),
    dwf.ArrayNotFoundError("conv_0 has no array 'gamma'", key="gamma", layer="conv_0", path="a"),
    dwf.FileChangedError("changed", path="a.weights", opened=(10, 1), now=(20, 2)),
    dwf.ClosedFileError("closed", path="a.weights"),
    dwf.WeightsNotFoundError("weights file not found", path="a.weights"),
    dwf.CfgNotFoundError("cfg file not found", path="a.cfg"),
    dwf.UnsupportedLayerError(
        "no ONNX form", path="a.cfg", index=3, layer="rnn_3", type="rnn"
    ),
    dwf.RemoteError("timed out", path="https://example.org/a.weights"),
]


def test_the_path_prefix_is_written_once() -> None:
    err = dwf.DwfError("cannot read", path="a.weights")
    assert str(err) == "a.weights: cannot read" and err.reason == "cannot read"
    again = dwf.DwfError("a.weights: cannot read", path="a.weights")
    assert str(again) == "a.weights: cannot read" and again.reason == "cannot read"
    assert str(dwf.DwfError("no file")) == "no file"


def test_errors_are_also_the_builtin_of_their_meaning(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as missing:
        dwf.open(tmp_path / "missing.weights", cfg=tmp_path / "x.cfg")
    assert isinstance(missing.value, dwf.WeightsNotFoundError)
    with pytest.raises(FileNotFoundError) as no_cfg:
        dwf.plan(tmp_path / "missing.cfg")
    assert isinstance(no_cfg.value, dwf.CfgNotFoundError) and isinstance(no_cfg.value, dwf.CfgError)
    assert issubclass(dwf.RemoteError, OSError) and issubclass(dwf.RemoteError, dwf.DwfError)


def test_every_class_has_a_pickling_case() -> None:
    assert {type(e) for e in MADE} == set(all_error_classes())


def same_error(a: BaseException, b: BaseException) -> None:
    assert type(a) is type(b)
    assert str(a) == str(b)
    assert a.args == b.args
    assert vars(a) == vars(b)


@pytest.mark.parametrize("err", MADE, ids=lambda e: type(e).__name__)
def test_errors_pickle_with_message_and_attributes(err: dwf.DwfError) -> None:
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        back = pickle.loads(pickle.dumps(err, protocol=protocol))
        same_error(back, err)
        assert back.message == err.message
        assert back.path == err.path
    if isinstance(err, dwf.CfgError):
        back = pickle.loads(pickle.dumps(err))
        assert back.line == err.line
        assert str(back).startswith(f"{err.path or '<cfg text>'}:")


def test_raised_errors_pickle(model: Path) -> None:
    """Errors as dwf raises them (with a diagnosis object attached) survive pickling."""
    short = model.with_name("short.weights")
    short.write_bytes(weights_bytes()[:-6])
    raised: list[BaseException] = []
    for call in (
        lambda: dwf.open(short, model.with_suffix(".cfg")),
        lambda: dwf.Plan.from_text(NET + "[route]\nlayers=9\n"),
        lambda: dwf.plan(model.with_suffix(".cfg"))["conv3"],
        lambda: dwf.open(model.with_name("nothing.weights")),
    ):
        with pytest.raises(dwf.DwfError) as info:
            call()
        raised.append(info.value)
    for err in raised:
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err)
        assert str(back) == str(err)
        assert set(vars(back)) == set(vars(err))
    mismatch = raised[0]
    assert isinstance(mismatch, dwf.SizeMismatchError)
    back = pickle.loads(pickle.dumps(mismatch))
    assert (back.expected_size, back.actual_size, back.header_size) == (
        20 + 4 * FLOATS,
        20 + 4 * FLOATS - 6,
        20,
    )
    assert back.first_unfilled == mismatch.first_unfilled
    assert back.first_unfilled is not None and back.first_unfilled[:4] == (
        1,
        "conv_1",
        "convolutional",
        "weights",
    )


def test_errors_cross_a_process_boundary(model: Path) -> None:
    """A dwf error raised in a worker process arrives intact in the parent."""
    short = model.with_name("short.weights")
    short.write_bytes(weights_bytes()[:-8])
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        result = pool.apply_async(dwf.open, (str(short), str(model.with_suffix(".cfg"))))
        with pytest.raises(dwf.SizeMismatchError) as info:
            result.get(timeout=60)
    err = info.value
    assert err.path == str(short)
    assert err.expected_size == 20 + 4 * FLOATS
    assert err.actual_size == 20 + 4 * FLOATS - 8
    assert err.first_unfilled is not None and err.first_unfilled[1] == "conv_1"
    assert str(short) in str(err)


# -- dwf.open on things that are not weights ---------------------------------------------------


def check_open_error(
    path: Path, *words: str, cfg: Path | None = None, cls: type[dwf.DwfError] = dwf.DwfError
) -> dwf.DwfError:
    try:
        dwf.open(path, cfg)
    except dwf.DwfError as e:
        err = e
    except Exception as e:  # pragma: no cover - the point of these tests
        pytest.fail(f"dwf.open raised a bare {type(e).__name__}: {e}")
    else:  # pragma: no cover
        pytest.fail(f"dwf.open({path}) did not raise")
    assert isinstance(err, cls), (type(err), err)
    message = str(err)
    assert str(path) in message
    assert err.path == str(path)
    for word in words:
        assert word.lower() in message.lower(), message
    return err


@pytest.mark.parametrize("with_cfg", [True, False])
def test_open_missing_file(model: Path, with_cfg: bool) -> None:
    # Also without cfg=: the missing weights is reported, not the cfg search.
    missing = model.with_name("modle.weights")
    check_open_error(missing, "not found", cfg=model.with_suffix(".cfg") if with_cfg else None)


@pytest.mark.parametrize("with_cfg", [True, False])
def test_open_directory(model: Path, with_cfg: bool) -> None:
    folder = model.with_name("folder.weights")
    folder.mkdir()
    check_open_error(folder, "directory", cfg=model.with_suffix(".cfg") if with_cfg else None)


def test_open_empty_file(model: Path) -> None:
    model.write_bytes(b"")
    check_open_error(model, "empty", cls=dwf.HeaderError)


def test_open_ten_byte_file(model: Path) -> None:
    model.write_bytes(b"\x00\x00\x00\x00\x02\x00\x00\x00\x05\x00")
    check_open_error(model, "10 bytes", cls=dwf.HeaderError)


def test_open_html_page(model: Path) -> None:
    model.write_bytes(
        b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>" + b"x" * 2000
    )
    check_open_error(model, "HTML", cls=dwf.HeaderError)


def test_open_git_lfs_pointer(model: Path) -> None:
    model.write_bytes(
        b"version https://git-lfs.github.com/spec/v1\n"
        b"oid sha256:4a5e2f0c8d1b6e3f9a7c2d4b1e0f8a6c3d5b7e9f1a2c4d6e8f0a1b3c5d7e9f12\n"
        b"size 257717640\n"
    )
    check_open_error(model, "LFS", cls=dwf.HeaderError)


def test_open_cfg_as_weights(model: Path) -> None:
    cfg = model.with_suffix(".cfg")
    check_open_error(cfg, "cfg", cfg=cfg, cls=dwf.HeaderError)


def test_open_byte_swapped_header(model: Path) -> None:
    body = np.arange(FLOATS, dtype=">f4").tobytes()
    model.write_bytes(struct.pack(">iiiQ", 0, 2, 5, 64) + body)
    check_open_error(model, "byte-swapped", cls=dwf.HeaderError)


def test_open_without_a_cfg_beside_lists_what_was_looked_for(tmp_path: Path) -> None:
    path = tmp_path / "yolo_best.weights"
    path.write_bytes(weights_bytes())
    (tmp_path / "other.cfg").write_text(NET)
    err = check_open_error(path, "cfg=", cls=dwf.CfgError)
    message = str(err)
    assert "yolo_best.cfg" in message
    assert "yolo.cfg" in message.replace("yolo_best.cfg", "")
    assert "other.cfg" in message  # the cfg files that are there


def test_no_cfg_message_for_a_file_without_extension(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint"
    path.write_bytes(weights_bytes())
    err = check_open_error(path, "cfg=", cls=dwf.CfgError)
    assert "(looked for checkpoint.cfg)" in str(err)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root (or a platform without permissions) can read a mode-000 file",
)
def test_open_unreadable_file(model: Path) -> None:
    model.chmod(0)
    try:
        check_open_error(model, "permission")
    finally:
        model.chmod(0o644)


def test_open_permission_denied_is_reported(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The permission path also where the test runs as root: ``os.open`` is made to refuse."""
    real_open = os.open

    def refuse(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fspath(path) == str(model):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    check_open_error(model, "permission", cfg=model.with_suffix(".cfg"))


def test_open_unknown_dialect(model: Path) -> None:
    with pytest.raises(dwf.DwfError) as info:
        dwf.open(model, dialect="nope")
    assert "nope" in str(info.value)
    assert "alexeyab" in str(info.value)
    with pytest.raises(dwf.DwfError):
        dwf.Plan.from_text(NET, dialect="nope")


def test_arbitrary_bytes_give_dwf_errors_only(model: Path) -> None:
    """Darknet has no magic number: bytes of exactly the planned size open; other sizes raise a
    dwf error naming the file, never a numpy or struct error."""
    noise = np.random.default_rng(7).bytes(20 + 4 * FLOATS + 64)
    # A Darknet header, then noise: noise in the header reads as a legacy 16-byte one, and a
    # file 4 bytes longer than that is not taken for a 20-byte header unless its values agree
    # (docs/format.md §1.5)
    model.write_bytes(dwf.Header().encode() + noise[20 : 20 + 4 * FLOATS])
    with dwf.open(model) as f:
        assert f.complete
    for size in (12, 17, 20 + 4 * FLOATS - 1, 20 + 4 * FLOATS + 3, 20 + 4 * FLOATS + 64):
        model.write_bytes(noise[:size])
        with pytest.raises(dwf.DwfError) as info:
            dwf.open(model)
        assert isinstance(info.value, (dwf.HeaderError, dwf.SizeMismatchError))
        assert str(model) in str(info.value)


# -- cfg discovery -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "model.weights",
        "model_last.weights",
        "model_best.weights",
        "model_final.weights",
        "model_1000.weights",
        "model.conv.23",
        "model.backup",
        "model",  # no extension at all
        "model_last",
    ],
)
def test_cfg_is_found_beside_checkpoints(tmp_path: Path, name: str) -> None:
    (tmp_path / "model.cfg").write_text(NET)
    path = tmp_path / name
    path.write_bytes(weights_bytes())
    found, looked = dwf.find_cfg(str(path))
    assert found == str(tmp_path / "model.cfg")
    assert found in looked
    with dwf.open(path) as f:
        assert f.cfg_path == str(tmp_path / "model.cfg")
        assert f.complete
        assert f["conv_1"].biases is not None
        assert f["conv_1"].biases.tolist() == [9.0, 10.0]


def test_cfg_with_the_exact_stem_is_preferred(tmp_path: Path) -> None:
    (tmp_path / "model.cfg").write_text(NET)
    (tmp_path / "model_last.cfg").write_text(NET)
    found, looked = dwf.find_cfg(str(tmp_path / "model_last.weights"))
    assert found == str(tmp_path / "model_last.cfg")
    assert looked.index(str(tmp_path / "model_last.cfg")) < looked.index(
        str(tmp_path / "model.cfg")
    )
