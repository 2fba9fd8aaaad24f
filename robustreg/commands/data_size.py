"""``--resize N --center-crop N``: the image size of an ``imagefolder:DIR`` dataset, applied as each image is read.

RobustBench's ImageNet protocol is ``--resize 256 --center-crop 224`` (the shorter side scaled to 256, then the
central 224 x 224).  Other datasets have one size already; the flags are refused for them.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import UserError

__all__ = ["add_image_size_args", "sized"]


def add_image_size_args(g: Any) -> None:
    """``--resize`` and ``--center-crop`` on a parser or an argument group."""
    g.add_argument("--resize", type=int, metavar="N",
                   help="imagefolder:DIR only: scale each image's shorter side to N pixels (bilinear, antialiased) "
                        "before --center-crop; RobustBench's ImageNet protocol: --resize 256 --center-crop 224")
    g.add_argument("--center-crop", type=int, metavar="N",
                   help="imagefolder:DIR only: keep the central N x N pixels of each image (after --resize)")


def sized(data: Any, args: argparse.Namespace, data_spec: str) -> Any:
    """``data`` read at ``--resize`` / ``--center-crop`` (when given); a UserError naming the flag when the
    value is not a positive size or the dataset is not one that takes a size (an ``imagefolder:DIR``)."""
    resize, crop = getattr(args, "resize", None), getattr(args, "center_crop", None)
    if resize is None and crop is None:
        return data
    for flag, value in (("--resize", resize), ("--center-crop", crop)):
        if value is not None and value < 1:
            raise UserError(f"{flag} {value}: must be a positive number of pixels (e.g. --resize 256 "
                            f"--center-crop 224)")
    if not callable(getattr(data, "with_size", None)):
        flag = "--resize" if resize is not None else "--center-crop"
        raise UserError(f"{flag} applies to --data imagefolder:DIR only, got --data {data_spec!r} (its images have "
                        f"one size already)")
    return data.with_size(resize, crop)
