"""``build_model``: a model from a SPEC -- a registered name, a model source's ``PREFIX:NAME``, a Python file
and factory or an importable ``package.module:factory`` -- with its normalisation and weights.

Above :mod:`robustreg.models.common` (the plumbing: Normalize, checkpoints) and the architectures, whose
built-in table (:mod:`robustreg.models.builtin`) it looks a name up in when given no registry.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ModelCodeError, ModelSpecError, ModelTypeError, describe_exception
from ..registry import Registry
from .builtin import builtin_model_specs
from .common import PIXEL_MEAN, Normalize, PixelMean, load_checkpoint, parse_normalize
from .sources import model_source

__all__ = ["build_model"]


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
            registry = Registry.create()
        if spec in registry.entries("models"):
            return registry.model(spec).factory, False
        raise ModelSpecError(
            f"model spec {spec!r}: no module {target!r} to import and no registered model of that name", name=exc.name
        ) from exc


def _lookup_model(name: str, registry: Registry | None) -> Any:
    if registry is not None:
        return registry.model(name)
    specs = builtin_model_specs()
    if name in specs:
        return specs[name]
    return Registry.create().model(name)
