"""The model and the data a command names, loaded and checked against each other before any work (one-line errors
naming ``--model`` / ``--data`` / ``--weights``); an ``imagefolder:DIR`` at ``--resize`` / ``--center-crop``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..data import load_data
from ..errors import CheckpointError, ModelCodeError, UsageError, UserError
from ..evaluation.probe import probe_model
from ..models import build_model
from ..models.outputs import logits_model
from ..runtime import model_device
from .args import model_args


def _check_file(flag: str, path: str | None) -> None:
    if path is not None and not Path(path).is_file():
        raise UsageError(f"{flag} {path!r}: no such file")


def load_model(args: argparse.Namespace, model_spec: str, **params: Any) -> Any:
    """``build_model`` with the ``--weights`` / ``--normalize`` values; every failure a one-line UsageError
    naming the flag (the user's own model code raising: its file and line)."""

    _check_file("--weights", args.weights)
    params = {**model_args(args), **params}
    try:
        return build_model(model_spec, weights=args.weights, normalize=args.normalize, registry=args.registry,
                           **params)
    except CheckpointError as exc:
        raise UsageError(f"--weights {args.weights!r}: {exc}") from exc
    except (UserError, LookupError, ImportError, OSError, ValueError, TypeError) as exc:
        # ValueError: a model's constructor or the checkpoint check refusing a value; TypeError: only the
        # factory refusing the parameters the user gave (otherwise a bug, shown as one)
        if isinstance(exc, TypeError) and not isinstance(exc, UserError) and not params:
            raise
        raise UsageError(f"--model {model_spec!r}: {exc}") from exc


def load_dataset(args: argparse.Namespace, data_spec: str, split: str | None = None) -> Any:
    """``load_data(data_spec, split)``; a failure or an empty dataset is a one-line UsageError naming ``--data``."""

    try:
        data = load_data(data_spec, split or args.split, registry=args.registry)
    except (UserError, LookupError, ValueError, OSError) as exc:
        raise UsageError(f"--data {data_spec!r}: {exc}") from exc
    data = sized(data, args, data_spec)
    if len(data) == 0:
        raise UsageError(f"--data {data_spec!r}: the {split or args.split} split holds no samples")
    return data


def check_model_fits_data(model: Any, data: Any, model_spec: str, data_spec: str, *, trainable: bool = False,
                          registry: Any = None, any_input_size: bool = False, output: Any = None) -> Any:
    """:func:`robustreg.evaluation.probe.probe_model` on the first samples of ``data``, before any work; a
    mismatch is a UsageError naming ``--model`` and ``--data`` (and the input shape a registered model expects).

    A registered model's ``input_shape`` must be the data's (a model with adaptive pooling runs on 31x31
    images as well, silently evaluating something else) unless ``any_input_size`` (``--any-input-size``).
    Returns the model as the run uses it: reduced to its logits by ``output`` (``--output``) or, for a
    Hugging Face-style output, its ``.logits`` (:func:`robustreg.models.outputs.logits_model`)."""

    count = min(2, len(data[0]) if isinstance(data, (tuple, list)) else len(data))
    x, y = data.tensors(count) if hasattr(data, "tensors") else (data[0][:count], data[1][:count])
    expects = _expected_input(model_spec, registry)
    if expects and not any_input_size and expects != _shape(x):
        raise UsageError(f"--model {model_spec!r} expects input {expects} (its registered input_shape), got --data "
                         f"{data_spec!r} of shape {_shape(x)}; give data of that shape, or --any-input-size for a "
                         f"model that takes any size")
    try:
        model = logits_model(model, output, x[:1].to(model_device(model)))
        probe_model(model, x, y, num_classes=getattr(data, "num_classes", None), trainable=trainable)
    except (UserError, ValueError, TypeError) as exc:
        if expects and isinstance(exc, ModelCodeError) and expects != _shape(x):
            raise UsageError(f"--model {model_spec!r} expects input {expects}, got --data {data_spec!r} of shape "
                             f"{_shape(x)}: {exc}") from exc
        raise UsageError(f"--model {model_spec!r} does not fit --data {data_spec!r}: {exc}") from exc
    return model


def _shape(x: Any) -> str:
    return "x".join(str(d) for d in x.shape[1:])


def _expected_input(model_spec: str, registry: Any) -> str | None:
    entries = registry.entries("models") if registry is not None else {}
    spec = entries.get(model_spec)
    shape = getattr(spec, "input_shape", None)
    return "x".join(str(d) for d in shape) if shape else None


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
