""":func:`evaluate`: plan -> run -> report, with the options as an :class:`EvalConfig` or keywords."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..checks import warn_checks
from ..checks.classes import more_outputs_message
from ..data.first import first_images
from ..data.source import Images
from ..lock import ReportGuard
from ..models.outputs import LogitsOf, logits_model, output_on
from ..remedies import suggestions
from ..report import write_report
from ..runtime import model_device, resolve_device
from .config import EvalConfig, Plan, make_plan
from .distributed import SINGLE, Group, process_group
from .remedying import adaptive_report, apply_remedies
from .report import build_report
from .run import run_and_check
from .state import report_identity

__all__ = ["evaluate"]


def evaluate(
    model: nn.Module,
    data: Any,
    attacks: Sequence[str | tuple[str, Mapping[str, Any]]],
    eps: float | Sequence[float],
    config: EvalConfig | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``data`` under every attack at every eps; return the report dict.

    Args:
        model: an ``nn.Module`` taking [0, 1] images and returning logits N x K (or a dict / tuple /
            Hugging Face output holding them, see ``output``).  Its train/eval
            flags and parameters' requires_grad/.grad are restored afterwards; it is moved to
            ``device`` for the run and moved back to where it was at the end.
        data: a ``robustreg.data.LabeledData``, an ``(x, y)`` pair of tensors or numpy arrays (x float in
            [0, 1], y integer labels), any map-style ``torch.utils.data.Dataset`` of (image, label) items
            (``TensorDataset``, torchvision's ``ImageFolder``, ``robustreg.data.FolderData`` included) or a
            ``DataLoader`` of (x, y) batches.  A Dataset (and a DataLoader that reads one in order) is streamed:
            the engine reads ``batch_size`` images at a time, so memory is bounded by the batch, not by n; it is
            fingerprinted as the clean pass reads it.  A shuffling DataLoader (or one over an IterableDataset)
            is collected into memory.  The report's ``data.read`` says which (:mod:`robustreg.data.collect`);
            anything else is a TypeError saying what is accepted.
        attacks: registry names or ``(name, params)`` pairs, run in this order at each eps.
        eps: one eps or a list, in [0, 1] pixel units (sorted ascending in the report).
        config: an :class:`EvalConfig`; ``options`` (its field names, as keywords) replace its fields.

    The options (fields of :class:`EvalConfig`):
        norm: "linf", "l2" or "l1".
        n: evaluate the first n samples (default all); larger than the data -> ValueError.
        batch_size: samples per attack call and per clean forward.
        device: "cpu", "cuda", "cuda:N", "auto" or None (None: where the model is).
        seed: passed to every attack as ``seed`` (unless its params set one); None -> nondeterministic.
        mode: ``Mode.CASCADE`` (each attack runs on the points still standing; numbers are
            cumulative) or ``Mode.INDEPENDENT`` (standalone numbers), or their values as text; the
            deprecated ``early_exit=True/False`` means the same (with a warning).  See the package docstring.
        out: folder for report.json (the source of truth), report.md, results.csv, robust_accuracy.png
            and the default state file ``state.pt``.
        state_path: where to save/resume the run's state (default ``out/state.pt`` if ``out``).  A state
            written for a different configuration raises ValueError naming the field that differs.
        save_adv: a folder keeping every cell's adversarial points with their sample indices, one file per
            batch, written atomically as the run goes (resumed without loss or duplicates); a folder holding
            another run's examples is refused.  Layout and reader: :mod:`robustreg.evaluation.adversarial`
            (``load_adversarial(folder)``).
        keep_state: keep the state file after the run finished (default: delete it once the report is
            written; it only serves to resume an interrupted run).
        registry: a ``robustreg.Registry`` (default ``Registry.create()``).
        progress: show a tqdm bar over the attacked samples.
        params: extra parameters per attack name, ``{"pgd": {"steps": 40}}``, merged under the pair's own.
        model_info, data_info: extra descriptions copied into the report's "model" / "data" entries.
        output: where the logits are in a model's output that is not a tensor: a dict key or a tuple index
            (the command line's ``--output KEY|INDEX``).  A Hugging Face-style output (an object with a tensor
            ``.logits``) needs none: its ``.logits`` are used.  The report's ``model`` entry names the choice.
        no_check: names of automatic checks to turn off (``robustreg.checks.CHECKS``; an unknown name
            is a ValueError with close matches); they are reported as "skipped".
        distributed: share the batches over the torch.distributed ranks (call it on every rank of a
            torchrun launch; the group is initialised from ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` if it is
            not yet, and destroyed again at the end).  ``device="cuda"`` or ``"auto"`` means
            ``cuda:LOCAL_RANK``.  The report is the one a single process gives with the same seed
            (except for ``seconds``, ``distributed`` and ``environment``); only rank 0 writes files and runs
            the checks, and every rank returns the same report (broadcast from rank 0).
        amp: ``"off"`` (default) or ``"bf16"``: the attacks' forward and backward passes under bf16
            autocast (CUDA and CPU; a native attack runs under it as a whole, a toolkit's attack gets it
            inside the model's forward, with float32 logits).
        channels_last: the model's 4-D weights and the attacks' inputs in channels_last memory format.
        compile: ``torch.compile`` the model for the attack loops: False (default), True (the
            "inductor" backend) or a backend name; compiled before the first attack, a failure is one
            clear error (no silent fallback).
        cudnn_benchmark: ``torch.backends.cudnn.benchmark`` on during the run (no effect off CUDA; the
            report's ``speed.no_effect`` says so).
        adaptive: after the checks, run the remedies of the checks that warned (see
            :mod:`robustreg.remedies`) on the points still standing, run the checks again and repeat for
            new warnings; the worst case includes what they broke and ``adaptive`` lists every remedy run.
        adaptive_budget: forward + backward passes per sample the remedies may spend at each eps.
        None of the four speed options touches the verdicts: clean correctness and whether an adversarial point is
        misclassified are always decided by the model itself in float32, eager, so bf16 or a compiled
        model can only weaken an attack, never fake a success.  They are part of the run's identity (a
        state or a finished report of another option set is refused) and of the report (``speed``).
        targeted: None (default: untargeted, broken = any wrong class) or a targeted evaluation
            (:mod:`robustreg.evaluation.targets`): ``"random"`` (a class other than the label drawn from
            ``seed`` and the sample's index; ``seed=None``: from 0, so a resumed run keeps its targets),
            ``"least-likely"`` (the lowest clean logit other than the label) or ``"all-classes"`` (every
            other class, one run each; broken when any is reached).  Every attack must take a target
            (``AttackInfo.targeted``; one that picks its own targets, ``AttackInfo.picks_targets``, is
            refused): a ValueError naming it before any work.  Broken = the float32 model predicts the
            target; robust accuracy = clean-correct and target not reached.  The report's ``targeted``
            entry says the mode and the rule; it is part of the run's identity.  With ``adaptive`` the
            remedies aim at the same targets (an attack of theirs that cannot is skipped, and ``adaptive``'s
            ``skipped`` says so).

    Returns the report dict: ``clean_accuracy``, ``n``, ``norm``, ``mode``, ``eps``, ``results`` (one
    entry per eps x attack), ``worst_case`` (one per eps), ``model``, ``data``, ``created``,
    ``robustreg_version``, ``schema_version``, ``seconds``, ``speed`` (the four speed options, and
    ``no_effect``: those on that change nothing on this device), ``distributed`` (``world_size``,
    ``seconds_per_rank``: each rank's seconds in the attacks, ``gather_seconds_per_rank``: of them those
    after its own batches of each cell), ``nan_clean`` (clean points with NaN or inf
    logits, never counted as correct), ``targeted`` (a targeted run only: ``mode``, ``rule``: how the targets
    were chosen, ``num_classes``, ``success``, ``robust_accuracy``: what it counts) and ``checks`` (one
    ``{"name", "status", "message", "doc"}`` per automatic check, see ``docs/checks.md``; run once at the
    end, seeded by ``seed``); per sample, ``clean_correct_samples`` and every result's and worst case's
    ``broken_samples``: n characters 0/1 (:mod:`robustreg.evaluation.samples`; ``report.samples()`` gives them
    as bool tensors).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    cfg = EvalConfig.from_options(config, **options)
    plan = make_plan(attacks, eps, cfg)
    x, y, data_info = first_images(data, cfg.n)
    model, cfg = _with_logits(model, x, cfg)
    cfg = _warn_more_outputs(model, x, data_info, cfg)
    if not cfg.distributed:
        return _evaluate(model, x, y, data_info, plan, cfg, resolve_device(cfg.device, model), SINGLE)
    local = os.environ.get("LOCAL_RANK")
    device = resolve_device(cfg.device, model, local_rank=int(local) if local else None)
    with process_group(device) as group:
        return _evaluate(model, x, y, data_info, plan, cfg, device, group)


def _with_logits(model: nn.Module, x: Images, cfg: EvalConfig) -> tuple[nn.Module, EvalConfig]:
    """The model reduced to its logits (``cfg.output``, or a Hugging Face-style ``.logits``) and the report's
    model entry saying so; the model itself when it returns logits."""
    used = logits_model(model, cfg.output, x[:1].to(model_device(model)))
    if not isinstance(used, LogitsOf):
        return model, cfg
    info = {"class": type(used.model).__name__, "output": ".logits" if used.selector is None else used.selector}
    # the logits are picked once, here; the engine below sees a model that returns them
    return used, replace(cfg, model_info={**info, **dict(cfg.model_info or {})})


def _warn_more_outputs(model: nn.Module, x: Images, data_info: Mapping[str, Any],
                       cfg: EvalConfig) -> EvalConfig:
    """One warning line before any work when the model has more outputs than the data has classes (the
    report's more-outputs-than-classes check records it too); the config carrying the class count to it."""
    num_classes = (cfg.data_info or {}).get("num_classes", data_info.get("num_classes"))
    if num_classes is None:
        return cfg
    out = output_on(model, x[:1].to(model_device(model)))
    message = more_outputs_message(out.shape[-1], int(num_classes)) if isinstance(out, torch.Tensor) else None
    if message is not None:
        warnings.warn(message, UserWarning, stacklevel=4)  # names evaluate()'s caller
    return replace(cfg, data_info={"num_classes": int(num_classes), **dict(cfg.data_info or {})})


def _evaluate(model: nn.Module, x: Images, y: torch.Tensor, data_info: dict[str, Any], plan: Plan,
              cfg: EvalConfig, device: torch.device, group: Group) -> dict[str, Any]:
    started = time.perf_counter()
    # report.json as found now, looked at again just before this run writes its own (see ReportGuard)
    guard = ReportGuard.take(cfg.out_dir, report_identity) if cfg.out_dir is not None and group.is_main else None
    run = run_and_check(model, x, y, plan, cfg, device, stacklevel=4, group=group)  # warnings name evaluate()'s caller

    def finish() -> dict[str, Any]:
        adaptive = apply_remedies(model, x, y, plan, run, cfg, device) if cfg.adaptive else None
        checks = suggestions(run.checks, plan.registry)
        report = build_report(plan, run.state, model, data_info, cfg, device, time.perf_counter() - started,
                              checks=checks, nan_clean=run.nan_clean, seconds_per_rank=run.seconds_per_rank,
                              gather_seconds_per_rank=run.gather_seconds_per_rank,
                              targeted=None if run.targets is None else run.targets.entry())
        if adaptive is not None:
            adaptive_report(report, adaptive)  # in place: the report stays an EvalReport
        path = cfg.state_file
        if cfg.out_dir is not None:
            if guard is not None:
                guard.check(report, kept=f" (its state is kept in {path})" if path is not None else "")
            write_report(report, cfg.out_dir)
        if path is not None and not cfg.keep_state and path.exists():
            path.unlink()
        if adaptive is None:  # one CheckWarning per warning check, naming evaluate()'s caller
            warn_checks(checks, stacklevel=5)
        return report

    return group.main_run(finish)
