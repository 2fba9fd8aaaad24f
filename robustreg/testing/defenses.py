"""The defense conformance kit: :func:`check_defense` runs one training step's contract on a tiny model.

What is checked, and why it can be checked for any defense:

- **modes and requires_grad**: the model is put in a mixed state first (train mode, its first child in
  eval mode, its first parameter frozen); after ``defense.loss`` every module's mode and every
  parameter's ``requires_grad`` must be as before (crafting must restore what it changes).
- **BatchNorm statistics** (a defense that ``crafts_with_batch_statistics``, as fast AT's and GradAlign's
  authors do, may update them while crafting; its statistics must still equal a replay of its own
  train-mode forwards): only a train-mode BatchNorm forward updates running statistics, and the
  ones a defense may run are its *outer* forwards, those of its objective.  Where the defense has
  ``adversarial(model, x, y, step=)`` (its crafting on its own) that is run on a train-mode model and
  must leave every buffer untouched.  During ``loss``, a train-mode BatchNorm forward with the
  parameters frozen is crafting (``robustreg.crafting`` and the Attack base freeze them) and refused;
  for a defense without ``adversarial`` every train-mode forward must moreover be part of the loss's
  autograd graph (a crafting forward is not: its result is detached into x_adv).  An objective may
  read a detached train-mode forward (GradAlign's clean-input gradient), which is why that rule is not
  applied where crafting can be checked apart.  Finally the running statistics after ``loss`` must
  equal a replay of exactly the recorded train-mode forwards (nothing else writes to them).
- **loss and gradients**: ``loss`` returns a DefenseOutput with a finite scalar loss and float
  metrics; after ``backward()`` every parameter that requires grad has a finite ``.grad`` (except the
  final layer's bias when the defense's :meth:`~robustreg.Defense.head` drops it, as HE's cosine head
  does), and the frozen one has none.
- **state**: ``state_dict()`` after a step loads into a fresh defense (``load_state_dict``), which
  then returns the same state; the caller's x and y are untouched.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..defense import Defense, DefenseOutput
from ..embedding import head_of
from ..registry.specs import DefenseSpec
from .models import tiny_batch, tiny_model

__all__ = ["check_defense"]


def _builder(defense: Any, params: Mapping[str, Any] | None) -> tuple[Callable[[], Defense], str]:
    """A no-argument builder of the defense (a spec builds with its registered defaults) and its name."""
    if isinstance(defense, Defense):
        raise TypeError(f"pass the defense's class, factory or DefenseSpec, not a built {type(defense).__name__}: "
                        "check_defense builds fresh ones (for the state round trip)")
    if isinstance(defense, DefenseSpec):
        declared = defense.params
        kept = {k: v for k, v in (params or {}).items() if k in declared}
        return (lambda: defense.build(**kept)), defense.name
    if isinstance(defense, type) and issubclass(defense, Defense):
        declared_cls = defense.declaration()
        kept = {k: v for k, v in (params or {}).items() if k in declared_cls}
        return (lambda: defense(**kept)), defense.label()
    if callable(defense):
        given = dict(params or {})
        return (lambda: defense(**given)), getattr(defense, "__name__", repr(defense))
    raise TypeError(f"defense must be a DefenseSpec, a Defense subclass or a factory, got {type(defense).__name__}")


# --- BatchNorm: which forwards ran in train mode, and are they the loss's -----------------------------
class _BatchNormWatch:
    """Records every train-mode forward of the model's BatchNorm layers (input and output)."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = {name: m for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
        self.before = {name: copy.deepcopy(m) for name, m in self.layers.items()}
        self.calls: list[tuple[str, torch.Tensor, torch.Tensor, bool]] = []
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in self.layers.items()]

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if module.training and isinstance(output, torch.Tensor):
                weight = getattr(module, "weight", None)
                frozen = isinstance(weight, torch.Tensor) and not weight.requires_grad
                self.calls.append((name, inputs[0].detach().clone(), output, frozen))
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def problem(self, loss: torch.Tensor, strict: bool, train_crafting: bool = False) -> str | None:
        """``strict``: every train-mode forward must be part of the loss (for a defense without
        ``adversarial``, whose crafting cannot be run apart); else only frozen-parameter ones are refused,
        and not even those for a defense that ``crafts_with_batch_statistics`` (``train_crafting``)."""
        reachable = _graph_nodes(loss)
        for name, _, output, frozen in self.calls:
            if frozen and not train_crafting:
                return (f"BatchNorm {name!r} ran a train-mode forward with its parameters frozen (crafting in train "
                        "mode updates the running statistics; craft in eval mode: robustreg.crafting)")
            if strict and (output.grad_fn is None or output.grad_fn not in reachable):
                return (f"BatchNorm {name!r} ran a train-mode forward that is not part of the loss (crafting in "
                        "train mode, or under no_grad, updates the running statistics; craft in eval mode: "
                        "robustreg.crafting)")
        replay = {name: copy.deepcopy(m).train() for name, m in self.before.items()}
        with torch.no_grad():
            for name, inp, _, _ in self.calls:
                replay[name](inp)
        for name, layer in self.layers.items():
            for buf in ("running_mean", "running_var", "num_batches_tracked"):
                now, want = getattr(layer, buf, None), getattr(replay[name], buf, None)
                if isinstance(now, torch.Tensor) and isinstance(want, torch.Tensor) and \
                        not torch.allclose(now.double(), want.double(), rtol=1e-5, atol=1e-6):
                    return (f"BatchNorm {name!r} {buf} changed other than by the defense's own train-mode "
                            "forwards")
        return None


