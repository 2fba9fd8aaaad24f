"""Robustness evaluation: a grid of attacks x eps on one model and one dataset -> one report.

:func:`evaluate` runs every attack at every eps on the clean-correct points, decides for each sample
whether it was broken by running the model on the adversarial example itself (never trusting the
attack), and returns a report dict (see :data:`REPORT_SCHEMA_VERSION` and :func:`evaluate`).  Long
runs save their state after every batch and resume where they stopped; a state written for another
configuration is refused.

The numbers, for ``n`` evaluated samples:

- ``clean_accuracy``: fraction of the n samples the model classifies correctly.
- ``mode="cascade"`` (``early_exit=True``, AutoAttack-style): at each eps, each attack runs only on
  the points still standing (clean-correct and not broken by an earlier attack in the list at this
  eps).  An attack's ``robust_accuracy`` is therefore *cumulative*: the fraction of the n samples
  that are clean-correct and survived this attack and every earlier one.  The last attack's number
  equals the worst case.
- ``mode="independent"`` (``early_exit=False``): every attack runs on all clean-correct points, and its
  ``robust_accuracy`` is standalone: the fraction of the n samples that are clean-correct and not
  broken by this attack.
- ``worst_case[eps].robust_accuracy``: fraction of the n samples correct under every attack at that
  eps (the per-sample minimum), in both modes.
- ``worst_case[eps].broken_only_by[label]``: how many points this attack broke that every earlier
  attack in the list left standing (in cascade mode, all the points it broke).  This is how a report
  shows that an attack broke points that, say, AutoAttack before it left standing.  In independent
  mode ``broken_uniquely_by[label]`` also counts the points broken by this attack and no other.

Per result, ``extras`` holds each ``AttackResult.extras`` entry reduced over the attacked points:
per-sample tensors are averaged; scalars are averaged over batches weighted by batch size, except
names starting with ``seconds`` (summed); scalar extras are also copied to the top level of the
entry (RayS' ``adbd``).  ``queries`` is the mean per attacked image.

Example::

    from robustreg.data import load_data
    from robustreg.evaluation import evaluate
    from robustreg.models import build_model

    model = build_model("digits-cnn-pretrained")
    report = evaluate(model, load_data("digits"), ["fgsm", ("pgd", {"steps": 20})], [0.05, 0.1], out="out/")
    print(report["worst_case"])
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .attack import Attack, AttackError, AttackResult, ModelState
from .files import save_atomic
from .threat import ThreatModel

__all__ = ["REPORT_SCHEMA_VERSION", "AttackPlan", "evaluate", "model_fingerprint", "data_fingerprint"]

REPORT_SCHEMA_VERSION = 1
STATE_VERSION = 1
_SUMMED_SCALAR_PREFIX = "seconds"  # scalar extras named seconds* are summed over batches, others averaged


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttackPlan:
    """One attack of the grid: its registry name, its parameters and the label used in the report."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str = ""


def _plans(attacks: Sequence[Any], params: Mapping[str, Mapping[str, Any]] | None) -> list[AttackPlan]:
    if isinstance(attacks, (str, bytes)) or not isinstance(attacks, Sequence) or len(attacks) == 0:
        raise ValueError(f"attacks must be a non-empty list of names or (name, params) pairs, got {attacks!r}")
    extra = dict(params or {})
    plans = []
    for item in attacks:
        if isinstance(item, str):
            name, own = item, {}
        elif isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str) \
                and isinstance(item[1], Mapping):
            name, own = item[0], dict(item[1])
        else:
            raise ValueError(f"attacks entries must be a name or a (name, params dict) pair, got {item!r}")
        merged = {**dict(extra.get(name, {})), **own}
        plans.append(AttackPlan(name, merged))
    unknown = set(extra) - {p.name for p in plans}
    if unknown:
        raise ValueError(f"params given for attack(s) not in the list: {', '.join(sorted(unknown))}")
    counts: dict[str, int] = {}
    out = []
    for plan in plans:
        counts[plan.name] = counts.get(plan.name, 0) + 1
        label = plan.name if counts[plan.name] == 1 else f"{plan.name}#{counts[plan.name]}"
        out.append(AttackPlan(plan.name, plan.params, label))
    return out


