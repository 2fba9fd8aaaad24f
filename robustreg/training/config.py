"""TrainConfig: everything that defines a training run, validated against a declared ParamSet.

The scalar keys are declared once in :data:`TRAIN_PARAMS` (type, default, range or choices, unit,
doc), the same :class:`robustreg.params.Param` an attack or defense declares; the structured keys
(mappings, the milestone list, the model's normalisation and weights) are checked by
:data:`_STRUCTURED`.  An error names the key, the value and what is allowed
(``batch_size must be an integer >= 1, got 0``).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..params import Param, ParamError, ParamSet, ParamTypeError
from ..schedules import SCHEDULES

__all__ = ["RUNTIME_KEYS", "TRAIN_PARAMS", "TrainConfig"]

# Keys that may change between a run and its resumption without changing the result.
RUNTIME_KEYS = frozenset({"out", "quiet", "log_every", "checkpoint_every", "tensorboard", "device"})


def _p(name: str, type: str, default: Any, doc: str, **kw: Any) -> Param:
    return Param(name, type, default, doc, **kw)


TRAIN_PARAMS = ParamSet([
    _p("model", "str", "", "model spec: a registered name, file.py:factory or pkg.mod:factory"),
    _p("data", "str", "digits", "a load_data spec of the train split, e.g. digits or cifar10:DIR"),
    _p("defense", "str", "standard", "the registered defense (plain training: standard)"),
    _p("n_train", "int", None, "use only the first n training samples", low=1, optional=True),
    _p("resize", "int", None, "imagefolder:DIR only: scale each image's shorter side to N pixels before center_crop",
       low=1, optional=True, unit="pixels"),
    _p("center_crop", "int", None, "imagefolder:DIR only: keep the central N x N pixels of each image (after "
       "resize)", low=1, optional=True, unit="pixels"),
    _p("epochs", "int", None, "length of training in epochs (exactly one of epochs, iterations)", low=1,
       optional=True),
    _p("iterations", "int", None, "length of training in steps (exactly one of epochs, iterations)", low=1,
       optional=True),
    _p("batch_size", "int", 128, "the global batch (summed over ranks; the last partial batch is dropped)", low=1),
    _p("lr", "float", 0.1, "SGD learning rate (peak of the schedule)", low=0, low_open=True),
    _p("momentum", "float", 0.9, "SGD momentum", low=0, high=1, high_open=True),
    _p("weight_decay", "float", 5e-4, "SGD weight decay", low=0),
    _p("nesterov", "bool", False, "Nesterov momentum (needs momentum > 0)"),
    _p("grad_clip", "float", None, "max gradient norm (None: off)", low=0, low_open=True, optional=True),
    _p("schedule", "choice", "step", "the lr schedule", choices=SCHEDULES),
    _p("milestone_unit", "choice", "epochs", "unit of milestones", choices=("epochs", "iterations")),
    _p("gamma", "float", 0.1, "lr factor at each milestone of the step schedule", low=0, high=1, low_open=True),
    _p("cyclic_peak", "float", 0.4, "fraction of training at the top of the cyclic schedule", low=0, high=1,
       low_open=True, high_open=True),
    _p("augment", "bool", None, "random crop and (where the dataset allows) horizontal flip (None: the dataset's "
       "registered default; off for MNIST, which the usual recipes train un-augmented)", optional=True),
    _p("crop_padding", "int", None, "zero padding of the random crop (None: round(H / 8), or 0 with crop_size)",
       low=0, optional=True, unit="pixels"),
    _p("crop_size", "int", None, "side of the random crop (None: the image's; e.g. 24 of CIFAR-10's 32, with "
       "crop_padding 0)", low=1, optional=True, unit="pixels"),
    _p("lr_warmup_epochs", "float", None, "ramp the lr linearly up to the schedule's over the first N epochs (0: "
       "off; None: the defense's declared lr_warmup_epochs, 0 for most)", low=0, optional=True),
    _p("eps_warmup_epochs", "int", 0, "ramp the defense's pixel-unit parameters (eps, step_size, ...) linearly "
       "up to their values over the first N epochs (0: off)", low=0),
    _p("flip", "bool", None, "horizontal flips (None: the dataset's registered flippable)", optional=True),
    _p("seed", "int", 0, "model init, data order, augmentation and the global RNGs a defense uses", low=0,
       high=2**63 - 1),
    _p("device", "str", "auto", "auto, cpu, cuda or cuda:N"),
    _p("amp", "bool", False, "mixed precision (float16: CUDA only, with a gradient scaler; bfloat16: CUDA or CPU)"),
    _p("amp_dtype", "choice", "float16", "the autocast dtype of amp", choices=("float16", "bfloat16")),
    _p("channels_last", "bool", False, "channels_last memory format (CUDA only)"),
    _p("checkpoint_every", "int", 500, "steps between last.pt writes (0: only at the end)", low=0),
    _p("out", "str", "runs/train", "output folder (re-run with the same folder to resume)"),
    _p("log_every", "int", 50, "steps between log records", low=1),
    _p("quiet", "bool", False, "no progress bar"),
    _p("tensorboard", "bool", False, "also log to OUT/tensorboard"),
])

# What a declared type cannot say: extra conditions on declared keys, as (holds, allowed in words).
_EXTRA: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data": (bool, "a data spec such as 'digits' or 'cifar10:DIR'"),
    "defense": (bool, "a registered defense name (plain training: 'standard')"),
    "device": (lambda v: re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) is not None, "auto, cpu, cuda or cuda:N"),
    "out": (bool, "an output folder"),
}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# The keys no Param type describes, as (holds, allowed in words).
_STRUCTURED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "defense_params": (lambda v: isinstance(v, dict), "a mapping of parameter names to values"),
    "model_params": (lambda v: isinstance(v, dict), "a mapping of parameter names to values"),
    "milestones": (lambda v: isinstance(v, (list, tuple)) and all(_is_number(m) and m > 0 for m in v),
                   "a list of positive numbers"),
    "defense_schedule": (lambda v: isinstance(v, dict) and all(isinstance(k, str) and _is_points(p)
                                                               for k, p in v.items()),
                         "a mapping of defense parameter names to lists of [milestone, factor] pairs "
                         "(milestone > 0 in milestone_unit, factor > 0), e.g. {lam: [[85, 4]]}"),
}


def _is_points(points: Any) -> bool:
    return isinstance(points, (list, tuple)) and all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(_is_number(v) and v > 0 for v in p) for p in points)


def _allowed(param: Param) -> str:
    text = param.allowed().replace("True or False", "true or false")
    return re.sub(r"^an int\b", "an integer", text)


def _plain(param: Param, value: Any) -> bool:
    """Today's strictness on top of the declaration: an int is no float (3.0), a float is finite."""
    if value is None or param.type not in ("int", "float"):
        return True
    if param.type == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return _is_number(value)


