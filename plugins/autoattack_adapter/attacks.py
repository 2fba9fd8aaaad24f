"""AutoAttack entries: the standard / plus / rand ensembles and their sub-attacks one at a time.

Every entry builds the toolkit's ``AutoAttack`` for its version (so every sub-attack is configured
exactly as that version configures it) and then runs AutoAttack's cascade itself: clean accuracy
first, then each sub-attack on the points still correctly classified, in batches of ``batch_size``,
with the same per-call seeding as ``run_standard_evaluation``.  The result is therefore the toolkit's
own, plus per-sample records: ``extras["robust_after:<sub>"]`` (bool per sample: still correct after
the sub-attacks so far) and ``extras["seconds:<sub>"]`` (wall time of that sub-attack).

AutoAttack's own flags are kept: the checks ``run_standard_evaluation`` makes (randomised model,
probabilities instead of logits, more target classes than classes; after the cascade, Square lowering
the robust accuracy the gradient attacks left) run on each batch as they would on the toolkit's, and
what they warn, with APGD's zero-gradient warning, goes to ``extras["flags"]`` (a list of AutoAttack's
messages), which the evaluation's ``attack-flags`` check reports.  The check for "dynamic" defenses is
left out: it installs ``sys.settrace``, which would remove a debugger's or coverage's tracer.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from robustreg import (
    Attack,
    AttackInfo,
    AttackResult,
    Param,
    ParamSet,
    ThreatModel,
    draw_seed,
    report_progress,
    seeded_global_rngs,
)

from .compat import LOGGER, NORM_NAMES, Toolkit, installed_version, load_toolkit, quiet

__all__ = ["ENTRIES", "MINIMAL_NORM", "AutoAttackEntry", "CascadeResult", "finish", "run_cascade"]

PAPER = ("Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks "
         "(Croce & Hein, ICML 2020), arXiv:2003.01690")
NORMS = tuple(NORM_NAMES)


# --- the sub-attacks, driven as AutoAttack.run_standard_evaluation drives them ----------------------
def _apgd_ce(adversary: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    adversary.apgd.loss = "ce"
    adversary.apgd.seed = adversary.get_seed()
    return adversary.apgd.perturb(x, y)


def _apgd_dlr(adversary: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    adversary.apgd.loss = "dlr"
    adversary.apgd.seed = adversary.get_seed()
    return adversary.apgd.perturb(x, y)


def _fab(adversary: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    adversary.fab.targeted = False
    adversary.fab.seed = adversary.get_seed()
    return adversary.fab.perturb(x, y)


def _square(adversary: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    adversary.square.seed = adversary.get_seed()
    return adversary.square.perturb(x, y)


def _apgd_t(adversary: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    adversary.apgd_targeted.seed = adversary.get_seed()
    return adversary.apgd_targeted.perturb(x, y)


def _fab_t(adversary: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    adversary.fab.targeted = True
    adversary.fab.n_restarts = 1
    adversary.fab.seed = adversary.get_seed()
    return adversary.fab.perturb(x, y)


SUB_ATTACKS: dict[str, Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "apgd-ce": _apgd_ce,
    "apgd-dlr": _apgd_dlr,
    "fab": _fab,
    "square": _square,
    "apgd-t": _apgd_t,
    "fab-t": _fab_t,
}
# smallest number of classes each sub-attack's loss needs (DLR reads the 3rd / 4th largest logit)
MIN_CLASSES = {"apgd-dlr": 3, "apgd-t": 4, "fab-t": 2}


@dataclass
class CascadeResult:
    """What :func:`run_cascade` found: x_adv, clean correctness and the per-sub-attack records."""

    x_adv: torch.Tensor
    clean: torch.Tensor
    robust_after: dict[str, torch.Tensor] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


#: The sub-attacks that minimise the norm: FAB's result is only checked against eps by the toolkit, in its
#: own arithmetic; the adapter projects it into the eps ball.  The others are eps-bounded: their float slop
#: is clamped (see :meth:`robustreg.ThreatModel.clamp_slop`).
MINIMAL_NORM = frozenset({"fab", "fab-t"})

def finish(threat: ThreatModel, sub: str, adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A sub-attack's result as a point of ``threat``: FAB's projected into the ball, the others' slop clamped."""
    if sub in MINIMAL_NORM:
        return threat.project(adv, x)
    return threat.clamp_slop(adv, x)


