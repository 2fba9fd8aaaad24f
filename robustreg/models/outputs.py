"""A model whose forward returns more than logits, reduced to its logits at the boundary.

robustreg runs models that return logits N x K.  A model returning a dict, a tuple or a Hugging Face
``ImageClassifierOutput`` gets one of:

- a Hugging Face-style output (any object with a tensor ``.logits``; duck-typed, so transformers is not
  needed): its ``.logits``, automatically;
- a selector (``--output KEY|INDEX`` on the command line, ``output=`` in Python): a dict key or a
  tuple/list index (a ModelOutput takes either);
- anything else: refused, the message naming ``--output`` / ``output=``.

:func:`logits_model` wraps the model in :class:`LogitsOf` only when that is needed, so a model returning
logits is run (and fingerprinted) as it is; the selector is part of the wrapper's state, so two runs that
pick different outputs never share a saved state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import UserError

__all__ = ["FLAG", "LogitsOf", "describe_output", "logits_model", "output_on", "parse_selector", "select_logits"]

#: how the selector is named in messages
FLAG = "--output KEY|INDEX (output= in Python)"


def parse_selector(text: str | int | None) -> str | int | None:
    """``--output`` text as a selector: an int index for ``"0"`` / ``"-1"``, else the dict key."""
    if text is None or isinstance(text, int):
        return text
    stripped = text.strip()
    if not stripped:
        raise UserError(f"--output must be a dict key or a tuple index, got {text!r}")
    return int(stripped) if stripped.lstrip("-").isdigit() else stripped


def describe_output(out: Any) -> str:
    """``"dict (keys: logits, features)"``, ``"tuple of 2"``, ``"Output (keys: logits)"``, ``"str"``."""
    if isinstance(out, dict):
        return f"{type(out).__name__} (keys: {', '.join(map(str, out.keys())) or 'none'})"
    if isinstance(out, (tuple, list)):
        return f"{type(out).__name__} of {len(out)}"
    return type(out).__name__


def _hf_logits(out: Any) -> torch.Tensor | None:
    logits = getattr(out, "logits", None)
    return logits if isinstance(logits, torch.Tensor) else None


def select_logits(out: Any, selector: str | int | None) -> torch.Tensor:
    """The logits in a model's output: the output itself (a tensor, no selector), ``.logits`` (no selector),
    ``out[selector]`` (a dict key or a tuple index); else a :class:`~robustreg.UserError` naming the flag."""
    if selector is None:
        if isinstance(out, torch.Tensor):
            return out
        logits = _hf_logits(out)
        if logits is not None:
            return logits
        raise UserError(f"the model returned a {describe_output(out)}, not a tensor of logits N x K; pick the "
                        f"logits with {FLAG}")
    if isinstance(out, torch.Tensor):
        raise UserError(f"output={selector!r} was given but the model returns a tensor; leave {FLAG} out")
    try:
        picked = out[selector]
    except (KeyError, IndexError, TypeError):
        raise UserError(f"output={selector!r}: the model returned a {describe_output(out)}, which has no "
                        f"{'index' if isinstance(selector, int) else 'key'} {selector!r}; pick another with "
                        f"{FLAG}") from None
    if not isinstance(picked, torch.Tensor):
        raise UserError(f"output={selector!r} picks a {describe_output(picked)} from the model's output, not a "
                        f"tensor of logits; pick another with {FLAG}")
    return picked


class LogitsOf(nn.Module):
    """``model`` with its output reduced to logits (:func:`select_logits` with ``selector``)."""

    def __init__(self, model: nn.Module, selector: str | int | None) -> None:
        super().__init__()
        self.model = model
        self.selector = selector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return select_logits(self.model(x), self.selector)

    def get_extra_state(self) -> torch.Tensor:
        # in the state dict, so the model's fingerprint (and a saved state's identity) tells selectors apart
        return torch.tensor(list(repr(self.selector).encode()), dtype=torch.uint8)

    def set_extra_state(self, state: Any) -> None:
        """The selector is given to the constructor; a loaded state carries nothing else."""

    def extra_repr(self) -> str:
        return f"output={'.logits' if self.selector is None else repr(self.selector)}"


def output_on(model: nn.Module, example: torch.Tensor) -> Any:
    """The model's output on ``example`` (eval mode, no grad; its modes restored); None if the forward raises
    (the probe that follows reports that with the model's own file and line)."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            return model(example)
    except Exception:
        return None
    finally:
        for module, training in modes:
            module.training = training


def logits_model(model: nn.Module, output: str | int | None, example: torch.Tensor) -> nn.Module:
    """``model`` as the run uses it: itself when it returns logits (or its output is refused later, by the
    probe, naming the flag); :class:`LogitsOf` when ``output`` picks a dict key or tuple index, or, without
    ``output``, when its output on ``example`` (one sample on the model's device) has a tensor ``.logits``."""
    selector = parse_selector(output)
    if isinstance(model, LogitsOf):
        return model
    if selector is not None:
        return LogitsOf(model, selector)
    out = output_on(model, example)
    if out is not None and not isinstance(out, torch.Tensor) and _hf_logits(out) is not None:
        return LogitsOf(model, None)
    return model
