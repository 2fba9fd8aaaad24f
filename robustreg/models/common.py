"""Model plumbing: input normalisation, checkpoint loading, building a model from a SPEC, devices."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .. import runtime
from ..embedding import Head, apply_head
from ..errors import CheckpointError

if TYPE_CHECKING:
    pass

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "Normalize",
    "checkpoint_head",
    "load_checkpoint",
    "load_state_dict_file",
    "needs_pixel_mean",
    "parse_normalize",
    "resolve_device",
]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)

# keys under which training scripts commonly nest the weights, tried in this order
_NESTED_KEYS = ("state_dict", "model", "net", "model_state_dict", "model_state")


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, so that a model takes [0, 1] pixels.

    ``mean`` and ``std`` are sequences of one value per channel (any channel count) or a single
    float.  They are non-persistent buffers: they move with ``.to(device)`` but are not part of the
    state dict, so a checkpoint of the wrapped network loads whatever normalisation it was built with.
    """

    def __init__(self, mean: Sequence[float] | float, std: Sequence[float] | float) -> None:
        super().__init__()
        m = torch.as_tensor(mean, dtype=torch.float32).flatten()
        s = torch.as_tensor(std, dtype=torch.float32).flatten()
        if m.numel() == 0 or s.numel() == 0:
            raise ValueError(f"mean and std must not be empty, got mean={mean!r}, std={std!r}")
        if m.numel() != s.numel():
            raise ValueError(
                f"mean and std must have one value per channel each, got {m.numel()} means and {s.numel()} stds"
            )
        if not torch.isfinite(m).all() or not torch.isfinite(s).all() or (s <= 0).any():
            raise ValueError(f"std must be finite and > 0 and mean finite, got mean={m.tolist()}, std={s.tolist()}")
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", m.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", s.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"Normalize expects N x C x H x W input, got shape {tuple(x.shape)}")
        channels = self.mean.shape[1]
        if channels != 1 and x.shape[1] != channels:
            raise ValueError(f"Normalize has {channels} channels but the input has {x.shape[1]}")
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


PIXEL_MEAN = "pixel-mean"


class PixelMean(nn.Module):
    """``x - mean_image``: per-pixel mean subtraction in front of a model that takes [0, 1] pixels.

    Paper 000 (Na et al. 2018, section 5) subtracts the training set's per-pixel mean on CIFAR-10; as a
    model-front module the attacks still see [0, 1] images (paper 000's footnote 3 clips in the
    mean-added space, which is the same).  ``mean`` (C x H x W) is a persistent buffer, so the checkpoint
    carries it; it is empty until :func:`set_pixel_mean` fills it (the trainer, from the training
    images) or a checkpoint is loaded (any size).  An input smaller than the mean image (paper 000's
    24 x 24 crops of 32 x 32 images) gets the mean image's centre crop -- exact for centre-cropped
    test images, the mean of one position (not of the crop's own) for random training crops.
    """

    def __init__(self) -> None:
        super().__init__()
        self.mean: torch.Tensor
        self.register_buffer("mean", torch.zeros(0))

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any, **kwargs: Any) -> None:
        saved = state_dict.get(prefix + "mean")
        if isinstance(saved, torch.Tensor) and saved.shape != self.mean.shape:
            self.mean = torch.zeros_like(saved, device=self.mean.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean.dim() != 3:
            raise RuntimeError("PixelMean has no mean image: train with normalize: pixel-mean or load its checkpoint")
        if x.dim() != 4 or x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"PixelMean expects N x {self.mean.shape[0]} x H x W input, got shape {tuple(x.shape)}")
        (h, w), (mh, mw) = x.shape[-2:], self.mean.shape[-2:]
        if h > mh or w > mw:
            raise ValueError(f"input of {h} x {w} is larger than the {mh} x {mw} mean image")
        top, left = (mh - h) // 2, (mw - w) // 2
        return x - self.mean[:, top:top + h, left:left + w].to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={tuple(self.mean.shape)}"


