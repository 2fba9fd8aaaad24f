"""Robustness evaluation: a grid of attacks x eps on one model and one dataset -> one report.

It reads plan -> run -> report: :mod:`.config` (:class:`EvalConfig`, :class:`Mode`, the attack plan),
:mod:`.run` (the clean pass, then every cell batch by batch, saving :mod:`.state` after each) and
:mod:`.report` (the report dict).  :func:`evaluate` runs every attack at every eps on the
clean-correct points, decides for each sample whether it was broken by running the model on the
adversarial example itself (never trusting the attack), and returns the report dict (see
:data:`REPORT_SCHEMA_VERSION` and :func:`evaluate`).  Long runs save their state after every batch
and resume where they stopped; a state written for another configuration is refused.

The numbers, for ``n`` evaluated samples:

- ``clean_accuracy``: fraction of the n samples the model classifies correctly.
- ``Mode.CASCADE`` (``mode="cascade"``, the deprecated ``early_exit=True``; AutoAttack-style): at each
  eps, each attack runs only on the points still standing (clean-correct and not broken by an
  earlier attack in the list at this eps).  An attack's ``robust_accuracy`` is therefore
  *cumulative*: the fraction of the n samples that are clean-correct and survived this attack and
  every earlier one.  The last attack's number equals the worst case.
- ``Mode.INDEPENDENT`` (``mode="independent"``, ``early_exit=False``): every attack runs on all
  clean-correct points, and its ``robust_accuracy`` is standalone: the fraction of the n samples
  that are clean-correct and not broken by this attack.
- ``worst_case[eps].robust_accuracy``: fraction of the n samples correct under every attack at that
  eps (the per-sample minimum), in both modes.
- ``worst_case[eps].broken_only_by[label]``: how many points this attack broke that every earlier
  attack in the list left standing (in cascade mode, all the points it broke).  This is how a report
  shows that an attack broke points that, say, AutoAttack before it left standing.  In independent
  mode ``broken_uniquely_by[label]`` also counts the points broken by this attack and no other.

Targeted (``targeted="random" | "least-likely" | "all-classes"``, :mod:`.targets`): each attack aims at
per-sample target classes and a sample is broken when the float32 model predicts its target (all-classes:
any of them), so every robust accuracy above reads "clean-correct and target not reached"; the report's
``targeted`` entry says the mode and how the targets were chosen.

Per result, ``extras`` holds each ``AttackResult.extras`` entry reduced over the attacked points as
``AttackResult.reductions`` declares it: "mean" (the default) averages per-sample tensors over the
attacked points and scalars over batches weighted by batch size; "sum" adds them up (AutoAttack's
``seconds:<sub>``).  Scalar extras are also copied to the top level of the entry (RayS' ``adbd``).
``queries`` is the mean per attacked image.

Every report also carries ``checks`` (the automatic checks of :mod:`robustreg.checks`, run once at the
end by :mod:`.checking`; ``no_check=[...]`` turns some off) and ``nan_clean`` (clean points whose
logits hold a NaN or inf: never counted as correct).  An attack's ``extras["flags"]`` (its own
warnings) appear per result as ``flags`` (message -> batches).

Per sample (:mod:`.samples`): ``clean_correct_samples`` and each result's and worst case's ``broken_samples``
are text of n characters 0/1 (sample i at character i); ``report.samples()`` reads them as bool tensors.
``save_adv=DIR`` keeps every cell's adversarial points with their indices (:mod:`.adversarial`,
:func:`load_adversarial`).

Example::

    from robustreg.data import load_data
    from robustreg.evaluation import EvalConfig, Mode, evaluate
    from robustreg.models import build_model

    model = build_model("digits-cnn-pretrained")
    report = evaluate(model, load_data("digits"), ["fgsm", ("pgd", {"steps": 20})], [0.05, 0.1], out="out/")
    print(report["worst_case"])
    config = EvalConfig(batch_size=128, mode=Mode.INDEPENDENT, progress=False)
    standalone = evaluate(model, load_data("digits"), ["fgsm", "pgd"], 0.1, config)
"""

from __future__ import annotations

from ..data.first import first_samples
from .adversarial import CellExamples, load_adversarial
from .cells import Cell
from .config import AttackPlan, EvalConfig, Mode, Plan, make_plan
from .craft import craft
from .pipeline import evaluate
from .report import REPORT_SCHEMA_VERSION, build_report
from .run import Finished, Runner, run_and_check
from .samples import SampleVerdicts, read_samples
from .state import STATE_VERSION, DataHash, RunState, data_fingerprint, hashed_clean_pass, model_fingerprint

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "STATE_VERSION",
    "AttackPlan",
    "Cell",
    "CellExamples",
    "DataHash",
    "EvalConfig",
    "Finished",
    "Mode",
    "Plan",
    "RunState",
    "Runner",
    "SampleVerdicts",
    "build_report",
    "craft",
    "data_fingerprint",
    "evaluate",
    "first_samples",
    "hashed_clean_pass",
    "load_adversarial",
    "make_plan",
    "model_fingerprint",
    "read_samples",
    "run_and_check",
]
