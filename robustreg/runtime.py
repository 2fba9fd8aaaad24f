"""Where a model runs and how the core runs it: one device resolver and one batched predict.

:func:`resolve_device` turns what a user or a config says (``"auto"``, ``"cpu"``, ``"cuda"``,
``"cuda:N"``, a ``torch.device`` or None) into a ``torch.device``; :func:`predict` returns a
model's logits for a whole tensor, batched, without gradients.  Evaluation, comparison and
training all go through these two, so a device is checked (and refused) the same way everywhere.

:class:`SpeedOptions` (bf16 autocast, channels_last, torch.compile, cudnn.benchmark; each off by
default) say how the model runs inside an evaluation's attacks, and :func:`fast_model` is the one place
that prepares the model for them (every attack, native or a toolkit's, gets the same prepared model).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .errors import UserError

if TYPE_CHECKING:
    from .data.source import Images

__all__ = ["AMP_CHOICES", "SPEED_KEYS", "FastModel", "SpeedOptions", "fast_model", "model_device", "predict",
           "resolve_device"]

_DEVICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without either)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def resolve_device(spec: str | torch.device | None, model: nn.Module | None = None, *,
                   local_rank: int | None = None) -> torch.device:
    """``spec`` -> ``torch.device``.

    - None: where ``model`` is (its first parameter or buffer); without a model, as ``"auto"``.
    - ``"auto"``: CUDA when available, else CPU.
    - ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (case and surrounding blanks ignored); a CUDA device is
      refused (ValueError) when CUDA is not available or index N is not visible.
    - a ``torch.device``: returned as it is, except that a CUDA one is checked like the text.

    ``local_rank``: under torchrun, plain ``"cuda"`` (or ``"auto"`` resolving to CUDA) means this
    rank's GPU, ``cuda:<local_rank>``.
    """
    if spec is None:
        if model is not None:
            return model_device(model)
        spec = "auto"
    if isinstance(spec, torch.device):
        if spec.type != "cuda":
            return spec
        spec = str(spec)
    if not isinstance(spec, str):
        raise TypeError(f"device must be a string such as {_DEVICES}, got {type(spec).__name__}")
    text = spec.strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        return _cuda(spec, text, local_rank)
    raise ValueError(f"device must be {_DEVICES}, got {spec!r}")


def _cuda(spec: str, text: str, local_rank: int | None) -> torch.device:
    if not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} requested but CUDA is not available here; use 'cpu' or 'auto'")
    if text == "cuda":
        return torch.device("cuda") if local_rank is None else torch.device("cuda", local_rank)
    index = int(text[5:])
    if index >= torch.cuda.device_count():
        raise ValueError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return torch.device("cuda", index)


def predict(model: nn.Module, x: torch.Tensor | Images, device: torch.device | str, batch_size: int) -> torch.Tensor:
    """The model's logits for ``x`` (float32, on the CPU), ``batch_size`` samples per forward, no grad.

    The model runs in whatever train/eval mode it is in and must already be on ``device``: the
    caller sets (and restores) both.  ``predict(...).argmax(dim=1)`` gives the predicted classes.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    outs = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            outs.append(model(x[start:start + batch_size].to(device)).float().cpu())
    if not outs:
        raise ValueError("predict needs at least one sample, got an empty x")
    return torch.cat(outs)


# --------------------------------------------------------------------------------------------
# speed options: how the model runs inside the attacks
# --------------------------------------------------------------------------------------------
AMP_CHOICES = ("off", "bf16")
SPEED_KEYS = ("amp", "channels_last", "compile", "cudnn_benchmark")


def _compile_backends() -> list[str]:
    import torch._dynamo

    return sorted(torch._dynamo.list_backends(exclude_tags=()))


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _compile_backend(value: Any) -> str | None:
    """``compile`` -> the torch.compile backend (None: off): False / "off" off, True "inductor", else a name."""
    if value is False or value is None or value == "off":
        return None
    if value is True:
        return "inductor"
    if not isinstance(value, str):
        raise ValueError(f"compile must be True, False or a torch.compile backend name, got {value!r}")
    if not callable(getattr(torch, "compile", None)):
        raise ValueError(f"compile={value!r}: this torch ({torch.__version__}) has no torch.compile; run without "
                         f"compile")
    backends = _compile_backends()
    if value not in backends:
        raise ValueError(f"compile must be True, False or a torch.compile backend ({', '.join(backends)}), "
                         f"got {value!r}")
    return value


