"""The checks on what the cells found: per-sample broken flags across attacks and eps, and extras."""

from __future__ import annotations

import math

import torch

from ..stats import beyond_noise
from .context import CellView, CheckContext, Outcome

__all__ = ["check_attack_flags", "check_black_box_beats_white_box", "check_eps_monotonic",
           "check_incomplete_optimization", "check_iterative_beats_single_step", "check_silent_success"]


# --- the checks on what the cells found ----------------------------------------------------------
def _by_eps(ctx: CheckContext) -> dict[float, list[CellView]]:
    groups: dict[float, list[CellView]] = {}
    for c in ctx.cells:
        groups.setdefault(c.eps, []).append(c)
    return groups


def check_black_box_beats_white_box(ctx: CheckContext) -> Outcome:
    found, compared = [], False
    for eps, cells in _by_eps(ctx).items():
        white = [c for c in cells if c.kind == "white-box"]
        if not white or len(white) == len(cells):
            continue
        compared = True
        seen = torch.stack([c.evaluated.cpu() for c in white]).any(dim=0)
        white_broke = torch.stack([(c.evaluated & c.broken).cpu() for c in white]).any(dim=0)
        for c in cells:
            if c.kind != "white-box":
                count = int((c.evaluated.cpu() & c.broken.cpu() & seen & ~white_broke).sum())
                if count:
                    found.append(f"{c.attack} ({c.kind}) broke {count} points at eps={eps:g}")
    if not compared:
        return "skipped", "no eps with both a white-box and a black-box (score, decision, transfer) cell"
    if found:
        return "warn", (f"{'; '.join(found)} that every white-box attack left standing: the gradients mislead "
                        "the white-box attacks (gradient masking); strengthen them or report the black-box ones")
    return "ok", "no black-box attack broke a point that the white-box attacks left standing"


def check_iterative_beats_single_step(ctx: CheckContext) -> Outcome:
    found, compared = [], 0
    for eps, cells in _by_eps(ctx).items():
        white = [c for c in cells if c.kind == "white-box"]
        for one in (c for c in white if c.single_step):
            for it in (c for c in white if not c.single_step and c.aims_at == one.aims_at):
                common = it.evaluated.cpu()
                n = int(common.sum())
                if n == 0 or not torch.equal(one.evaluated.cpu(), common):  # cascade: not the same points
                    continue
                compared += 1
                p_one, p_it = one.rate(common), it.rate(common)
                if beyond_noise(p_one - p_it, p_one, n):
                    found.append(f"at eps={eps:g}, {it.attack} broke {100 * p_it:.1f}% and the single-step "
                                 f"{one.attack} {100 * p_one:.1f}% of the same {n} points")
    if not compared:
        return "skipped", ("no eps with a single-step and an iterative white-box cell that aim alike, evaluated on the "
                           "same points")
    if found:
        return "warn", (f"{'; '.join(found)}: an iterative attack weaker than a single step signals gradient "
                        "masking (or a broken attack); check its step size and use a gradient-free attack")
    return "ok", f"every iterative attack is at least as strong as the single-step ones ({compared} pairs)"


def check_eps_monotonic(ctx: CheckContext) -> Outcome:
    by_attack: dict[str, list[CellView]] = {}
    for c in ctx.cells:
        by_attack.setdefault(c.attack, []).append(c)
    found, compared = [], 0
    for attack, cells in by_attack.items():
        cells = sorted(cells, key=lambda c: c.eps)
        for small, large in zip(cells, cells[1:]):
            common = (small.evaluated & large.evaluated).cpu()
            n = int(common.sum())
            if n == 0:
                continue
            compared += 1
            acc_small, acc_large = 1 - small.rate(common), 1 - large.rate(common)
            if beyond_noise(acc_large - acc_small, acc_small, n):
                found.append(f"{attack}: {100 * acc_large:.1f}% at eps={large.eps:g} > {100 * acc_small:.1f}% at "
                             f"eps={small.eps:g} ({n} points)")
    if not compared:
        return "skipped", "no attack evaluated at two eps on common points"
    if found:
        return "warn", (f"robust accuracy grows with eps for {'; '.join(found)}: a larger ball contains the smaller "
                        "one, so the attack fails to find what it found before (optimisation or gradient problem)")
    return "ok", f"robust accuracy does not grow with eps ({compared} pairs of eps)"


