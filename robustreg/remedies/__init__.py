"""Remedies: what runs when an automatic check warns (``--adaptive``, ``evaluate(..., adaptive=True)``).

A check (:mod:`robustreg.checks`) says why an evaluation may overestimate robustness; a remedy, registered
by a plugin with ``registrar.add_remedy(name, run, answers=("check-name", ...))``, removes that cause: it
attacks the points still standing with what the check says was missing (a scale-invariant loss, EoT
with enough draws, BPDA around a masking layer, more steps, ...).  :func:`run_remedies` runs the
remedies of the checks that warned, runs the checks again on the result and repeats for checks that
warn anew, within a budget of forward + backward passes per sample at each eps.  Every adversarial
point a remedy finds is judged by the model itself (inside the ball and the box, misclassified), so a
remedy lowers robust accuracy only by real adversarial examples; one rule judges them all
(:mod:`.rule`: the evaluation's argmax, or for a randomised model the majority of several forwards, the
clean points included), and the report states it.

Example (a plugin)::

    @robustreg.hookimpl
    def robustreg_register_remedies(registrar):
        def more_steps(ctx):
            ctx.attack("apgd", {"steps": 500, "restarts": 3}, label="apgd-500x3")
        registrar.add_remedy("more-steps", more_steps, answers=("incomplete-optimization",))
"""

from __future__ import annotations

from ..verdict import Verdict
from .context import ARGMAX, Attempt, Budget, RemedyContext, majority, misclassified
from .rule import VOTES, Rule, correct_under, rule_for
from .run import Adaptive, RemedyJob, run_remedies, suggestions

__all__ = ["ARGMAX", "VOTES", "Adaptive", "Attempt", "Budget", "RemedyContext", "RemedyJob", "Rule", "Verdict",
           "correct_under", "majority", "misclassified", "rule_for", "run_remedies", "suggestions"]
