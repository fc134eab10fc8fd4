"""Images for a network's input, as Darknet's detector prepares them: decoded to float32 in
[0, 1], channel-first, RGB (``load_image``), then resized to the network's size with its
``resize_image`` (bilinear, the corners of the image on the corners of the result) or
letterboxed (``letterbox_image``: resized to fit, centred on grey 0.5).

Decoding and resampling are Pillow's (the ``image`` extra). Darknet's ``resize_image`` maps
output pixel ``c`` to input position ``c·(in - 1)/(out - 1)`` and interpolates linearly, first
along rows, then columns; Pillow's affine transform with bilinear filtering of float images
(mode ``F``) computes the same interpolation, in double rather than Darknet's float positions.
How close the two are is measured in the tests against a numpy copy of Darknet's loops
(docs/detect.md says the figures). Darknet's last row, which its float arithmetic can leave
nearly black, is reproduced. Pillow's own ``resize`` is not used: it averages over the
whole footprint when shrinking, which Darknet does not.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from dwf.errors import DwfError
from dwf.extras import require

Array = np.ndarray[Any, Any]
ImageSource = str | os.PathLike[str] | Array
"""An image: a file Pillow decodes, or a decoded array: ``(h, w, 3)`` RGB (or ``(h, w)`` grey),
``uint8`` or floats in [0, 1]."""


def _pil() -> Any:
    return require("PIL.Image", "image")


def load(src: ImageSource, channels: int = 3) -> Array:
    """The image as Darknet's ``load_image(path, 0, 0, channels)`` gives it: float32
    ``(channels, h, w)`` in [0, 1], RGB for 3 channels, grey for 1.

    Raises:
        DwfError: a file that cannot be read or decoded (naming it), an array of another
            shape, a channel count other than 1 or 3.
    """
    if channels not in (1, 3):
        raise DwfError(f"the network takes {channels} channels; images give 1 (grey) or 3 (RGB)")
    if isinstance(src, np.ndarray):
        return _from_array(src, channels)
    path = os.fspath(src)
    pil = _pil()
    try:
        with pil.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("RGB" if channels == 3 else "L"))
    except (OSError, ValueError, pil.DecompressionBombError) as e:
        why = getattr(e, "strerror", None) or e
        raise DwfError(f"cannot read the image: {why}", path=path) from None
    return _from_array(arr, channels)


def _from_array(arr: Array, channels: int) -> Array:
    a = np.asarray(arr)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3) or 0 in a.shape:
        raise DwfError(
            f"an image array of shape {a.shape}: give (height, width, 3) RGB or (height, width)"
            " grey, uint8 or floats in [0, 1] (a ready network input is (N, c, h, w))"
        )
    if a.dtype == np.uint8:
        f = a.astype(np.float32) / np.float32(255)
    elif np.issubdtype(a.dtype, np.floating):
        f = a.astype(np.float32)
    else:
        raise DwfError(f"an image array of {a.dtype}: give uint8, or floats in [0, 1]")
    if f.shape[2] != channels:
        if channels == 3:
            f = np.repeat(f, 3, axis=2)
        else:  # Pillow's grey: ITU-R 601-2 luma, as for a decoded file
            f = (f[:, :, :1] * 0.299 + f[:, :, 1:2] * 0.587 + f[:, :, 2:3] * 0.114).astype(
                np.float32
            )
    out: Array = np.ascontiguousarray(f.transpose(2, 0, 1))
    return out


def resize(image: Array, w: int, h: int) -> Array:
    """Darknet's ``resize_image`` of a ``(c, h, w)`` float32 image to ``w × h``."""
    c, ih, iw = image.shape
    if (iw, ih) == (w, h):
        same: Array = image.copy()
        return same
    pil = _pil()
    sx = (iw - 1) / (w - 1) if w > 1 else 0.0
    sy = (ih - 1) / (h - 1) if h > 1 else 0.0
    # Pillow samples output pixel (x + 0.5, y + 0.5) at a·(x + 0.5) + b in pixel-centre units:
    # with a = sx and b = 0.5 - 0.5·sx, pixel x reads input position x·sx, as Darknet's does.
    data = (sx, 0.0, 0.5 - 0.5 * sx, 0.0, sy, 0.5 - 0.5 * sy)
    out = np.empty((c, h, w), np.float32)
    for k in range(c):
        plane = pil.fromarray(np.ascontiguousarray(image[k], np.float32))
        done = plane.transform((w, h), pil.Transform.AFFINE, data, resample=pil.Resampling.BILINEAR)
        out[k] = np.asarray(done, np.float32)
    if h > 1 and ih > 1:
        # Darknet's last row: its float position (h-1)·((ih-1)/(h-1)) can round below the
        # image's last row (480 → 240 does); Darknet then keeps (1 - dy) of the row above and
        # skips the rest (the last row is never completed), a nearly black row. So does dwf.
        step = np.float32(ih - 1) / np.float32(h - 1)
        sy = np.float32(np.float32(h - 1) * step)
        iy = int(sy)
        if iy < ih - 1:
            row = resize(image[:, iy : iy + 1, :], w, 1)[:, 0, :]
            out[:, h - 1, :] = (np.float32(1) - np.float32(sy - np.float32(iy))) * row
    return out


def letterbox_size(iw: int, ih: int, w: int, h: int) -> tuple[int, int]:
    """The size Darknet's ``letterbox_image`` resizes a ``iw × ih`` image to for ``w × h``:
    the side that limits it fills the network, the other keeps the ratio (C's integer
    division)."""
    if np.float32(w) / np.float32(iw) < np.float32(h) / np.float32(ih):  # in C's float
        return w, (ih * w) // iw
    return (iw * h) // ih, h


def letterbox(image: Array, w: int, h: int) -> Array:
    """Darknet's ``letterbox_image``: ``image`` resized to fit ``w × h`` with its ratio kept,
    centred on 0.5 grey."""
    c, ih, iw = image.shape
    new_w, new_h = letterbox_size(iw, ih, w, h)
    out = np.full((c, h, w), 0.5, np.float32)
    x0, y0 = (w - new_w) // 2, (h - new_h) // 2
    out[:, y0 : y0 + new_h, x0 : x0 + new_w] = resize(image, new_w, new_h)
    return out


def prepare(
    src: ImageSource, channels: int, w: int, h: int, boxed: bool
) -> tuple[Array, tuple[int, int]]:
    """The network input for one image, ``(channels, h, w)``, and the image's own
    ``(width, height)``."""
    image = load(src, channels)
    size = (int(image.shape[2]), int(image.shape[1]))
    return (letterbox(image, w, h) if boxed else resize(image, w, h)), size
