"""``robustreg curve``: robust accuracy at every eps from one run of a minimal-norm attack, verified.

A minimal-norm attack (``AttackInfo.minimal_norm``: FMN, DDN, ...) returns, per sample, the smallest
adversarial perturbation it found, so one run gives the whole robustness curve: the robust accuracy
at eps is the fraction of the n samples whose minimal norm exceeds eps.  A clean-misclassified sample
has norm 0; a sample the attack found nothing for has norm inf (robust at every eps).  The norms are
measured and judged here (the model's prediction on the returned point, its distance to the clean
one), never read from the attack's own claims.

``--verify NAME --at E,...`` runs a fixed-budget attack at each of those eps (same seed, every
clean-correct point) and compares: a verifier that breaks a sample whose minimal norm is > eps shows
the minimal-norm attack missed a smaller perturbation (``count``), and a robust accuracy under the
verifier below the curve's by more than sampling noise (``beyond_noise``: two binomial standard errors
plus one sample, :mod:`robustreg.stats`) shows it matters; either flags that eps.  Where the verifier
finds less than the curve (gradient masking, too few steps) nothing is flagged: the curve is then the
tighter bound.

report.json (the source of truth): ``curve`` ([{eps, robust_accuracy}]), ``median_norm`` (the lower
median over the n samples; null when it is inf), ``norms`` (per sample; null = none found) and
``verification`` (per eps: attack, eps, robust_accuracy, curve_accuracy, flagged, count, ...); with
report.md and robustness_curve.png, written atomically (report.json last).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustreg.attack import ModelState, ball_slack
from robustreg.cli_kit import (
    DEFAULT_OUT,
    UsageError,
    add_model_data_args,
    check_device,
    check_model_fits_data,
    check_out_folder,
    eps_list,
    load_dataset,
    load_model,
    norm_arg,
    param_values,
    start_over_hint,
)
from robustreg.data.first import first_images
from robustreg.data.source import Images, as_images
from robustreg.evaluation import AttackPlan, Mode, Plan, Runner, RunState, hashed_clean_pass
from robustreg.options import with_options
from robustreg.stats import beyond_noise, noise
from robustreg.threat import NORMS, ThreatModel
from robustreg.verdict import clean_correct

from .curve_config import CurveConfig

__all__ = ["GRID_POINTS", "HELP", "CurveConfig", "CurveRun", "configure", "curve_report", "minimal_norms",
           "robust_accuracy_at", "run", "verify"]

HELP = "robust accuracy at every eps from one minimal-norm attack run (e.g. fmn), verified by a fixed-budget attack"
GRID_POINTS = 41  # the default eps grid: 0 to the largest minimal norm found
REPORT_FILES = {"markdown": "report.md", "plot": "robustness_curve.png", "json": "report.json"}
SCHEMA_VERSION = 1


def configure(p: argparse.ArgumentParser) -> None:
    add_model_data_args(p)
    g = p.add_argument_group("curve")
    g.add_argument("--attack", required=True, metavar="NAME",
                   help="a registered minimal-norm attack (`robustreg list attacks` shows them)")
    g.add_argument("--norm", default="linf", type=norm_arg, choices=NORMS, help="norm of the curve (default linf)")
    g.add_argument("--eps", metavar="E[,E...]",
                   help=f"eps to report the curve at (default {GRID_POINTS} points from 0 to the largest norm found)")
    g.add_argument("--verify", metavar="NAME", help="a fixed-budget attack run at every --at eps to check the curve")
    g.add_argument("--at", metavar="E[,E...]", help="eps of the verification (with --verify)")
    g.add_argument("--param", action="append", default=[], metavar="[NAME.]KEY=VALUE",
                   help="parameter of --attack or --verify, e.g. fmn.steps=200 (NAME may be left out without "
                        "--verify; repeatable)")
    g.add_argument("--eps-scale", type=float, metavar="S", help="divide plain --eps / --at numbers by S")
    r = p.add_argument_group("run")
    r.add_argument("--batch-size", type=int, default=256, metavar="B", help="samples per attack call (default 256)")
    r.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N or auto (CUDA when present); default: where the model is "
                        "(the CPU for a model loaded from a spec)")
    r.add_argument("--seed", type=int, default=0, help="seed passed to both attacks (default 0)")
    r.add_argument("--out", metavar="DIR", help=f"report folder (default ./{DEFAULT_OUT}/curve)")
    r.add_argument("--overwrite", action="store_true", help="replace a finished report of another configuration")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(on_interrupt=start_over_hint)


# --------------------------------------------------------------------------------------------
# the computation (usable without the command line)
# --------------------------------------------------------------------------------------------
def _unbounded(norm: str, box: tuple[float, float], x: torch.Tensor | Images) -> ThreatModel:
    """The threat whose eps is the box's diameter in ``norm``: no budget at all (what a minimal-norm attack gets)."""
    width, d = box[1] - box[0], math.prod(x.shape[1:])
    return ThreatModel(norm, {"linf": width, "l2": width * math.sqrt(d), "l1": width * d}[norm], box)


