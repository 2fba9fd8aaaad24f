"""A robustbench checkpoint, in any of the zoo's layouts, as the state dict of the entry's architecture.

The layouts robustbench's ``load_model`` reads (robustbench 1.1.1, ``utils.py``):

- a plain state dict (``Standard``);
- one nested under ``"state_dict"``, its keys prefixed by DataParallel's ``module.``
  (``Carmon2019Unlabeled``, whose WideResNet also has the extra ``sub_block1``: its keys load as they are);
- a ``model.`` prefix (``Chen2020Efficient``), removed; ImageNet entries whose architecture wraps the
  network as ``model`` (a normalisation in front) get it back;
- ``"last"`` holding the state dict (``Kireev2021Effectiveness_*``, ``Andriushchenko2020Understanding``);
- no normalisation buffers (``Rice2020Overfitting``, ``Wong2020Fast``: ``mu`` / ``sigma``; others
  ``mean`` / ``std``, ``normalize.mean`` / ``normalize.std``): the architecture's own values stay, as in
  robustbench, which loads those entries with ``strict=False``.

Anything else missing, unexpected or of another shape is refused in one line naming the keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

import robustreg

__all__ = ["load_checkpoint", "state_dict_for"]

_NORMALISATION = ("mu", "sigma", "mean", "std")
# unexpected keys robustbench's _safe_load_state_dict tolerates for its known failing entries
_TOLERATED_UNEXPECTED = ("model_preact_hl1.",)
_TOLERATED_SUFFIX = (".scores",)


def _strip(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {(key[len(prefix):] if key.startswith(prefix) else key): value for key, value in state.items()}


def state_dict_for(model: nn.Module, checkpoint: Any, name: str) -> dict[str, Any]:
    """The state dict in ``checkpoint`` (any layout above), keyed like ``model``'s own."""
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("last"), Mapping):
        checkpoint = checkpoint["last"]
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, Mapping) or not all(isinstance(k, str) for k in checkpoint):
        raise robustreg.UserError(f"robustbench:{name}: the checkpoint holds {type(checkpoint).__name__}, not a "
                                  "state dict (a mapping of parameter names, possibly under 'state_dict')")
    state = _strip(_strip(checkpoint, "module."), "model.")
    own = model.state_dict()
    if not any(k in own for k in state) and any("model." + k in own for k in state):
        state = {"model." + key: value for key, value in state.items()}
    return state


def load_checkpoint(model: nn.Module, path: str, name: str) -> nn.Module:
    """``model`` with the weights of the robustbench checkpoint file ``path`` (read with ``weights_only``)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise robustreg.UserError(f"robustbench:{name}: cannot read the checkpoint {path!r} "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    state = state_dict_for(model, checkpoint, name)
    buffers = {key for key, _ in model.named_buffers()}
    own = model.state_dict()
    missing = [k for k in own if k not in state and not (k in buffers and k.rsplit(".", 1)[-1] in _NORMALISATION)]
    unexpected = [k for k in state if k not in own and not k.startswith(_TOLERATED_UNEXPECTED)
                  and not k.endswith(_TOLERATED_SUFFIX)]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in state
              if k in own and hasattr(state[k], "shape") and state[k].shape != own[k].shape]
    problems = [f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''} ({len(keys)})"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("other shape", shapes))
                if keys]
    if problems:
        raise robustreg.UserError(f"robustbench:{name}: the checkpoint {path!r} does not fit the entry's "
                                  f"architecture; {'; '.join(problems)}")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return model