def _checked(param: Param, value: Any) -> Any:
    """``value`` validated by ``param`` (and :data:`_EXTRA`), else a ParamError naming key, value and allowed."""
    if not _plain(param, value):
        raise ParamTypeError(f"{param.name} must be {_allowed(param)}, got {value!r}")
    try:
        checked = param.validate("train", value)
    except ParamError as exc:
        text = str(exc)
        hint = text[text.find("; did you mean"):] if "; did you mean" in text else ""
        raise type(exc)(f"{param.name} must be {_allowed(param)}, got {value!r}{hint}") from None
    extra = _EXTRA.get(param.name)
    if extra is not None and not extra[0](checked):
        raise ParamError(f"{param.name} must be {extra[1]}, got {value!r}")
    return checked


@dataclass
class TrainConfig:
    """Everything that defines a training run (YAML keys are the field names).

    The scalar keys, with their types, ranges and docs, are declared in :data:`TRAIN_PARAMS`.
    model / model_params / weights / normalize: ``build_model(model, weights=, normalize=, **model_params)``
        (normalize: what :func:`robustreg.models.parse_normalize` reads).  data: a ``load_data`` spec (train split);
        n_train: use only the first n training samples.  resize / center_crop: an ``imagefolder:DIR``'s images
        scaled (shorter side) and cropped as they are read (``--resize`` / ``--center-crop``).
    defense / defense_params: the registered defense and its keyword parameters.
    epochs | iterations: length of training (exactly one); batch_size: the global batch (drop_last).
    lr, momentum, weight_decay, nesterov: SGD.  grad_clip: max gradient norm (None: off).
    schedule: "step" | "cosine" | "cyclic" | "constant"; milestones (in milestone_unit: "epochs" or
        "iterations"), gamma: for "step"; cyclic_peak: fraction of training at the top of "cyclic".
    augment: random crop (zero padding ``crop_padding``, default round(H/8); ``crop_size``: the crop's side,
        default the image's, with crop_size the padding defaults to 0) and horizontal flip (``flip``; default:
        the dataset's registered ``flippable``, never for single-channel data); None: the dataset's registered
        ``augment`` (True but for MNIST).
    normalize: also ``"pixel-mean"``: subtract the training images' per-pixel mean in a model-front wrapper
        (paper 000's CIFAR-10 pipeline; attacks stay on [0, 1] pixels, the mean is saved in the checkpoint).
    lr_warmup_epochs: the lr ramps linearly up to the schedule's over the first N epochs (a float); None (the
        default) takes the defense's declared ``DefenseInfo.lr_warmup_epochs`` (0 for most; 3 for the HE defenses,
        whose cosine head wrecks a BatchNorm-free net at lr 0.1 from the first step), and the checkpoint records
        the number.
    eps_warmup_epochs: the defense's pixel-unit parameters ramp linearly up over the first N epochs.
    defense_schedule: ``{param: [[milestone, factor], ...]}`` multiplies a defense parameter from each
        milestone (in ``milestone_unit``) on, e.g. GAT's ``{lam: [[85, 4]]}``
        (:class:`robustreg.schedules.DefenseParamSchedule`).
    seed: model init, data order, augmentation and the global RNGs a defense uses.
    device: "auto" | "cpu" | "cuda" | "cuda:N".  amp: autocast of the defense's loss (its attack and the
    training forward/backward) in ``amp_dtype``: float16 on CUDA only, with a GradScaler (ignored on CPU),
    bfloat16 on CUDA or CPU, without a scaler (bfloat16 has float32's range).  channels_last: CUDA only.
    checkpoint_every: steps between ``last.pt`` writes (0: only at the end).  out: output folder.
    log_every: steps between log records.  quiet: no progress bar.  tensorboard: also log there.

    Paper 004's ResNet-18 schedule as YAML (``robustreg train --config at_si.yaml --set seed=1``)::

        model: resnet18
        data: cifar10:/data/cifar10
        defense: at-si
        defense_params: {eps: 8/255, steps: 10}
        epochs: 120
        batch_size: 128
        lr: 0.01
        weight_decay: 5.0e-4
        schedule: step
        milestones: [75, 90, 100]      # epochs
        out: runs/resnet18-at-si

    Paper 000 on CIFAR-10 instead: ``iterations: 94000, lr: 0.1, weight_decay: 1.0e-4,
    milestones: [48000, 72000], milestone_unit: iterations``.
    """

    model: str = ""
    data: str = "digits"
    defense: str = "standard"
    defense_params: dict[str, Any] = field(default_factory=dict)
    model_params: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    normalize: Any = None
    n_train: int | None = None
    resize: int | None = None
    center_crop: int | None = None
    epochs: int | None = None
    iterations: int | None = None
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    grad_clip: float | None = None
    schedule: str = "step"
    milestones: list[float] = field(default_factory=list)
    milestone_unit: str = "epochs"
    gamma: float = 0.1
    cyclic_peak: float = 0.4
    augment: bool | None = None
    crop_padding: int | None = None
    crop_size: int | None = None
    lr_warmup_epochs: float | None = None
    eps_warmup_epochs: int = 0
    defense_schedule: dict[str, Any] = field(default_factory=dict)
    flip: bool | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    amp_dtype: str = "float16"
    channels_last: bool = False
    checkpoint_every: int = 500
    out: str = "runs/train"
    log_every: int = 50
    quiet: bool = False
    tensorboard: bool = False

    def __post_init__(self) -> None:
        for param in TRAIN_PARAMS:
            setattr(self, param.name, _checked(param, getattr(self, param.name)))
        for key, (holds, allowed) in _STRUCTURED.items():
            if not holds(getattr(self, key)):
                raise ParamError(f"{key} must be {allowed}, got {getattr(self, key)!r}")
        self.milestones = list(self.milestones)
        if (self.epochs is None) == (self.iterations is None):
            raise ParamError(f"give exactly one of epochs and iterations, got epochs={self.epochs!r}, "
                             f"iterations={self.iterations!r}")
        if self.nesterov and self.momentum == 0:
            raise ParamError("nesterov=true needs momentum > 0, got momentum=0")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping (YAML); unknown keys raise a ValueError naming close matches."""
        names = [f.name for f in fields(cls)]
        unknown = [k for k in values if k not in names]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(str(k), names, n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(f"unknown training config key(s) {', '.join(hints)}; known keys: {', '.join(names)}")
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
