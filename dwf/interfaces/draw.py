"""Detections drawn on their image (``dwf detect --out``, :func:`draw`), with Pillow (the
``image`` extra).

Each box is drawn where Darknet's ``draw_detections_v3`` draws it: its edges at
``int((x ∓ w/2)·width)`` and ``int((y ∓ h/2)·height)`` (C's truncation), kept inside the image,
``max(1, int(height·0.002))`` pixels thick inwards, in one colour per class; above it, a label
with the best class, its probability and the box's other classes. The colours are dwf's own
(evenly spread hues), not Darknet's.
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from dwf.extras import require
from dwf.io.images import ImageSource
from dwf.tools.detect import Detected


def colour(class_index: int) -> tuple[int, int, int]:
    """The RGB colour of a class's boxes: hues a golden ratio apart, so neighbours differ."""
    r, g, b = colorsys.hsv_to_rgb((class_index * 0.618033988749895) % 1.0, 0.85, 0.95)
    return (round(r * 255), round(g * 255), round(b * 255))


def box_edges(d: Detected, width: int, height: int) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` pixel edges of ``d``'s box as Darknet draws it."""
    x, y, w, h = d.box
    left, right = int((x - w / 2) * width), int((x + w / 2) * width)
    top, bot = int((y - h / 2) * height), int((y + h / 2) * height)
    return max(left, 0), max(top, 0), min(right, width - 1), min(bot, height - 1)


def draw(image: ImageSource, detections: Sequence[Detected]) -> Any:
    """``image`` (a path Pillow reads, or an ``(h, w, 3)`` RGB array) with ``detections``
    (one image's, from :func:`dwf.detect`) drawn on it: a ``PIL.Image.Image`` in RGB.

    Raises:
        DwfError: an image that cannot be read.
    """
    pil = require("PIL.Image", "image")
    draw_ = require("PIL.ImageDraw", "image")
    font = require("PIL.ImageFont", "image").load_default()
    if isinstance(image, np.ndarray):
        a = np.asarray(image)
        if np.issubdtype(a.dtype, np.floating):
            a = np.clip(np.round(a * 255), 0, 255).astype(np.uint8)
        canvas = pil.fromarray(a).convert("RGB")
    else:
        from dwf.io.images import load

        rgb = load(os.fspath(image), 3)  # Darknet's decoding, errors naming the file
        canvas = pil.fromarray(np.round(rgb.transpose(1, 2, 0) * 255).astype(np.uint8))
    width, height = canvas.size
    pen = draw_.Draw(canvas)
    pen.fontmode = "1"  # no anti-aliasing: the label's pixels are its colour or black
    thick = max(1, int(height * 0.002))
    boxes: dict[tuple[float, ...], list[Detected]] = {}
    for d in detections:  # one box, its classes in Darknet's order (best first)
        boxes.setdefault((*d.box, d.objectness), []).append(d)
    for found in sorted(boxes.values(), key=lambda ds: ds[0].prob):  # the likeliest on top
        best = found[0]
        rgb_ = colour(best.class_index)
        left, top, right, bot = box_edges(best, width, height)
        pen.rectangle([left, top, right, bot], outline=rgb_, width=thick)
        label = f"{best.name}: {best.prob:.2f}" + "".join(f", {d.name}" for d in found[1:])
        tl, tt, tr, tb = pen.textbbox((0, 0), label, font=font)
        lw, lh = tr - tl + 4, tb - tt + 4
        y0 = top - lh if top - lh >= 0 else top + thick
        pen.rectangle([left, y0, left + lw, y0 + lh - 1], fill=rgb_)
        pen.text((left + 2 - tl, y0 + 2 - tt), label, fill=(0, 0, 0), font=font)
    return canvas