def _mean_trace(c: CellView) -> tuple[torch.Tensor, str] | None:
    """The cell's loss trace as one curve: a per-sample N x T trace averaged over the points it left standing
    (where a failure needs explaining); None when it left none standing or the trace is unusable."""
    trace = torch.as_tensor(c.extras["loss_trace"], dtype=torch.float64).cpu()
    where = ""
    if trace.dim() == 2:
        standing = (c.evaluated & ~c.broken).cpu()
        if len(trace) != len(standing) or not bool(standing.any()):
            return None
        trace, where = trace[standing].mean(dim=0), f" on the {int(standing.sum())} points it left standing"
    if trace.dim() != 1 or len(trace) < 3 or not bool(torch.isfinite(trace).all()):
        return None
    return trace, where


# warn when more than this fraction of the loss's rise came in the last 10% of the steps (a straight line
# puts 10% there; calibrated on the real checkpoints, docs/checks.md#incomplete-optimization)
LATE_RISE = 0.05


def check_incomplete_optimization(ctx: CheckContext) -> Outcome:
    found, traced = [], 0
    for c in ctx.cells:
        got = _mean_trace(c) if "loss_trace" in c.extras else None
        if got is None:
            continue
        (trace, where), traced = got, traced + 1
        best = trace.cummax(dim=0).values
        rise = float(best[-1] - trace[0])
        last = max(1, math.ceil(0.1 * (len(trace) - 1)))
        late = float(best[-1] - best[-1 - last])
        if rise > 0 and late > LATE_RISE * rise:
            found.append(f"{c.attack} at eps={c.eps:g}: {100 * late / rise:.1f}% of the loss's rise{where} came in "
                         f"the last {last} of {len(trace) - 1} steps")
    if not traced:
        return "skipped", "no cell reported a usable loss trace (extras['loss_trace']) with points left standing"
    if found:
        return "warn", (f"{'; '.join(found)}: the attack stopped while its loss was still rising; "
                        "run more steps (or a schedule that converges) before trusting the robust accuracy")
    return "ok", f"the loss had levelled off by the last steps in all {traced} traced cells"


def check_silent_success(ctx: CheckContext) -> Outcome:
    found, traced = [], 0
    for c in ctx.cells:
        if "ever_broken" not in c.extras:
            continue
        traced += 1
        ever = torch.as_tensor(c.extras["ever_broken"]).bool().cpu()
        count = int((c.evaluated.cpu() & ever & ~c.broken.cpu()).sum())
        if count:
            found.append(f"{c.attack} at eps={c.eps:g}: {count} points")
    if not traced:
        return "skipped", "no cell reported the points broken on the way (extras['ever_broken'])"
    if found:
        return "warn", (f"{'; '.join(found)} were misclassified at some step but the returned point is not: the "
                        "attack does not keep its best point; return the first (or best) adversarial point")
    return "ok", f"no point was lost on the way ({traced} cells reported)"


def check_attack_flags(ctx: CheckContext) -> Outcome:
    found = []
    for c in ctx.cells:
        flags = c.extras.get("flags")
        flags = [flags] if isinstance(flags, str) else [str(f) for f in flags or ()]
        if flags:
            found.append(f"{c.attack} at eps={c.eps:g}: {' | '.join(flags)}")
    if found:
        return "warn", (f"the attacks flagged their own evaluation as unreliable: {'; '.join(found)}; "
                        "follow the attack's advice (its documentation explains each flag)")
    return "ok", f"no attack raised a flag of its own (extras['flags']) in the {len(ctx.cells)} cells"