def run_cascade(
    adversary: Any, model: nn.Module, subs: tuple[str, ...], x: torch.Tensor, y: torch.Tensor, batch_size: int,
    threat: ThreatModel | None = None,
) -> CascadeResult:
    """AutoAttack's evaluation loop over ``subs``: each sub-attack runs only on the points still standing.

    With ``threat``, each sub-attack's result goes through :func:`finish` before it is judged, so a
    point counts as broken only if it is broken inside the threat model.
    """
    n = x.shape[0]
    with torch.no_grad():
        robust = torch.zeros(n, dtype=torch.bool, device=x.device)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            robust[start:stop] = model(x[start:stop]).max(dim=1)[1] == y[start:stop]
        result = CascadeResult(x.clone(), robust.clone())
        for i, sub in enumerate(subs):
            started = time.perf_counter()
            standing = torch.nonzero(robust, as_tuple=False).flatten()
            for start in range(0, standing.numel(), batch_size):
                # progress over the whole suite: sub-attack i, this share of its points done (the bar's postfix)
                report_progress(sub, i + start / standing.numel(), len(subs))
                idx = standing[start:start + batch_size]
                adv = SUB_ATTACKS[sub](adversary, x[idx].clone(), y[idx].clone())
                if threat is not None:
                    adv = finish(threat, sub, adv.to(x.dtype), x[idx])
                broken = model(adv).max(dim=1)[1] != y[idx]
                robust[idx[broken]] = False
                result.x_adv[idx[broken]] = adv[broken].detach().to(result.x_adv.dtype)
            result.seconds[sub] = time.perf_counter() - started
            result.robust_after[sub] = robust.clone()
            report_progress(sub, i + 1, len(subs))
    return result


# --- AutoAttack's own flags --------------------------------------------------------------------
class FlagRecorder(logging.Handler):
    """Collects AutoAttack's warnings, in order, once each.

    A ``logging`` handler for ``pyautoattack`` (which warns through the ``auto-attack`` logger) and a
    stand-in for the official package's ``Logger`` (``.log("Warning: ...")``, forwarded to ``forward``).
    """

    def __init__(self, forward: Any = None) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.forward = forward

    def add(self, message: str) -> None:
        if message not in self.messages:
            self.messages.append(message)

    def emit(self, record: logging.LogRecord) -> None:
        self.add(record.getMessage())

    def warning(self, message: str) -> None:  # the logging.Logger interface AutoAttack's checks call
        self.add(str(message))

    def log(self, message: str) -> None:  # the official package's Logger interface
        if str(message).lower().startswith("warning"):
            self.add(str(message))
        if self.forward is not None and hasattr(self.forward, "log"):
            self.forward.log(message)


def _toolkit_checks(toolkit: Toolkit) -> Any:
    try:
        return importlib.import_module(f"{toolkit.module}.checks")
    except ImportError:  # a distribution without AutoAttack's checks module: no flags but APGD's
        return None


def pre_checks(toolkit: Toolkit, adversary: Any, version: str, subs: tuple[str, ...], x: torch.Tensor,
               y: torch.Tensor, recorder: FlagRecorder) -> None:
    """The checks ``run_standard_evaluation`` makes before attacking (on the first batch of points)."""
    checks = _toolkit_checks(toolkit)
    if checks is None:
        return
    if version != "rand":
        checks.check_randomized(adversary.get_logits, x, y, bs=len(x), logger=recorder)
    n_cls = checks.check_range_output(adversary.get_logits, x, logger=recorder)
    checks.check_n_classes(n_cls, list(subs), adversary.apgd_targeted.n_target_classes,
                           adversary.fab.n_target_classes, logger=recorder)


def square_check(toolkit: Toolkit, result: CascadeResult, recorder: FlagRecorder) -> None:
    """AutoAttack's check after the cascade: did Square lower the robust accuracy the others left?"""
    checks = _toolkit_checks(toolkit)
    if checks is None or not len(result.clean):
        return
    accuracy = {"clean": float(result.clean.float().mean())}
    accuracy.update({sub: float(flags.float().mean()) for sub, flags in result.robust_after.items()})
    checks.check_square_sr(accuracy, logger=recorder)