def _graph_nodes(loss: torch.Tensor) -> set[Any]:
    seen: set[Any] = set()
    stack = [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return seen


# --- the pieces of the check ---------------------------------------------------------------------
def _mixed_state(model: nn.Module) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    model.train()
    children = list(model.children())
    if children:
        children[0].eval()
    for i, p in enumerate(model.parameters()):
        p.grad = None
        p.requires_grad_(i != 0)
    return ([(n, m.training) for n, m in model.named_modules()],
            [(n, p.requires_grad) for n, p in model.named_parameters()])


def _restored_problem(model: nn.Module, modes: list[tuple[str, bool]], grads: list[tuple[str, bool]]) -> str | None:
    for (name, was), (_, m) in zip(modes, model.named_modules()):
        if m.training != was:
            return f"module {name or '<root>'!r} training={m.training} after loss(), was {was}"
    for (name, was), (_, p) in zip(grads, model.named_parameters()):
        if p.requires_grad != was:
            return f"parameter {name!r} requires_grad={p.requires_grad} after loss(), was {was}"
    return None


def _output_problem(out: Any) -> str | None:
    if not isinstance(out, DefenseOutput):
        return f"loss() returned {type(out).__name__}, not a robustreg.DefenseOutput"
    loss = out.loss
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        return f"the loss must be a scalar tensor, got {getattr(loss, 'shape', type(loss).__name__)}"
    if not bool(torch.isfinite(loss)):
        return f"the loss is not finite ({float(loss)})"
    if loss.grad_fn is None:
        return "the loss has no autograd graph: no gradient can reach the parameters"
    for key, value in out.metrics.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isinf(float(value)):
            return f"metrics[{key!r}] must be a finite float, got {value!r}"
    return None


def _unused_head_bias(defense: Defense, model: nn.Module) -> set[int]:
    """The final layer's bias when the defense predicts with a head that drops it (HE's ``s * cos(theta)``)."""
    head = defense.head() if callable(getattr(defense, "head", None)) else None
    if head is None or getattr(head, "kind", "linear") == "linear" or getattr(head, "bias", False):
        return set()
    bias = head_of(model)[1].bias
    return {id(bias)} if bias is not None else set()


def _gradient_problem(model: nn.Module, loss: torch.Tensor, unused: set[int]) -> str | None:
    loss.backward()
    for name, p in model.named_parameters():
        if id(p) in unused:
            continue
        if p.requires_grad and (p.grad is None or not bool(torch.isfinite(p.grad).all())):
            what = "no .grad" if p.grad is None else "a non-finite .grad"
            return f"trainable parameter {name!r} got {what} from loss.backward()"
        if not p.requires_grad and p.grad is not None:
            return f"frozen parameter {name!r} got a .grad"
    return None


def _same_state(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and \
            torch.equal(a.cpu(), b.cpu())
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return set(a) == set(b) and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_state(u, v) for u, v in zip(a, b))
    return bool(a == b)


def _state_problem(build: Callable[[], Defense], defense: Defense) -> str | None:
    state = defense.state_dict()
    if not isinstance(state, dict):
        return f"state_dict() returned {type(state).__name__}, not a dict"
    fresh = build()
    fresh.load_state_dict(copy.deepcopy(state))
    if not _same_state(fresh.state_dict(), state):
        return "a fresh defense given load_state_dict(state_dict()) returns a different state_dict()"
    defense.load_state_dict(state)
    return None


def _crafting_problem(defense: Defense, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> str | None:
    """``defense.adversarial(model, x, y[, step=0])`` (where it has one) on a train-mode model leaves modes and
    buffers untouched and returns x's shape (or a tuple starting with it)."""
    craft = getattr(defense, "adversarial", None)
    if not callable(craft):
        return None
    modes, grads = _mixed_state(model)
    buffers = [(name, b.detach().clone()) for name, b in model.named_buffers()]
    takes_step = "step" in inspect.signature(craft).parameters
    x_adv = craft(model, x, y, step=0) if takes_step else craft(model, x, y)
    if isinstance(x_adv, tuple):  # (x_adv, what it drew), e.g. the paper-000 defenses' per-sample eps
        x_adv = x_adv[0]
    problem = _restored_problem(model, modes, grads)
    if problem:
        return f"adversarial(): {problem}"
    for (name, before), (_, after) in zip(buffers, model.named_buffers()):
        if not torch.equal(before, after) and not getattr(defense, "crafts_with_batch_statistics", False):
            return f"adversarial() changed buffer {name!r} (crafting in train mode updates BatchNorm statistics)"
    if not isinstance(x_adv, torch.Tensor) or x_adv.shape != x.shape:
        return f"adversarial() returned {getattr(x_adv, 'shape', type(x_adv).__name__)}, expected {tuple(x.shape)}"
    return None


def _step(defense: Defense, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[str]:
    """One watched ``loss`` + ``backward``; the problems found, in order."""
    modes, grads = _mixed_state(model)
    x_copy, y_copy = x.clone(), y.clone()
    watch = _BatchNormWatch(model)
    try:
        out = defense.loss(model, x, y, step=0)
    finally:
        watch.remove()
    problems = [_restored_problem(model, modes, grads), _output_problem(out)]
    if problems[1] is None:
        strict = not callable(getattr(defense, "adversarial", None))
        unused = _unused_head_bias(defense, model)
        train_crafting = bool(getattr(defense, "crafts_with_batch_statistics", False))
        problems += [watch.problem(out.loss, strict, train_crafting), _gradient_problem(model, out.loss, unused)]
    if not torch.equal(x, x_copy) or not torch.equal(y, y_copy):
        problems.append("loss() changed the caller's x or y")
    return [p for p in problems if p]


def check_defense(
    defense: Any,
    model: nn.Module | None = None,
    x: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    params: Mapping[str, Any] | None = None,
) -> None:
    """Run one training step of ``defense`` and raise one AssertionError listing every broken part of the contract.

    ``defense``: a :class:`~robustreg.DefenseSpec` (built as the registry builds it: registered defaults
    applied, ``params`` validated against its declaration), a Defense subclass or a factory.  ``params``
    keys the defense does not declare are dropped (one set of small budgets, e.g. ``steps=1``, fits all).
    ``model``, ``x``, ``y`` default to :func:`tiny_model` and :func:`tiny_batch`; the model's modes,
    ``requires_grad`` and ``.grad`` are put back as the caller had them.  See the module docstring for
    what is checked.
    """
    build, name = _builder(defense, params)
    if model is None:
        model = tiny_model()
    if x is None or y is None:
        x, y = tiny_batch()
    original = ([(m, m.training) for m in model.modules()], [(p, p.requires_grad, p.grad) for p in model.parameters()])
    try:
        problems = [p for p in [_crafting_problem(build(), model, x, y)] if p]
        built = build()
        problems += _step(built, model, x, y)
        problems += [p for p in [_state_problem(build, built)] if p]
    except Exception as exc:  # a crash is a failure of the check, reported with its text
        problems = [f"raised {type(exc).__name__}: {exc}"]
    finally:
        for module, training in original[0]:
            module.training = training
        for p, rg, grad in original[1]:
            p.requires_grad_(rg)
            p.grad = grad
    if problems:
        raise AssertionError(f"{name} failed {len(problems)} defense check(s):\n  " + "\n  ".join(problems))