def _eps_list(eps: Any, norm: str) -> list[float]:
    values = [eps] if isinstance(eps, (int, float)) else list(eps)
    if not values:
        raise ValueError("eps must hold at least one value")
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"eps values must be numbers (use robustreg.parse_eps for '8/255'), got {value!r}")
        out.append(ThreatModel(norm, float(value)).eps)  # validates range for the norm
    return sorted(set(out))


def first_samples(data: Any, n: int | None) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(x float [0,1], y int64, data description) of the first n samples."""
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(f"data must be a LabeledData or an (x, y) pair, got a sequence of {len(data)}")
        x, y = data
        size = int(x.shape[0])
        info: dict[str, Any] = {"name": "tensors"}
    elif hasattr(data, "tensors") and hasattr(data, "__len__"):
        size = len(data)
        info = {"name": getattr(data, "name", type(data).__name__)}
        num_classes = getattr(data, "num_classes", None)
        if num_classes is not None:
            info["num_classes"] = int(num_classes)
        x = y = None
    else:
        raise TypeError(f"data must be a robustreg.data.LabeledData or an (x, y) pair, got {type(data).__name__}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    if n is not None and n > size:
        raise ValueError(f"n={n} is larger than the dataset ({size} samples)")
    count = size if n is None else n
    if x is None:
        x, y = data.tensors(count)
    else:
        x, y = x[:count], y[:count]
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"data x must be a float tensor in [0, 1], got {getattr(x, 'dtype', type(x).__name__)}")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != (x.shape[0],):
        raise TypeError(f"data y must be an int64 tensor of shape ({x.shape[0]},), got "
                        f"{getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}")
    if float(x.min()) < 0 or float(x.max()) > 1:
        raise ValueError(f"data x must be in [0, 1], got values in [{float(x.min()):.4g}, {float(x.max()):.4g}]")
    info["size"] = size
    return x, y, info


# --------------------------------------------------------------------------------------------
# identities (for the state file and the report)
# --------------------------------------------------------------------------------------------
def model_fingerprint(model: nn.Module) -> str:
    """sha256 (first 16 hex digits) of the model's class and its state dict (names, shapes, values)."""
    h = hashlib.sha256(type(model).__name__.encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        t = tensor.detach().to("cpu").contiguous()
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def data_fingerprint(x: torch.Tensor, y: torch.Tensor) -> str:
    """sha256 (first 16 hex digits) of the sample count, every label and the first 64 images."""
    h = hashlib.sha256(str(tuple(x.shape)).encode())
    h.update(y.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
    h.update(x[:64].detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _canonical(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=repr)


# --------------------------------------------------------------------------------------------
# per-sample records of one (eps, attack) cell
# --------------------------------------------------------------------------------------------
def _new_cell(n: int) -> dict[str, Any]:
    return {
        "ran": torch.zeros(n, dtype=torch.bool),
        "broken": torch.zeros(n, dtype=torch.bool),
        "distance": torch.full((n,), float("nan")),
        "queries": None,  # float tensor n once an attack reports queries
        "extras": {},  # name -> float tensor n (NaN where the attack did not run)
        "scalars": {},  # name -> [sum of value*weight, sum of weights]
        "nan": 0,
        "seconds": 0.0,
        "chunks_done": 0,
        "done": False,
    }


def _record(cell: dict[str, Any], idx: torch.Tensor, broken: torch.Tensor, dist: torch.Tensor,
            result: AttackResult, nan_count: int, seconds: float) -> None:
    n = cell["ran"].shape[0]
    cell["ran"][idx] = True
    cell["broken"][idx] = broken
    cell["distance"][idx] = dist
    cell["nan"] += nan_count
    cell["seconds"] += seconds
    if result.queries is not None:
        q = torch.as_tensor(result.queries).detach().to("cpu", torch.float64).reshape(-1)
        if q.numel() == 1:
            q = q.expand(idx.numel())
        if q.numel() == idx.numel():
            if cell["queries"] is None:
                cell["queries"] = torch.full((n,), float("nan"), dtype=torch.float64)
            cell["queries"][idx] = q
    for key, value in result.extras.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == idx.numel():
            per = value.detach().to("cpu", torch.float64).reshape(idx.numel(), -1).mean(dim=1)
            store = cell["extras"].setdefault(str(key), torch.full((n,), float("nan"), dtype=torch.float64))
            store[idx] = per
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue  # non-numeric extras (e.g. a log string) are not reported
            acc = cell["scalars"].setdefault(str(key), [0.0, 0.0])
            weight = 1.0 if str(key).startswith(_SUMMED_SCALAR_PREFIX) else float(idx.numel())
            acc[0] += number * weight
            acc[1] += weight


# --------------------------------------------------------------------------------------------
# state file
# --------------------------------------------------------------------------------------------
def _load_state(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise ValueError(f"state file {path} is not a robustreg evaluation state (version {STATE_VERSION}); "
                         f"delete it or choose another --out/--state to start fresh")
    saved = state.get("fingerprint", {})
    for key in fingerprint:
        if saved.get(key) != fingerprint[key]:
            raise ValueError(
                f"state file {path} was written for a different configuration: {key} differs "
                f"(saved {saved.get(key)!r}, now {fingerprint[key]!r}); delete {path} or use another "
                f"--out/--state to start fresh"
            )
    return state


# --------------------------------------------------------------------------------------------
# model helpers
# --------------------------------------------------------------------------------------------
def _model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _resolve_device(device: str | torch.device | None, model: nn.Module) -> torch.device:
    if device is None:
        return _model_device(model)
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available; use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device must be cpu, cuda, cuda:N or auto, got {device!r}") from exc


def _predict(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
    """Logits of x in eval mode, batched, no grad (model modes restored by the caller)."""
    outs = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            outs.append(model(x[start:start + batch_size].to(device)).float().cpu())
    return torch.cat(outs)


def _sanity_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor,
                   device: torch.device) -> None:
    """AutoAttack-style warnings: probabilities instead of logits; zero input gradients."""
    if logits.dim() != 2:
        raise ValueError(f"model must return logits of shape N x K, got shape {tuple(logits.shape)}")
    if bool(((logits >= 0) & (logits <= 1)).all()) and torch.allclose(
            logits.sum(dim=1), torch.ones(logits.shape[0]), atol=1e-4):
        warnings.warn("the model's outputs look like probabilities (rows in [0, 1] summing to 1), not logits; "
                      "gradient attacks on a softmax output are weakened (vanishing gradients), so remove the "
                      "final softmax for a reliable evaluation", stacklevel=3)
    xs, ys = x[:32].to(device).clone().requires_grad_(True), y[:32].to(device)
    with torch.enable_grad():
        loss = nn.functional.cross_entropy(model(xs).float(), ys, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xs, allow_unused=True)
    if grad is None:
        zero = xs.shape[0]
    else:
        zero = int((grad.reshape(grad.shape[0], -1).abs().amax(dim=1) == 0).sum())
    if zero > 0 and zero >= 0.1 * xs.shape[0]:
        warnings.warn(f"the loss gradient w.r.t. the input is exactly zero for {zero} of {xs.shape[0]} clean "
                      "points; gradient-based attacks cannot move them (gradient masking or saturated softmax), "
                      "so add a score- or decision-based attack before trusting the robust accuracy", stacklevel=3)


# --------------------------------------------------------------------------------------------
# the evaluation
# --------------------------------------------------------------------------------------------
@dataclass
class _Run:
    """Everything one evaluate() call works with; the state dict is what gets saved."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    plans: list[AttackPlan]
    eps: list[float]
    norm: str
    batch_size: int
    device: torch.device
    seed: int | None
    early_exit: bool
    registry: Any
    state: dict[str, Any]
    state_path: Path | None

    def cell(self, e: int, a: int) -> dict[str, Any]:
        return self.state["cells"].setdefault(f"{e}:{a}", _new_cell(self.x.shape[0]))

    def to_attack(self, e: int, a: int) -> torch.Tensor:
        """Indices this attack runs on: clean-correct, and in cascade mode not broken earlier at this eps."""
        standing = self.state["clean_correct"].clone()
        if self.early_exit:
            for earlier in range(a):
                standing &= ~self.cell(e, earlier)["broken"]
        return standing.nonzero().flatten()

    def save(self) -> None:
        if self.state_path is not None:
            save_atomic(self.state, self.state_path)


def _attack_params(registry: Any, plan: AttackPlan, seed: int | None) -> dict[str, Any]:
    """The parameters the attack is built with: the registry's defaults, then the plan's, then the seed."""
    params = {**dict(registry.attack(plan.name).defaults), **plan.params}
    if "seed" not in params:
        params["seed"] = seed
    return params


def _build(registry: Any, plan: AttackPlan, norm: str, eps: float, seed: int | None) -> Attack:
    params = _attack_params(registry, plan, seed)
    try:
        attack = registry.build_attack(plan.name, ThreatModel(norm, eps), **params)
    except TypeError as exc:
        raise TypeError(f"attack {plan.name!r} rejected its parameters {plan.params!r}: {exc}") from exc
    if not isinstance(attack, Attack):
        raise TypeError(f"the factory of attack {plan.name!r} returned {type(attack).__name__}, not an Attack")
    return attack


def _run_cell(run: _Run, e: int, a: int, bar: Any) -> None:
    cell = run.cell(e, a)
    if cell["done"]:
        return
    idx_all = run.to_attack(e, a)
    chunks = list(torch.split(idx_all, run.batch_size)) if idx_all.numel() else []
    skipped = int(run.state["clean_correct"].sum()) - idx_all.numel()
    if cell["chunks_done"] == 0 and bar is not None:
        bar.update(skipped)
    attack = None
    if len(chunks) > cell["chunks_done"]:
        attack = _build(run.registry, run.plans[a], run.norm, run.eps[e], run.seed)
    threat = ThreatModel(run.norm, run.eps[e])
    for k in range(cell["chunks_done"], len(chunks)):
        idx = chunks[k]
        x = run.x[idx].to(run.device)
        y = run.y[idx].to(run.device)
        start = time.perf_counter()
        result = attack.run(run.model, x, y)
        seconds = time.perf_counter() - start
        x_adv = result.x_adv
        if not bool(threat.contains(x_adv, x).all()):  # the base checks this too; never trust an attack
            raise AttackError(f"attack {run.plans[a].label!r} returned points outside {threat.describe()}")
        with torch.no_grad():
            logits = run.model(x_adv).float()
        nan_rows = ~torch.isfinite(logits).all(dim=1)
        broken = (logits.argmax(dim=1) != y) | nan_rows  # a NaN output is not a correct prediction
        _record(cell, idx, broken.cpu(), threat.distance(x_adv, x).float().cpu(), result,
                int(nan_rows.sum()), seconds)
        cell["chunks_done"] = k + 1
        run.save()
        if bar is not None:
            bar.update(idx.numel())
    cell["done"] = True
    run.save()
    if int(cell["nan"]):
        warnings.warn(f"attack {run.plans[a].label!r} at eps={run.eps[e]:g}: the model returned NaN logits on "
                      f"{int(cell['nan'])} adversarial points (counted as broken)", stacklevel=3)


def _mean(t: torch.Tensor, mask: torch.Tensor) -> float | None:
    values = t[mask].double()  # per-sample extras may be bool (e.g. "robust after" flags)
    values = values[~torch.isnan(values)]
    return float(values.mean()) if values.numel() else None


def _result_entry(run: _Run, e: int, a: int) -> dict[str, Any]:
    plan, cell, n = run.plans[a], run.cell(e, a), run.x.shape[0]
    spec = run.registry.attack(plan.name)
    correct = run.state["clean_correct"].clone()
    survived = correct & ~cell["broken"]
    if run.early_exit:
        for earlier in range(a):
            survived &= ~run.cell(e, earlier)["broken"]
    ran = cell["ran"]
    entry: dict[str, Any] = {
        "attack": plan.name,
        "label": plan.label,
        "eps": run.eps[e],
        "norm": run.norm,
        "params": json.loads(json.dumps(_attack_params(run.registry, plan, run.seed), default=repr)),
        "robust_accuracy": float(survived.sum()) / n,
        "attacked": int(ran.sum()),
        "broken": int(cell["broken"].sum()),
        "seconds": round(float(cell["seconds"]), 4),
        "max_perturbation": float(cell["distance"][ran].max()) if bool(ran.any()) else 0.0,
        "mean_perturbation": _mean(cell["distance"], cell["broken"]),
        "nan_detected": bool(cell["nan"]),
        "plugin": spec.plugin,
        "toolkit": spec.info.toolkit,
        "kind": spec.info.kind,
        "paper": spec.info.paper,
        "randomized": spec.info.randomized,
    }
    if cell["queries"] is not None:
        entry["queries"] = _mean(cell["queries"], ran)
    extras = {key: _mean(values, ran) for key, values in cell["extras"].items()}
    for key, (total, weight) in cell["scalars"].items():
        extras[key] = total if key.startswith(_SUMMED_SCALAR_PREFIX) else (total / weight if weight else None)
    if extras:
        entry["extras"] = extras
        # Scalar summaries an attack reports for the whole set (RayS' "adbd") also sit at the top level.
        entry.update({key: extras[key] for key in cell["scalars"] if key not in entry})
    return entry


def _worst_case_entry(run: _Run, e: int) -> dict[str, Any]:
    n = run.x.shape[0]
    correct = run.state["clean_correct"]
    broken_any = torch.zeros(n, dtype=torch.bool)
    only_by = {}
    for a, plan in enumerate(run.plans):
        broken = run.cell(e, a)["broken"] & correct
        only_by[plan.label] = int((broken & ~broken_any).sum())
        broken_any |= broken
    entry: dict[str, Any] = {
        "eps": run.eps[e],
        "robust_accuracy": float((correct & ~broken_any).sum()) / n,
        "broken_only_by": only_by,
    }
    if not run.early_exit:
        uniquely = {}
        for a, plan in enumerate(run.plans):
            others = torch.zeros(n, dtype=torch.bool)
            for b in range(len(run.plans)):
                if b != a:
                    others |= run.cell(e, b)["broken"]
            uniquely[plan.label] = int((run.cell(e, a)["broken"] & correct & ~others).sum())
        entry["broken_uniquely_by"] = uniquely
    return entry


def evaluate(
    model: nn.Module,
    data: Any,
    attacks: Sequence[str | tuple[str, Mapping[str, Any]]],
    eps: float | Sequence[float],
    *,
    norm: str = "linf",
    n: int | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = "cpu",
    seed: int | None = 0,
    early_exit: bool = True,
    out: str | os.PathLike[str] | None = None,
    state_path: str | os.PathLike[str] | None = None,
    keep_state: bool = False,
    registry: Any = None,
    progress: bool = True,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    model_info: Mapping[str, Any] | None = None,
    data_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``data`` under every attack at every eps; return the report dict.

    Args:
        model: an ``nn.Module`` taking [0, 1] images and returning logits N x K.  Its train/eval
            flags and parameters' requires_grad/.grad are restored afterwards; it is moved to
            ``device`` for the run and moved back to where it was at the end.
        data: a ``robustreg.data.LabeledData`` or an ``(x, y)`` pair (x float in [0, 1], y int64).
        attacks: registry names or ``(name, params)`` pairs, run in this order at each eps.
        eps: one eps or a list, in [0, 1] pixel units (sorted ascending in the report).
        norm: "linf", "l2" or "l1".
        n: evaluate the first n samples (default all); larger than the data -> ValueError.
        batch_size: samples per attack call and per clean forward.
        device: "cpu", "cuda", "cuda:N", "auto" or None (None: where the model is).
        seed: passed to every attack as ``seed`` (unless its params set one); None -> nondeterministic.
        early_exit: True -> cascade mode (each attack runs on the points still standing; numbers are
            cumulative); False -> independent mode (standalone numbers).  See the module docstring.
        out: folder for report.json (the source of truth), report.md, results.csv, robust_accuracy.png
            and the default state file ``state.pt``.
        state_path: where to save/resume the run's state (default ``out/state.pt`` if ``out``).  A state
            written for a different configuration raises ValueError naming the field that differs.
        keep_state: keep the state file after the run finished (default: delete it once the report is
            written; it only serves to resume an interrupted run).
        registry: a ``robustreg.Registry`` (default ``Registry.create()``).
        progress: show a tqdm bar over the attacked samples.
        params: extra parameters per attack name, ``{"pgd": {"steps": 40}}``, merged under the pair's own.
        model_info, data_info: extra descriptions copied into the report's "model" / "data" entries.

    Returns the report dict: ``clean_accuracy``, ``n``, ``norm``, ``mode``, ``eps``, ``results`` (one
    entry per eps x attack), ``worst_case`` (one per eps), ``model``, ``data``, ``created``,
    ``robustreg_version``, ``schema_version``, ``seconds``.
    """
    from . import __version__
    from .registry import Registry

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    ThreatModel(norm, 0.0)  # validates the norm
    plans = _plans(attacks, params)
    eps_values = _eps_list(eps, norm)
    x, y, dinfo = first_samples(data, n)
    registry = registry if registry is not None else Registry.create()
    run_device = _resolve_device(device, model)
    for plan in plans:  # unknown names and bad parameters fail before any work
        spec = registry.attack(plan.name)
        if norm not in spec.info.norms:
            raise ValueError(f"attack {plan.name!r} supports norm(s) {', '.join(spec.info.norms)}, got norm={norm!r}")
        _build(registry, plan, norm, eps_values[0], seed)

    fingerprint = {
        "attacks": [f"{p.name} {_canonical(p.params)}" for p in plans],
        "eps": [repr(v) for v in eps_values],
        "norm": norm,
        "n": int(x.shape[0]),
        "seed": repr(seed),
        "early_exit": bool(early_exit),
        "batch_size": int(batch_size),
        "data": data_fingerprint(x, y),
        "model": model_fingerprint(model),
    }
    out_dir = Path(out) if out is not None else None
    spath = Path(state_path) if state_path is not None else (out_dir / "state.pt" if out_dir else None)

    home = _model_device(model)
    snapshot = ModelState(model)
    started = time.perf_counter()
    try:
        model.to(run_device)
        model.eval()
        state = _load_state(spath, fingerprint) if spath is not None else None
        resumed = state is not None
        clean_logits = _predict(model, x, run_device, batch_size)
        _sanity_checks(model, x, y, clean_logits, run_device)
        if state is None:
            state = {"version": STATE_VERSION, "fingerprint": fingerprint,
                     "clean_correct": clean_logits.argmax(dim=1) == y.cpu(), "cells": {}}
        run = _Run(model, x, y, plans, eps_values, norm, batch_size, run_device, seed, early_exit, registry,
                   state, spath)
        run.save()
        bar = _progress_bar(progress, len(eps_values) * len(plans) * int(state["clean_correct"].sum()))
        try:
            if bar is not None and resumed:
                bar.update(_done_work(run))
            for e in range(len(eps_values)):
                for a in range(len(plans)):
                    if bar is not None:
                        bar.set_description(f"{plans[a].label} eps={eps_values[e]:.4g}")
                    _run_cell(run, e, a, bar)
        finally:
            if bar is not None:
                bar.close()
    finally:
        model.to(home)
        snapshot.restore()

    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "clean_accuracy": float(run.state["clean_correct"].sum()) / x.shape[0],
        "n": int(x.shape[0]),
        "norm": norm,
        "mode": "cascade" if early_exit else "independent",
        "eps": eps_values,
        "attacks": [{"name": p.name, "label": p.label, "params": json.loads(json.dumps(p.params, default=repr))}
                    for p in plans],
        "seed": seed,
        "results": [_result_entry(run, e, a) for e in range(len(eps_values)) for a in range(len(plans))],
        "worst_case": [_worst_case_entry(run, e) for e in range(len(eps_values))],
        "model": {"class": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
                  "fingerprint": fingerprint["model"], **dict(model_info or {})},
        "data": {**dinfo, "n": int(x.shape[0]), "fingerprint": fingerprint["data"], **dict(data_info or {})},
        "device": str(run_device),
        "resumed": resumed,
        "seconds": round(time.perf_counter() - started, 3),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "robustreg_version": __version__,
    }
    if out_dir is not None:
        from .report import write_report

        write_report(report, out_dir)
    if spath is not None and not keep_state and spath.exists():
        spath.unlink()
    return report


def _done_work(run: _Run) -> int:
    correct = int(run.state["clean_correct"].sum())
    done = 0
    for e in range(len(run.eps)):
        for a in range(len(run.plans)):
            cell = run.state["cells"].get(f"{e}:{a}")
            if cell is None or cell["chunks_done"] == 0 and not cell["done"]:
                continue
            done += correct if cell["done"] else min(correct, cell["chunks_done"] * run.batch_size +
                                                     correct - run.to_attack(e, a).numel())
    return done


def _progress_bar(progress: bool, total: int) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="pt", dynamic_ncols=True, leave=False)