def needs_pixel_mean(model: nn.Module) -> bool:
    """Whether ``model`` holds a :class:`PixelMean` without a mean image yet (what :func:`set_pixel_mean` fills)."""
    return any(isinstance(m, PixelMean) and m.mean.dim() != 3 for m in model.modules())


def set_pixel_mean(model: nn.Module, images: torch.Tensor, *, overwrite: bool = False) -> bool:
    """Fill the :class:`PixelMean` modules of ``model`` that have no mean image yet (every one with
    ``overwrite``) with the mean of ``images`` (N x C x H x W); True if any was filled."""
    found = False
    for module in model.modules():
        if isinstance(module, PixelMean) and (overwrite or module.mean.dim() != 3):
            module.mean = images.detach().float().mean(dim=0).to(module.mean.device)
            found = True
    return found


def parse_normalize(text: str) -> tuple[list[float], list[float]]:
    """Parse ``"0.5,0.5,0.5:0.2,0.2,0.2"`` (or ``"cifar10"``) into ``(mean, std)`` lists."""
    if not isinstance(text, str):
        raise TypeError(f"normalize must be a string 'MEAN,...:STD,...', got {type(text).__name__}")
    if text.strip().lower() == "cifar10":
        return list(CIFAR10_MEAN), list(CIFAR10_STD)
    parts = text.split(":")
    if len(parts) != 2:
        raise ValueError(f"normalize must look like 'm1,m2,m3:s1,s2,s3' (mean:std) or 'cifar10', got {text!r}")
    out: list[list[float]] = []
    for what, part in zip(("mean", "std"), parts):
        try:
            values = [float(v) for v in part.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"normalize {what} must be comma-separated numbers, got {part!r} in {text!r}") from None
        if not values:
            raise ValueError(f"normalize {what} is empty in {text!r}")
        out.append(values)
    mean, std = out
    if len(mean) != len(std):
        raise ValueError(f"normalize needs as many means as stds, got {len(mean)} and {len(std)} in {text!r}")
    if any(s <= 0 for s in std):
        raise ValueError(f"normalize std values must be > 0, got {std}")
    return mean, std


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> ``torch.device``.

    The core's one resolver (:func:`robustreg.runtime.resolve_device`), re-exported for model code.
    """
    return runtime.resolve_device(spec)


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _extract_state_dict(obj: Any, path: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, (list, tuple)) and len(obj) == 1:
        obj = obj[0]
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in _NESTED_KEYS:
            inner = obj.get(key)
            if isinstance(inner, (list, tuple)) and len(inner) == 1:
                inner = inner[0]
            if _is_state_dict(inner):
                return dict(inner)  # type: ignore[arg-type]
        keys = ", ".join(repr(k) for k in list(obj)[:8])
        raise ValueError(
            f"{path}: no state dict found; expected a mapping of parameter names to tensors, or one nested under "
            f"{', '.join(repr(k) for k in _NESTED_KEYS)}; the file's top-level keys are {keys}"
        )
    raise ValueError(f"{path}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")


def _strip_prefix(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _read(path: str | os.PathLike) -> Any:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {str(p)!r}")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(p)!r} is empty (0 bytes)")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {str(p)!r}: {_load_failure(exc)}") from exc


def _load_failure(exc: Exception) -> str:
    """What torch.load's (long, multi-line) error means, in a few words."""
    text = " ".join(str(exc).split())
    if "central directory" in text or "zip archive" in text:
        return "truncated or not a PyTorch checkpoint (torch.load: failed reading zip archive)"
    if "Weights only load failed" in text or "Unsupported operand" in text or "pickle" in text.lower():
        return ("not a PyTorch checkpoint of tensors, or it holds Python objects that torch.load(weights_only=True) "
                "refuses")
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _clean(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sd = _strip_prefix(sd, "module.")
    return _strip_prefix(sd, "_orig_mod.")  # torch.compile


def _head_record(obj: Any, path: str) -> Head | None:
    """The prediction head recorded next to the weights (``{"state_dict": ..., "head": {"kind": ...}}``), if any."""
    if isinstance(obj, (list, tuple)) and len(obj) == 1:
        obj = obj[0]
    if not isinstance(obj, Mapping) or _is_state_dict(obj):
        return None
    record = obj.get("head")
    if not isinstance(record, Mapping) or "kind" not in record:
        return None  # no record (or some other script's "head" entry): the model's own linear head
    return Head.from_dict(record, origin=f"{path}: the recorded head")


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file safely (``weights_only=True``) and return its plain state dict.

    Accepted layouts: a state dict; one nested under ``state_dict``, ``model`` or ``net``; a list or
    tuple holding one of those; keys prefixed by DataParallel's ``module.`` (the prefix is removed).
    A head record next to the weights is not part of the state dict: :func:`checkpoint_head` reads it.
    """
    return _clean(_extract_state_dict(_read(path), str(path)))


def checkpoint_head(path: str | os.PathLike) -> Head | None:
    """The prediction head recorded in the checkpoint at ``path`` (the trainer's ``final.pt`` / ``last.pt`` of a
    defense with a :meth:`~robustreg.Defense.head`); None when it records none (the model's own ``W z + b``)."""
    return _head_record(_read(path), str(path))


def _mismatch(model: nn.Module, sd: Mapping[str, torch.Tensor]) -> tuple[list[str], list[str], list[str]]:
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    return missing, unexpected, shapes


def _few(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")


def load_checkpoint(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load the weights in ``path`` into ``model`` (in place) and return ``model``.

    The file is read with ``torch.load(map_location="cpu", weights_only=True)`` (see
    :func:`load_state_dict_file` for the layouts accepted).  If the keys do not fit ``model`` and
    ``model`` is a wrapper (e.g. ``nn.Sequential(Normalize(...), net)``), the last submodule is
    tried, so a checkpoint of the inner network loads into the wrapped model.

    A prediction head recorded next to the weights (:func:`checkpoint_head`, e.g. a cosine head
    ``s * cos(theta)``) is applied (:func:`robustreg.embedding.apply_head`), so ``model(x)`` is the
    classifier that was trained; a checkpoint without one loads the weights only.

    Raises FileNotFoundError naming the path if it does not exist, and ValueError listing a few
    missing / unexpected keys (or shape mismatches) if neither fits.  With ``strict=False`` missing
    and unexpected keys are tolerated, but shapes must still match and at least one key must fit.
    """
    obj = _read(path)
    sd = _clean(_extract_state_dict(obj, str(path)))
    head = _head_record(obj, str(path))
    candidates: list[nn.Module] = [model]
    children = list(model.children())
    if len(children) > 1:
        candidates.append(children[-1])
    for name, module in model.named_modules():  # a PixelMean takes the checkpoint's mean image, any size
        saved = sd.get(f"{name}.mean" if name else "mean")
        if isinstance(module, PixelMean) and isinstance(saved, torch.Tensor) and saved.dim() == 3:
            module.mean = torch.zeros_like(saved)
    first_error = ""
    for target in candidates:
        missing, unexpected, shapes = _mismatch(target, sd)
        overlap = len(sd) - len(unexpected)
        if not shapes and overlap > 0 and (not strict or (not missing and not unexpected)):
            target.load_state_dict(sd, strict=strict)
            return apply_head(model, head) if head is not None else model
        if not first_error:
            parts = []
            if missing:
                parts.append(f"missing keys: {_few(missing)}")
            if unexpected:
                parts.append(f"unexpected keys: {_few(unexpected)}")
            if shapes:
                parts.append(f"shape mismatches: {_few(shapes, 3)}")
            first_error = "; ".join(parts)
    raise ValueError(
        f"checkpoint {str(path)!r} does not fit {type(model).__name__}"
        f"{' (nor its last submodule)' if len(candidates) > 1 else ''}: {first_error}"
    )