def _recording(adversary: Any, recorder: FlagRecorder) -> None:
    """Point the APGD attacks' own logger (their zero-gradient warning) at ``recorder`` when it is not the
    ``auto-attack`` logging.Logger (which the recorder already listens to)."""
    for sub in (adversary.apgd, adversary.apgd_targeted):
        current = getattr(sub, "logger", None)
        if not isinstance(current, logging.Logger):
            recorder.forward = current
            sub.logger = recorder


# --- the entries --------------------------------------------------------------------------------
class AutoAttackEntry(Attack):
    """Base of the ``autoattack:*`` entries (see the module docstring).

    Neither parameter is a keyword of the toolkit's ``AutoAttack`` constructor under another name:
    ``batch_size`` sizes the adapter's own cascade (``run_standard_evaluation``'s ``bs`` /
    ``batch_size``), ``verbose`` is passed as is (the official package) or sets the log level.
    """

    version: ClassVar[str] = "standard"
    subs: ClassVar[tuple[str, ...] | None] = None  # None: the version's own list
    params = ParamSet([
        Param("batch_size", "int", 250, "points per toolkit call, as AutoAttack's own batch size", low=1),
        Param("verbose", "bool", False, "show AutoAttack's progress log (warnings always show)"),
    ])
    batch_size: int
    verbose: bool

    @classmethod
    def toolkit_versions(cls) -> dict[str, str]:
        """The AutoAttack distribution found (official ``autoattack`` or ``pyautoattack``) and its version."""
        dist, _, version = installed_version().partition(" ")
        return {dist: version} if version and not version.startswith("(") else {}

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
        target: torch.Tensor | None = None,
    ) -> AttackResult:
        toolkit = load_toolkit(self.label())
        # The seed goes to AutoAttack's own ``seed`` (it reseeds torch's global RNG before every
        # sub-attack call); fork_rng puts the caller's global RNG state back afterwards.
        seed = self.seed if self.seed is not None else draw_seed(generator)
        with torch.no_grad():
            num_classes = int(model(x[:1]).shape[1])
        recorder, logger = FlagRecorder(), logging.getLogger(LOGGER)
        logger.addHandler(recorder)
        try:
            with seeded_global_rngs(seed, x.device), quiet(self.verbose):
                adversary = toolkit.build(model, norm=self.threat.norm, eps=self.threat.eps, seed=seed,
                                          version=self.version, device=x.device, verbose=self.verbose)
                subs = self.subs if self.subs is not None else tuple(adversary.attacks_to_run)
                self._check_classes(subs, num_classes)
                # AutoAttack's 9 target classes assume >= 10 classes (it would index past the logits).
                adversary.apgd_targeted.n_target_classes = min(adversary.apgd_targeted.n_target_classes,
                                                               num_classes - 1)
                adversary.fab.n_target_classes = min(adversary.fab.n_target_classes, num_classes - 1)
                _recording(adversary, recorder)
                pre_checks(toolkit, adversary, self.version, subs, x[: self.batch_size], y[: self.batch_size],
                           recorder)
                result = run_cascade(adversary, model, subs, x, y, self.batch_size, self.threat)
                square_check(toolkit, result, recorder)
        finally:
            logger.removeHandler(recorder)
        extras: dict[str, Any] = {}
        for sub in subs:
            extras[f"robust_after:{sub}"] = result.robust_after[sub]
            extras[f"seconds:{sub}"] = result.seconds[sub]
        if recorder.messages:  # AutoAttack's own warnings, for the evaluation's attack-flags check
            extras["flags"] = list(recorder.messages)
        return AttackResult(result.x_adv, extras=extras,
                            reductions={f"seconds:{sub}": "sum" for sub in subs})

    def _check_classes(self, subs: tuple[str, ...], num_classes: int) -> None:
        for sub in subs:
            need = MIN_CLASSES.get(sub, 2)
            if num_classes < need:
                raise ValueError(f"{self.label()}: {sub} needs a model with >= {need} classes, got {num_classes}")


