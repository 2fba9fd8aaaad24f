"""Model plumbing: input normalisation, checkpoint loading, building a model from a SPEC, devices."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .. import runtime
from ..embedding import Head, apply_head
from ..errors import CheckpointError, ModelCodeError, ModelSpecError, ModelTypeError, describe_exception
from .sources import model_source

if TYPE_CHECKING:
    from ..registry import Registry

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "Normalize",
    "build_model",
    "checkpoint_head",
    "load_checkpoint",
    "load_state_dict_file",
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


def _load_factory(spec: str) -> Any:
    """``path/to/file.py:factory`` or ``package.module:factory`` -> the callable."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr.isidentifier():
        raise ValueError(f"model spec must be NAME, FILE.py:FACTORY or package.module:FACTORY, got {spec!r}")
    if target.endswith(".py") or os.sep in target or "/" in target:
        path = Path(target)
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {str(path)!r} (from spec {spec!r})")
        modname = f"robustreg_user_model_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(modname, path)
        if module_spec is None or module_spec.loader is None:
            raise ValueError(f"cannot import {str(path)!r} as a Python module")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[modname] = module  # dataclasses and pickling look modules up here
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(modname, None)
            raise ModelCodeError(f"importing the model file {str(path)!r} raised "
                                 f"{describe_exception(exc, path)}") from exc
        except BaseException:
            sys.modules.pop(modname, None)
            raise
    else:
        module = _import_user_module(target, spec)
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise ValueError(f"{target!r} has no callable {attr!r} (from model spec {spec!r})")
    return factory


def _import_user_module(target: str, spec: str) -> Any:
    """``package.module`` of a model spec; a missing module is a ModuleNotFoundError (a registered name with
    that prefix may still match), the module's own code raising a :class:`ModelCodeError`."""
    try:
        return importlib.import_module(target)
    except Exception as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name is not None and (
                target == exc.name or target.startswith(exc.name + ".")):
            raise
        raise ModelCodeError(f"importing {target!r} (from model spec {spec!r}) raised "
                             f"{describe_exception(exc)}") from exc


def _call_factory(factory: Any, spec: str, user_code: bool, params: dict[str, Any]) -> Any:
    """``factory(**params)``; the user's own factory raising is a :class:`ModelCodeError` naming its file and line."""
    if not user_code:
        return factory(**params)
    try:
        return factory(**params)
    except Exception as exc:
        code = getattr(factory, "__code__", None)
        raise ModelCodeError(f"the model factory {spec!r} raised "
                             f"{describe_exception(exc, code.co_filename if code is not None else None)}") from exc


def build_model(
    spec: str,
    *,
    weights: str | os.PathLike | None = None,
    normalize: tuple[Sequence[float], Sequence[float]] | str | None = None,
    registry: Registry | None = None,
    strict: bool = True,
    **params: Any,
) -> nn.Module:
    """Build a model from a SPEC and return it in eval mode on the CPU.

    ``spec``: a registered model name (``"resnet20"``, ``"lenet5-mnist"``, ...), a Python file and
    factory ``"path/to/net.py:make_net"``, an importable ``"package.module:factory"``, or ``"PREFIX:REST"`` for
    a registered model source (``"timm:resnet18"``; ``robustreg list model_sources``).
    ``weights``: a checkpoint loaded with :func:`load_checkpoint` (with the prediction head it records, if
    any: the model then returns that head's logits, e.g. ``s * cos(theta)``).  ``normalize``: ``(mean, std)``
    (or the string form of :func:`parse_normalize`) wraps the model as ``nn.Sequential(Normalize, model)``
    before the weights load, so a checkpoint of either the inner model or the wrapper fits;
    ``"pixel-mean"`` wraps it as ``nn.Sequential(PixelMean(), model)``, whose mean image the weights
    (a checkpoint trained with it) or :func:`set_pixel_mean` provide.
    ``registry``: where names are looked up; the built-in models are found without building one.
    A registered name with a toolkit prefix (``"zoo:wrn"``) is found too, when no module of that
    name can be imported.
    ``params`` go to the factory (e.g. ``num_classes=100``).

    Unknown names raise the registry's UnknownNameError, listing close matches.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"model spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    user_code = False
    source = model_source(spec, registry)
    if source is not None:
        # a source that reads its own checkpoint layouts takes the weights; build_model then loads none
        extra = {"weights": weights} if source[0].loads_weights else {}
        weights = None if source[0].loads_weights else weights
        factory = functools.partial(source[0].build, source[1], **extra)
    elif ":" in spec or spec.endswith(".py"):
        factory, user_code = _factory_or_prefixed_name(spec, registry)
    else:
        factory = _lookup_model(spec, registry).factory
    model = _call_factory(factory, spec, user_code, params)
    if not isinstance(model, nn.Module):
        raise ModelTypeError(f"model factory of {spec!r} returned {type(model).__name__}, not an nn.Module")
    if isinstance(normalize, str) and normalize.strip().lower() == PIXEL_MEAN:
        model = nn.Sequential(PixelMean(), model)
    elif normalize is not None:
        mean, std = parse_normalize(normalize) if isinstance(normalize, str) else normalize
        model = nn.Sequential(Normalize(mean, std), model)
    if weights is not None:
        model = load_checkpoint(model, weights, strict=strict)
    return model.cpu().eval()


def _factory_or_prefixed_name(spec: str, registry: Registry | None) -> tuple[Any, bool]:
    """(the factory, whether it is the user's own code rather than a registered model's)."""
    if registry is not None and spec in registry.entries("models"):
        return registry.model(spec).factory, False
    try:
        return _load_factory(spec), True
    except ModuleNotFoundError as exc:
        target = spec.rpartition(":")[0]
        if "/" in target or os.sep in target or exc.name != target.split(".")[0]:
            raise ModelSpecError(f"model spec {spec!r}: no module {exc.name or target!r} to import",
                                 name=exc.name) from exc
        if registry is None:
            from ..registry import Registry

            registry = Registry.create()
        if spec in registry.entries("models"):
            return registry.model(spec).factory, False
        raise ModelSpecError(
            f"model spec {spec!r}: no module {target!r} to import and no registered model of that name", name=exc.name
        ) from exc


def _lookup_model(name: str, registry: Registry | None) -> Any:
    if registry is not None:
        return registry.model(name)
    from . import builtin_model_specs

    specs = builtin_model_specs()
    if name in specs:
        return specs[name]
    from ..registry import Registry

    return Registry.create().model(name)