def engine_cells(run: CurveRun, correct: torch.Tensor, attack: str, params: Mapping[str, Any],
                 eps: Sequence[float]) -> RunState:
    """``attack`` (its parameters resolved once, with the run's seed) at each of ``eps`` on the points ``correct``
    flags: cells of the evaluation engine (:class:`robustreg.evaluation.Runner`), run in its batches and judged
    as ``evaluate`` judges them; cell ``(e, 0)`` holds eps ``eps[e]``'s per-sample records."""
    cfg = run.config
    config = run.registry.attack_config(attack, {"seed": cfg.seed, **params})
    plan = Plan([AttackPlan(attack, dict(params), attack)], list(eps), cfg.norm, cfg.seed, Mode.INDEPENDENT,
                cfg.batch_size, run.registry, configs=(config,))
    state = RunState({}, correct.cpu())
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(eps) * state.correct_count, desc=attack, unit="pt", leave=False, dynamic_ncols=True)
    try:
        Runner(run.model, run.x, run.y, plan, run.device, state, bar=bar).run_all()
    finally:
        if bar is not None:
            bar.close()
    return state


def minimal_norms(model: nn.Module, x: torch.Tensor | Images, y: torch.Tensor, registry: Any, attack: str, norm: str,
                  params: Mapping[str, Any], *, seed: int, batch_size: int, device: torch.device,
                  progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample (CPU float64) the norm of the smallest adversarial perturbation ``attack`` found (0 for a
    clean-misclassified sample, inf where it found none), and the clean-correct mask.

    The model must be on ``device`` in the mode to attack it in.  The attack is one cell of the engine
    (:func:`engine_cells`) at the box's diameter (no budget): its record of each point is the distance of the
    returned point and whether the model misclassifies it.  ``x`` is read ``batch_size`` images at a time (a
    streamed dataset's :class:`~robustreg.data.source.Images` is never all in memory).
    """
    run = CurveRun(model, as_images(x), y, registry,
                   CurveConfig(norm=norm, seed=seed, batch_size=batch_size, progress=progress), device)
    correct, _ = _clean(run)
    return _norms(run, correct, attack, params), correct


def _clean(run: CurveRun) -> tuple[torch.Tensor, str]:
    """The clean-correct mask and the data's fingerprint, hashed as the clean pass reads the images."""
    logits, fingerprint = hashed_clean_pass(run.model, run.x, run.y, run.device, run.config.batch_size)
    return clean_correct(logits, run.y), fingerprint


def _norms(run: CurveRun, correct: torch.Tensor, attack: str, params: Mapping[str, Any]) -> torch.Tensor:
    """:func:`minimal_norms`' norms, given the clean-correct mask."""
    cell = engine_cells(run, correct, attack, params, [_unbounded(run.config.norm, (0.0, 1.0), run.x).eps]).cell(0, 0)
    found = torch.where(cell.broken, cell.distance.double(), math.inf)
    return torch.where(correct, found, 0.0).double()


def _fits(norms: torch.Tensor, eps: float, norm: str, x: torch.Tensor) -> torch.Tensor:
    """Minimal norm <= eps up to float rounding, as the evaluation reads it (:func:`robustreg.attack.within_eps`)."""
    return norms <= eps + ball_slack(ThreatModel(norm, min(eps, 1.0) if norm == "linf" else eps), x)


def robust_accuracy_at(norms: torch.Tensor, eps: float, norm: str, x: torch.Tensor) -> float:
    """Fraction of the samples whose minimal norm exceeds ``eps``."""
    return float((~_fits(norms, eps, norm, x)).double().mean())


@dataclass(frozen=True)
class CurveRun:
    """What a curve attacks, with its options: the model (on ``device``, in the mode to attack it in), the n
    samples (read a batch at a time) and the registry the attacks come from."""

    model: nn.Module
    x: Images
    y: torch.Tensor
    registry: Any
    config: CurveConfig
    device: torch.device


def verify(run: CurveRun, norms: torch.Tensor, correct: torch.Tensor) -> list[dict[str, Any]]:
    """Run the fixed-budget ``run.config.verifier`` at each eps of ``run.config.at`` on the clean-correct points
    and compare with the curve of ``norms`` (``count``, ``beyond_noise``, ``flagged``: see the module docstring;
    ``curve_only``: samples the curve breaks at eps and the verifier does not).  The verifier's parameters are
    resolved once and built at each eps: one engine cell per eps (:func:`engine_cells`)."""
    cfg, x = run.config, run.x
    if cfg.verifier is None:
        return []
    n, norm, params, probe = x.shape[0], cfg.norm, dict(cfg.verify_params or {}), x[:1]  # probe: the slack's size
    state = engine_cells(run, correct, cfg.verifier, params, cfg.at)
    rows = []
    for e, eps in enumerate(cfg.at):
        broken = state.cell(e, 0).broken & correct
        fits = _fits(norms, eps, norm, probe)
        accuracy = float((correct & ~broken).double().mean())
        curve_accuracy = float((~fits).double().mean())
        count = int((broken & ~fits).sum())
        gap = curve_accuracy - accuracy
        beyond = beyond_noise(gap, curve_accuracy, n)
        rows.append({"attack": cfg.verifier, "eps": eps, "params": _plain(params), "robust_accuracy": accuracy,
                     "curve_accuracy": curve_accuracy, "flagged": count > 0 or beyond, "count": count,
                     "gap": gap, "noise": noise(curve_accuracy, n), "beyond_noise": beyond,
                     "curve_only": int((correct & ~broken & fits).sum())})
    return rows


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


def _grid(norms: torch.Tensor, eps: Sequence[float] | None, at: Sequence[float]) -> list[float]:
    if eps is not None:
        return sorted(set(eps) | set(at))
    finite = norms[torch.isfinite(norms)]
    top = float(finite.max()) if finite.numel() else 0.0
    points = [top * k / (GRID_POINTS - 1) for k in range(GRID_POINTS)] if top > 0 else [0.0]
    return sorted(set(points) | set(at))


def _lower_median(norms: torch.Tensor) -> float:
    return float(norms.sort().values[(norms.numel() - 1) // 2])


def curve_report(model: nn.Module, x: Any, y: torch.Tensor | None, registry: Any, attack: str,
                 config: CurveConfig | str | None = None, **options: Any) -> dict[str, Any]:
    """The report dict of one curve of the minimal-norm ``attack`` (see the module docstring); the model's
    modes, gradients and device are restored afterwards.

    The options are a :class:`~robustreg_plugins.minimal_norm.curve_config.CurveConfig` (``config``) whose
    fields ``options`` replace (``norm``, ``params``, ``eps``, ``verifier``, ``at``, ``verify_params``,
    ``seed``, ``batch_size``, ``device``, ``progress``: the keywords this function always took), checked once.
    ``config`` may also be the norm as text, the older positional form ``curve_report(..., attack, "linf")``.
    ``x, y``: tensors or numpy arrays, or ``x`` an :class:`~robustreg.data.source.Images` (a streamed dataset); with
    ``y`` None, ``x`` is any data ``evaluate`` takes (Dataset, DataLoader, ...: :mod:`robustreg.data.collect`),
    every sample of it.  The images are read a batch at a time."""
    from robustreg.runtime import model_device, resolve_device

    if isinstance(config, str):
        config, options = None, {"norm": config, **options}
    cfg = with_options(CurveConfig, config, options, caller="curve_report()")
    if y is None or not isinstance(x, Images):
        try:
            x, y, _ = first_images(x if y is None else (x, y), None)  # checked at the boundary, a Dataset streamed
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"curve_report(): {exc}") from None
    probe = x[:1]  # one image: what the float slack of the norms depends on (its size and dtype)
    norm, seed = cfg.norm, cfg.seed
    started, device, home, snapshot = time.perf_counter(), resolve_device(cfg.device, model), model_device(model), \
        ModelState(model)
    try:
        model.to(device).eval()
        run = CurveRun(model, x, y, registry, cfg, device)
        correct, fingerprint = _clean(run)
        norms = _norms(run, correct, attack, dict(cfg.params or {}))
        checks = verify(run, norms, correct)
    finally:
        model.to(home)
        snapshot.restore()
    finite = norms[torch.isfinite(norms) & correct]
    median = _lower_median(norms)
    return {
        "command": "curve", "schema_version": SCHEMA_VERSION, "attack": attack,
        "params": _plain(dict(cfg.params or {})),
        "norm": norm, "seed": seed, "n": int(x.shape[0]), "data": {"fingerprint": fingerprint},
        "clean_accuracy": float(correct.double().mean()),
        "found": int(finite.numel()), "not_found": int((correct & ~torch.isfinite(norms)).sum()),
        "median_norm": median if math.isfinite(median) else None,
        "mean_norm_found": float(finite.mean()) if finite.numel() else None,
        "curve": [{"eps": e, "robust_accuracy": robust_accuracy_at(norms, e, norm, probe)}
                  for e in _grid(norms, cfg.eps, cfg.at)],
        "verification": checks, "flagged": [row["eps"] for row in checks if row["flagged"]],
        "norms": [v if math.isfinite(v) else None for v in norms.tolist()],
        "device": str(device), "seconds": round(time.perf_counter() - started, 3),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------------------------
# rendering (from the report dict: report.json is the source of truth)
# --------------------------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "inf" if value is None else f"{value:.4g}"


def _verification_lines(report: Mapping[str, Any]) -> list[str]:
    rows = report.get("verification") or []
    if not rows:
        return []
    lines = ["", f"## Verification: {rows[0]['attack']} at fixed eps (seed {report['seed']})", "",
             "| eps | robust accuracy (verifier) | curve | broken beyond the curve | curve only | flagged |",
             "|---:|---:|---:|---:|---:|:---|"]
    for row in rows:
        flag = "**yes**" + (" (beyond noise)" if row["beyond_noise"] else "") if row["flagged"] else "no"
        lines.append(f"| {row['eps']:.4g} | {_pct(row['robust_accuracy'])} | {_pct(row['curve_accuracy'])} | "
                     f"{row['count']} | {row['curve_only']} | {flag} |")
    flagged = [row for row in rows if row["flagged"]]
    lines.append("")
    if flagged:
        worst = ", ".join(f"eps {row['eps']:.4g}: {row['count']} sample(s)"
                          + (", robust accuracy below the curve's beyond sampling noise" if row["beyond_noise"] else "")
                          for row in flagged)
        lines.append(f"FLAGGED: the fixed-budget attack broke samples whose minimal norm the curve puts above eps "
                     f"({worst}): {report['attack']} missed a perturbation within eps on them, so the curve "
                     "overstates their robustness.")
    else:
        lines.append("Nothing flagged: the fixed-budget attack broke no sample the curve holds robust at these eps.")
    return lines


def render_markdown(report: Mapping[str, Any]) -> str:
    """report.md of a curve report."""
    model, data = report.get("model", {}), report.get("data", {})
    correct = report["found"] + report["not_found"]
    lines = [
        f"# Robustness curve: {report['attack']} ({report['norm']})", "",
        f"- model: {model.get('spec', '?')}" + (f" ({model['weights']})" if model.get("weights") else ""),
        f"- data: {data.get('spec', '?')} ({data.get('split', 'test')}), n = {report['n']}",
        f"- clean accuracy: {_pct(report['clean_accuracy'])}",
        f"- minimal norm found for {report['found']} of {correct} clean-correct samples "
        f"({report['not_found']} not found: counted robust at every eps)",
        f"- median norm: {_num(report['median_norm'])} (lower median over all n; clean-misclassified = 0), "
        f"mean over the found: {_num(report['mean_norm_found'])}",
        f"- parameters: {json.dumps(report['params'], sort_keys=True)}, seed {report['seed']}, "
        f"{report['seconds']:.1f} s on {report['device']}",
        "", "## Robust accuracy by eps", "", "| eps | robust accuracy |", "|---:|---:|",
    ]
    lines += [f"| {point['eps']:.4g} | {_pct(point['robust_accuracy'])} |" for point in report["curve"]]
    lines += _verification_lines(report)
    return "\n".join(lines) + "\n"


def render_png(report: Mapping[str, Any]) -> bytes:
    """The curve (exact, from the per-sample norms) with the verified points."""
    from robustreg.analysis import figure, figure_png

    n = report["n"]
    norms = sorted(v for v in report["norms"] if v is not None)
    top = max([norms[-1] if norms else 0.0] + [p["eps"] for p in report["curve"]]) or 1.0
    xs = [0.0] + norms + [top]
    ys = [sum(1 for v in norms if v > t) / n + report["not_found"] / n for t in xs]
    fig = figure(6.0, 4.0)
    ax = fig.add_subplot()
    ax.step(xs, ys, where="post", label=f"{report['attack']} (minimal norm)")
    for row in report.get("verification") or []:
        color = "tab:red" if row["flagged"] else "tab:green"
        ax.scatter([row["eps"]], [row["robust_accuracy"]], marker="x", color=color, zorder=3)
    if report.get("verification"):
        ax.scatter([], [], marker="x", color="tab:green", label=f"{report['verification'][0]['attack']} at eps "
                                                                 "(red: flagged)")
    ax.set_xlabel(f"eps ({report['norm']})")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    return figure_png(fig)


def write_curve(report: Mapping[str, Any], out: Path) -> list[Path]:
    """report.md, the PNG and report.json, atomically as a set (report.json renamed last)."""
    from robustreg.files import write_set_atomic

    files: dict[str, bytes | str] = {REPORT_FILES["markdown"]: render_markdown(report),
                                     REPORT_FILES["plot"]: render_png(report),
                                     REPORT_FILES["json"]: json.dumps(report, indent=1) + "\n"}
    return write_set_atomic(out, files, last=REPORT_FILES["json"])


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------
def _attack_spec(registry: Any, flag: str, name: str, norm: str, minimal: bool) -> Any:
    try:
        spec = registry.attack(name)
    except LookupError as exc:
        raise UsageError(f"{flag} {name!r}: {exc}") from None
    if bool(getattr(spec.info, "minimal_norm", False)) != minimal:
        raise UsageError(f"{flag} {name!r} is not a minimal-norm attack (AttackInfo.minimal_norm); the curve needs "
                         "per-sample minimal norms, e.g. --attack fmn" if minimal else
                         f"{flag} {name!r} is a minimal-norm attack; verify with a fixed-budget one, e.g. --verify pgd")
    if norm not in spec.info.norms:
        raise UsageError(f"{flag} {name!r} supports norm(s) {', '.join(spec.info.norms)}, got --norm {norm}")
    return spec


def _eps_values(args: argparse.Namespace, flag: str, text: str | None) -> list[float]:
    values = eps_list(text, args.eps_scale, flag=flag) if text is not None else []
    for value in values:
        try:
            ThreatModel(args.norm, value)
        except ValueError as exc:
            raise UsageError(f"{flag} {text!r}: {exc}") from None
    return values


def _check_args(args: argparse.Namespace) -> None:
    missing = [flag for flag, value in (("--model", args.model), ("--data", args.data)) if value is None]
    if missing:
        raise UsageError(f"curve needs {' and '.join(missing)}")
    if (args.verify is None) != (args.at is None):
        raise UsageError("--verify and --at go together: --verify NAME --at E[,E...]")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.eps_scale is not None and args.eps_scale <= 0:
        raise UsageError(f"--eps-scale must be > 0, got {args.eps_scale}")
    if not 0 <= args.seed <= 2**63 - 1:
        raise UsageError(f"--seed must be between 0 and 2**63 - 1, got {args.seed}")
    check_device(args.device)
    check_out_folder("--out", args.out)


def _identity(args: argparse.Namespace, params: Mapping[str, Any], data: str, model: nn.Module) -> dict[str, str]:
    """What makes two runs the same configuration (strings, compared with a finished report's); ``data``: the
    data's fingerprint."""
    from robustreg.evaluation.state import model_fingerprint

    return {"model": model_fingerprint(model), "data": data, "attack": args.attack,
            "norm": args.norm, "verify": str(args.verify), "at": str(args.at), "eps": str(args.eps),
            "eps_scale": str(args.eps_scale), "seed": str(args.seed),
            "params": json.dumps(_plain(params), sort_keys=True)}


def run(args: argparse.Namespace) -> int:
    from robustreg.evaluation import data_fingerprint
    from robustreg.lock import ReportGuard
    from robustreg.output_folders import existing_report, output_folders
    from robustreg.runtime import resolve_device

    from .curve_check import saved_identity

    registry = args.registry
    _check_args(args)
    _attack_spec(registry, "--attack", args.attack, args.norm, minimal=True)
    owners = {args.attack: registry.attack(args.attack).params}
    if args.verify is not None:
        owners[args.verify] = _attack_spec(registry, "--verify", args.verify, args.norm, minimal=False).params
    params = param_values(args.param, owners, where="--attack and --verify",
                          aliases=registry.param_aliases())
    eps, at = _eps_values(args, "--eps", args.eps), _eps_values(args, "--at", args.at)
    out = Path(args.out or Path(DEFAULT_OUT) / "curve")
    with output_folders([("--out", out, out)]):
        model, data = load_model(args, args.model), load_dataset(args, args.data)
        if args.n is not None and not 1 <= args.n <= len(data):
            raise UsageError(f"--n {args.n}: must be between 1 and the size of {args.data!r} ({len(data)} samples)")
        model = check_model_fits_data(model, data, args.model, args.data, registry=registry,
                                      any_input_size=args.any_input_size, output=args.output)
        x, y, data_info = first_images(data, args.n)  # a Dataset is streamed, never all in memory
        # only when a report is already there is the data hashed here (the run hashes it in its clean pass)
        done = existing_report(out, lambda: _identity(args, params, data_fingerprint(x, y, args.batch_size), model),
                               saved_identity, overwrite=args.overwrite)
        if done is not None:
            print(render_markdown(done))
            print(f"report already there: {out / 'report.json'} (same configuration, not recomputed; --overwrite "
                  "recomputes it)")
            return 0
        guard = ReportGuard.take(out, saved_identity)  # looked at again just before write_curve
        config = CurveConfig(norm=args.norm, params=params.get(args.attack, {}), eps=eps or None,
                             verifier=args.verify, at=at,
                             verify_params=params.get(args.verify, {}) if args.verify else None, seed=args.seed,
                             batch_size=args.batch_size, device=resolve_device(args.device, model),
                             progress=not args.quiet)
        report = curve_report(model, x, y, registry, args.attack, config)
        fingerprint = report["data"]["fingerprint"]  # hashed in the run's clean pass
        report.update(identity=_identity(args, params, fingerprint, model),
                      model={"spec": args.model, "weights": args.weights, "normalize": args.normalize},
                      data={"spec": args.data, "split": args.split, **_plain(data_info), "fingerprint": fingerprint})
        guard.check(report)
        write_curve(report, out)
    print(render_markdown(report))
    print(f"report: {out / 'report.json'} (also report.md, {REPORT_FILES['plot']})")
    return 0