_SETTINGS = (
    "Settings (AutoAttack's standard version): APGD-CE / APGD-DLR 100 iterations, 1 restart (L1: 5 restarts "
    "with the larger-eps schedule); APGD-T 100 iterations, 1 restart, 9 target classes (L1: 5); FAB and FAB-T "
    "100 iterations, 1 restart, FAB-T 9 target classes; Square 5000 queries, p_init 0.8, 1 restart. Target "
    "classes are capped at (number of classes - 1)."
)
_PARAMS = (
    "Parameters (keyword-only):\n"
    + "".join(f"    {p.name} (default {p.default!r}): {p.doc}.\n" for p in AutoAttackEntry.params)
    + "    seed (default None): AutoAttack's ``seed``; None draws one from torch's RNG. torch's global RNG is\n"
    "        restored afterwards.\n"
    "    eval_mode (default True): attack the model in eval mode (its mode is restored afterwards)."
)


def _entry(name: str, summary: str, *, version: str = "standard", subs: tuple[str, ...] | None = None,
           kind: str = "white-box", details: str = "", picks_targets: bool = False) -> type[AutoAttackEntry]:
    source = installed_version()
    doc = "\n".join([
        f"{summary} ({source}).",
        "",
        f"Paper: {PAPER}.",
        f"Norms: {', '.join(NORMS)}; eps from the ThreatModel ([0, 1] pixel units).",
        details,
        "",
        _PARAMS,
        "",
        "Inputs: float N x C x H x W in [0, 1], int64 labels. ``attack.run(model, x, y).extras`` holds, per\n"
        "sub-attack, ``robust_after:<sub>`` (bool per sample) and ``seconds:<sub>``.",
        "",
        "Example::",
        "",
        "    reg = robustreg.Registry.create()",
        f"    attack = reg.build_attack('autoattack:{name}', ThreatModel('linf', 8 / 255), seed=0)",
        "    result = attack.run(model, x, y)",
    ])
    # picks_targets: APGD-T / FAB-T choose their own target classes and count any misclassification, so a
    # targeted evaluation refuses these entries rather than report their numbers as targeted ones
    info = AttackInfo(norms=NORMS, kind=kind, randomized=True, source=f"{source}; {PAPER}",
                      toolkit="autoattack", summary=summary, picks_targets=picks_targets)
    cls_name = "AutoAttack" + "".join(part.capitalize() for part in name.split("-"))
    namespace = {"__doc__": doc, "__module__": __name__, "__qualname__": cls_name, "name": f"autoattack:{name}",
                 "info": info, "version": version, "subs": subs}
    return type(cls_name, (AutoAttackEntry,), namespace)


ENTRIES: tuple[type[AutoAttackEntry], ...] = (
    _entry("standard", "Standard AutoAttack: APGD-CE, APGD-T, FAB-T, Square, each on the points still standing",
           details=_SETTINGS, picks_targets=True),
    _entry("plus", "AutoAttack+: APGD-CE, APGD-DLR, FAB, Square, APGD-T, FAB-T (more restarts)", version="plus",
           picks_targets=True,
           details="Settings (version 'plus'): APGD-CE / APGD-DLR and FAB 5 restarts, APGD-T and FAB-T 1 restart "
                   "with 9 target classes, Square 5000 queries, 100 iterations each."),
    _entry("rand", "AutoAttack for randomised defenses: APGD-CE and APGD-DLR with 20 EOT samples", version="rand",
           details="Settings (version 'rand'): APGD-CE and APGD-DLR, 100 iterations, 1 restart, eot_iter 20."),
    _entry("apgd-ce", "AutoAttack's APGD on the cross-entropy (standard settings)", subs=("apgd-ce",),
           details=_SETTINGS),
    _entry("apgd-dlr", "AutoAttack's APGD on the DLR loss (standard settings)", subs=("apgd-dlr",),
           details=_SETTINGS),
    _entry("apgd-t", "AutoAttack's targeted APGD-DLR over the 9 most likely wrong classes", subs=("apgd-t",),
           details=_SETTINGS, picks_targets=True),
    _entry("fab", "AutoAttack's untargeted FAB (minimal-norm; the adapter projects the result into the eps ball)",
           subs=("fab",),
           details=_SETTINGS),
    _entry("fab-t", "AutoAttack's targeted FAB over the 9 most likely wrong classes (minimal-norm; the adapter "
           "projects the result into the eps ball)", subs=("fab-t",),
           details=_SETTINGS, picks_targets=True),
    _entry("square", "AutoAttack's Square attack (score-based, 5000 queries)", subs=("square",), kind="score",
           details=_SETTINGS),
)