@dataclass(frozen=True)
class SpeedOptions:
    """How the model runs inside an evaluation's attacks; every option is off by default.

    - ``amp``: ``"off"`` or ``"bf16"``: the attacks' forward and backward passes under
      ``torch.autocast(dtype=torch.bfloat16)`` (CUDA and CPU).  A native attack (``AttackInfo.toolkit
      == "native"``) runs entirely under autocast (its losses and embedding math too); a toolkit's
      attack sees only the model's forward under autocast, with float32 logits out, so the toolkit's own
      arithmetic (and its numpy conversions) stay as the toolkit wrote them.
    - ``channels_last``: the model's 4-D weights and the attacks' inputs in ``torch.channels_last``
      memory format (a layout change only; the weights are put back afterwards).
    - ``compile``: ``torch.compile`` of the model for the attack loops: False, True (the "inductor"
      backend) or a backend name; compiled on the first batch before any attack runs, so a model or a
      machine that cannot compile fails at once with one line (there is no silent fallback to eager).
      Attacks that declare ``needs_embedding`` (SI-PGD) run the model eagerly (:meth:`FastModel.eager`):
      their forward hooks on the head would not run inside a compiled graph.
    - ``cudnn_benchmark``: ``torch.backends.cudnn.benchmark = True`` during the run (restored after);
      it has no effect off CUDA (:meth:`no_effect` says so, and the report records it).

    The evaluation's verdicts never use these: clean correctness and whether an adversarial point is
    misclassified come from the model itself in float32 (eager, no autocast), so a faster attack can be
    weaker, never credited with a success the float32 model does not confirm.
    """

    amp: str = "off"
    channels_last: bool = False
    compile: bool | str = False
    cudnn_benchmark: bool = False

    def __post_init__(self) -> None:
        if self.amp not in AMP_CHOICES:
            raise ValueError(f"amp must be {' or '.join(repr(c) for c in AMP_CHOICES)}, got {self.amp!r}")
        _flag("channels_last", self.channels_last)
        _flag("cudnn_benchmark", self.cudnn_benchmark)
        backend = _compile_backend(self.compile)
        object.__setattr__(self, "compile", False if backend is None else backend)

    @property
    def any(self) -> bool:
        """Is any option on?"""
        return self != SpeedOptions()

    def to_dict(self) -> dict[str, Any]:
        """``{"amp": "off", "channels_last": False, "compile": False, "cudnn_benchmark": False}``."""
        return {key: getattr(self, key) for key in SPEED_KEYS}

    def on(self) -> list[str]:
        """The options that are on, as text: ``["amp=bf16", "channels_last"]``."""
        out = [] if self.amp == "off" else [f"amp={self.amp}"]
        out += [] if not self.channels_last else ["channels_last"]
        out += [] if not self.compile else [f"compile={self.compile}"]
        return out + ([] if not self.cudnn_benchmark else ["cudnn_benchmark"])

    def no_effect(self, device: torch.device) -> list[str]:
        """Options that are on but change nothing on ``device`` (cudnn_benchmark off CUDA)."""
        return ["cudnn_benchmark"] if self.cudnn_benchmark and device.type != "cuda" else []

    def autocast(self, device: torch.device) -> Any:
        """The autocast context of ``amp`` on ``device`` (a no-op context when amp is off)."""
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.amp == "bf16")


