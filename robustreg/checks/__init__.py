"""The automatic checks of an evaluation: warnings that its robust accuracy may be overestimated.

After the cells (attack x eps) have run, :func:`run_checks` looks at what the evaluation already has
(a :class:`CheckContext`: the model, the points, their clean logits, a :class:`CellView` per cell) and
returns one :class:`CheckResult` per registered check: the core's (:data:`CHECKS`), then the plugins' (e.g.
the scale-invariant plugin's ``logit-scale``), in registration order.  Checks that need the model again run
it on a small seeded subsample only (with :mod:`.kit`'s pieces, which plugins' checks share).  A check is
``"ok"``, ``"warn"`` (read its doc section) or ``"skipped"`` (disabled, nothing to look at, or it raised:
the report never crashes).  Each result links to its section of ``docs/checks.md``.

Attacks can feed three checks through :attr:`AttackResult.extras`: ``"loss_trace"`` (per sample, the
attack's loss at the start and after each step) and ``"ever_broken"`` (per sample: misclassified at
some step), which :func:`traced_ascent` and :func:`robustreg.projected_gradient_ascent` (``extras=``)
record, and ``"flags"`` (the warnings an attack raises about the evaluation itself, e.g. a toolkit's).

Example::

    from robustreg.checks import CellView, CheckContext, run_checks

    cells = [CellView("pgd", 8 / 255, "white-box", False, broken, evaluated, finite, result.extras)]
    ctx = CheckContext(model, x, y, clean_logits, norm="linf", cells=cells)
    report["checks"] = [r.to_json() for r in run_checks(ctx, disabled=args.no_check)]
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from ..errors import close_matches
from ..registry.hookspecs import hookimpl
from ..stats import beyond_noise, beyond_paired_noise, noise, paired_noise
from .cells import (
    check_attack_flags,
    check_black_box_beats_white_box,
    check_eps_monotonic,
    check_incomplete_optimization,
    check_iterative_beats_single_step,
    check_silent_success,
)
from .classes import check_more_outputs_than_classes
from .context import DOC, STATUSES, CellView, CheckContext, CheckResult, CheckWarning, Outcome, pct
from .kit import PIECE, Objective, ce_loss, dlr_loss, largest_eps, quiet_model, standing_after_pgd
from .model import (
    check_nan_logits,
    check_randomized_model,
    check_softmax_output,
    check_unbounded_attack,
    check_zero_gradients,
)
from .trace import Trace, traced_ascent

if TYPE_CHECKING:
    from ..registry.registrar import Registrar
    from ..registry.specs import CheckSpec

__all__ = ["CHECKS", "DOC", "PIECE", "STATUSES", "CellView", "CheckContext", "CheckResult", "CheckWarning", "Checks",
           "Objective", "Outcome", "Trace", "beyond_noise", "beyond_paired_noise", "ce_loss", "check_names", "dlr_loss",
           "largest_eps", "noise", "paired_noise", "pct",
           "quiet_model", "registered", "robustreg_register_checks", "run_checks", "standing_after_pgd",
           "traced_ascent", "warn_checks"]


# --- running them --------------------------------------------------------------------------------
_REGISTRY: tuple[tuple[str, Callable[[CheckContext], Outcome]], ...] = (
    ("softmax-output", check_softmax_output),
    ("randomized-model", check_randomized_model),
    ("zero-gradients", check_zero_gradients),
    ("nan-logits", check_nan_logits),
    ("black-box-beats-white-box", check_black_box_beats_white_box),
    ("iterative-beats-single-step", check_iterative_beats_single_step),
    ("eps-monotonic", check_eps_monotonic),
    ("incomplete-optimization", check_incomplete_optimization),
    ("silent-success", check_silent_success),
    ("unbounded-attack", check_unbounded_attack),
    ("attack-flags", check_attack_flags),
    ("more-outputs-than-classes", check_more_outputs_than_classes),
)
#: the core's checks, in the order :func:`run_checks` runs them (a plugin's come after, from the registry)
CHECKS = tuple(name for name, _ in _REGISTRY)


@hookimpl
def robustreg_register_checks(registrar: Registrar) -> None:
    """The core's checks, registered like any plugin's (the core is a plugin of its own registry)."""
    for name, check in _REGISTRY:
        registrar.add_check(name, check, doc=f"{DOC}#{name}")


Checks = Sequence[tuple[str, Callable[[CheckContext], Outcome], str]]  # (name, check, doc)


def _builtin() -> Checks:
    return [(name, check, f"{DOC}#{name}") for name, check in _REGISTRY]


def registered(specs: Iterable[CheckSpec]) -> Checks:
    """The ``(name, check, doc)`` triples :func:`run_checks` takes, from a registry's check specs."""
    return [(spec.name, spec.check, spec.doc) for spec in specs]


def check_names(names: Iterable[str], known: Iterable[str] | None = CHECKS) -> frozenset[str]:
    """Validate check names (e.g. from ``--no-check``) against ``known`` (default the core's; None: any
    string, to be checked once the registry is known); an unknown one is a one-line ValueError."""
    chosen = frozenset([names] if isinstance(names, str) else names)
    bad = sorted(repr(name) for name in chosen if not isinstance(name, str))
    if bad:
        raise ValueError(f"check names must be strings, got {', '.join(bad)}")
    if known is None:
        return chosen
    known = tuple(known)
    for name in sorted(chosen - set(known)):
        close = close_matches(name, known, n=3)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown check {name!r}{hint} (checks: {', '.join(known)})")
    return chosen


def run_checks(ctx: CheckContext, *, disabled: Iterable[str] = (), checks: Checks | None = None) -> list[CheckResult]:
    """Every check, in order; a disabled one or one that raises is ``"skipped"``.  ``checks``: ``(name,
    check, doc)`` triples (a registry's, through :func:`registered`); default the core's, :data:`CHECKS`."""
    checks = _builtin() if checks is None else checks
    off = check_names(disabled, [name for name, _, _ in checks])
    results = []
    for name, check, doc in checks:
        if name in off:
            status, message = "skipped", "disabled by the user (--no-check)"
        else:
            try:
                status, message = check(ctx)
            except Exception as exc:  # a check must never crash the report
                status, message = "skipped", f"the check failed: {type(exc).__name__}: {exc}"
        results.append(CheckResult(name, status, message, doc))
    return results


def warn_checks(checks: Sequence[Mapping[str, str]], stacklevel: int = 2) -> None:
    """One :class:`CheckWarning` per ``"warn"`` entry of a report's ``checks`` list (``stacklevel`` as
    ``warnings.warn`` counts it from the caller of this function)."""
    for check in checks:
        if check.get("status") == "warn":
            remedy = f"; remedy: {', '.join(check['remedies'])} (adaptive=True / --adaptive)" if check.get(
                "remedies") else ""
            warnings.warn(f"{check['name']}: {check['message']} (see {check['doc']}{remedy})", CheckWarning,
                          stacklevel=stacklevel + 1)