class FastModel(nn.Module):
    """``model`` as the attacks see it under :class:`SpeedOptions`: the input in channels_last, the forward
    (of the compiled model, with compile) under bf16 autocast, float32 logits out.  It holds ``model`` as
    its child, so the model's modules, parameters and hooks are the attacks' (an embedding attack finds the
    head; the base's mode and gradient restoring reaches every parameter)."""

    _forward: Any  # the model, or its torch.compile wrapper
    _eager: FastModel | None  # the same without compile, made on first use

    def __init__(self, model: nn.Module, options: SpeedOptions, device: torch.device) -> None:
        super().__init__()
        self.model = model
        self.options = options
        self.device_type = device.type
        # not a child module (object.__setattr__): the compiled wrapper would list the model a second time
        object.__setattr__(self, "_forward", torch.compile(model, backend=str(options.compile)) if options.compile
                           else model)
        object.__setattr__(self, "_eager", None)

    def eager(self) -> FastModel:
        """The same, not compiled: for attacks that hook the model's modules (an embedding attack's hooks
        on the head), which a compiled graph would not run (torch.compile does not guard module hooks)."""
        if not self.options.compile:
            return self
        if self._eager is None:
            eager = FastModel(self.model, replace(self.options, compile=False), torch.device(self.device_type))
            object.__setattr__(self, "_eager", eager)
            return eager
        return self._eager

    def forward(self, x: torch.Tensor) -> Any:
        if self.options.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.options.amp == "bf16"):
            out = self._forward(x)
        return out.float() if isinstance(out, torch.Tensor) and out.is_floating_point() else out


def _to_channels_last(model: nn.Module) -> list[tuple[nn.Module, str, torch.Tensor, bool]]:
    """Put the model's 4-D floating-point parameters and buffers in channels_last; what to put back."""
    saved = []
    for module in model.modules():
        for kind, tensors in ((True, module._parameters), (False, module._buffers)):
            for name, tensor in tensors.items():
                if tensor is None or tensor.dim() != 4 or not tensor.is_floating_point():
                    continue
                if kind:
                    saved.append((module, name, tensor.data, True))
                    tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
                else:
                    saved.append((module, name, tensor, False))
                    module._buffers[name] = tensor.contiguous(memory_format=torch.channels_last)
    return saved


def _put_back(saved: list[tuple[nn.Module, str, torch.Tensor, bool]]) -> None:
    for module, name, tensor, is_param in saved:
        if is_param:
            param = module._parameters[name]
            if param is not None:
                param.data = tensor
        else:
            module._buffers[name] = tensor


def _first_sentence(exc: BaseException, width: int = 160) -> str:
    text = " ".join(str(exc).split()).split(". ")[0].rstrip(".")
    return (text if len(text) <= width else text[: width - 3] + "...") or type(exc).__name__


def _compile_now(fast: FastModel, example: torch.Tensor, options: SpeedOptions) -> None:
    """Compile on ``example`` as the attacks will call it (a forward with an input gradient, and one
    without); a failure is one line naming the option."""
    x = example.detach().clone().requires_grad_(True)
    frozen = [(p, p.requires_grad) for p in fast.parameters()]
    try:
        for p, _ in frozen:  # as the attacks run it (the Attack base freezes the parameters): no recompile
            p.requires_grad_(False)
        with torch.enable_grad():
            torch.autograd.grad(fast(x).float().sum(), x)
        with torch.no_grad():
            fast(example[:1])
    except Exception as exc:  # the backend's own errors (no compiler, an unsupported op): one line
        raise UserError(f"compile={options.compile!r}: torch.compile could not compile the model "
                        f"({type(exc).__name__}: {_first_sentence(exc)}); run without compile") from exc
    finally:
        for p, requires_grad in frozen:
            p.requires_grad_(requires_grad)


@contextmanager
def fast_model(model: nn.Module, device: torch.device, options: SpeedOptions,
               example: torch.Tensor | None = None) -> Iterator[nn.Module]:
    """The model the attacks run (a :class:`FastModel`, or ``model`` itself with every option off) while
    in the block: weights in channels_last, ``cudnn.benchmark`` set (both restored at the end, also on an
    error), compiled on ``example`` (a batch on ``device`` as the attacks get them) before it is handed out.
    ``model`` must already be on ``device``."""
    if not options.any:
        yield model
        return
    benchmark = torch.backends.cudnn.benchmark
    saved: list[tuple[nn.Module, str, torch.Tensor, bool]] = []
    try:
        if options.cudnn_benchmark and device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if options.channels_last:
            saved = _to_channels_last(model)
        fast = FastModel(model, options, device)
        if options.compile and example is not None:
            _compile_now(fast, example, options)
        yield fast
    finally:
        torch.backends.cudnn.benchmark = benchmark
        _put_back(saved)
