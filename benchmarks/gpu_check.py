"""GPU check: one prepared script, one table, under 8 minutes on one GPU (issue 12, "GPU paths").

Sections (each one's rows in the one table; a section that fails shows its error as a row, and the
others still run):

- ``conformance``: every registered attack through the conformance kit (``robustreg.testing.check_attack``)
  with the kit's tiny model and batch on the device (linf where the attack supports it, else its first
  norm; ``--all-norms`` for every norm: that took 147 s for the 67 attacks on one CPU thread here);
- ``attack-speed``: our PGD (20 steps) against 20 x forward+backward of the model, torchattacks' and
  ART's PGD, on ResNet-4B and the 932 exact CIFAR-10 images, in float32 and under bf16 autocast (the
  model as evaluation prepares it, ``robustreg.runtime.fast_model``); robust accuracy judged in float32;
- ``autoattack``: ``robustreg autoattack`` (standard, L_inf) on the 932 images against AutoAttack called
  directly: robust accuracy and time;
- ``blackbox``: native SPSA and RayS (no early stop: the whole budget) against replaying their forward
  passes bare (the same batch sizes, no grad): throughput in queries/s and the ratio;
- ``training``: PGD-AT (``at``, 10 steps, eps 8/255) steps on ResNet-20, batch 128, in float32 and under
  bf16 autocast (the defense's loss, its inner attack included, under autocast, as the trainer's
  ``amp: true, amp_dtype: bfloat16`` runs it): images/s;
- ``options``: ``evaluate`` with pgd-20 on ResNet-4B under each speed option against float32: robust
  accuracy, per-sample agreement of the broken flags, time ratio (compile's first run, with the
  compilation, on its own row).

Where a toolkit forces a CPU round trip it is said in the row: ART's estimator takes and returns numpy
arrays, so ART's PGD copies every batch to the host and back at each call.

    python benchmarks/gpu_check.py                        # on CUDA: writes benchmarks/results/gpu_check.md
    python benchmarks/gpu_check.py --smoke --device cpu   # tiny sizes, for the test (about a minute)
    python benchmarks/gpu_check.py --device cpu           # the full sizes on the CPU (long)
    python benchmarks/gpu_check.py --skip conformance,options --out /tmp/gpu.md
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from _common import HERE, SHARED, interleaved_times, machine, markdown_table, sync
from robustreg import Registry, ThreatModel
from robustreg.runtime import SpeedOptions, fast_model, resolve_device

SECTIONS = ("conformance", "attack-speed", "autoattack", "blackbox", "training", "options")
HEADER = ["section", "what", "result", "reference", "ratio"]
Row = list[Any]

# Small budgets so that every attack runs in about a second on the tiny model (keys an attack does not
# declare are dropped by the kit); the same table as tests/test_testing.py.
FAST = {
    "*": {"steps": 2, "n_queries": 20, "max_queries": 20, "max_iter": 2, "nb_iter": 2, "iterations": 2,
          "restarts": 1, "n_restarts": 1, "query_budget": 20, "eot_iter": 1},
    "art:*": {"max_eval": 20, "init_eval": 5, "init_size": 5, "num_trial": 2, "k": 5, "sample_size": 2,
              "deepfool_steps": 2, "square_restarts": 1, "nb_parallel": 8},
    "torchattacks:spsa": {"nb_sample": 8},
    "torchattacks:cw": {"lr": 0.1, "c": 10.0},
    "advlib:pgd": {"relative_step_size": 1.0},
    "advlib:cw": {"lr": 0.1, "initial_const": 10.0, "binary_search_steps": 2, "steps": 20},
    "advlib:cw-linf": {"steps": 10},
}
NO_RANDOMNESS_HERE = {"autoattack:fab", "autoattack:fab-t", "torchattacks:fab"}  # see tests/test_testing.py
ONE_NORM = {"autoattack:square": ["linf"], "autoattack:rand": ["linf"]}


@dataclass(frozen=True)
class Sizes:
    """How big each section runs: the full check on a GPU, or ``--smoke`` (tiny, for the CPU test)."""

    attacks: tuple[str, ...] | None  # conformance: None = every registered attack
    norms: tuple[str, ...] | None  # conformance: None = linf where supported (every norm with --all-norms)
    n: int  # CIFAR images for attack-speed, autoattack and options
    steps: int  # PGD steps in attack-speed and options
    repeats: int
    aa_eps: float
    bb_n: int
    spsa_steps: int
    spsa_samples: int
    rays_queries: int
    train_model: str
    train_batch: int
    train_steps: int
    train_at_steps: int
    compile_backend: str


FULL = Sizes(None, None, 932, 20, 5, 8 / 255, 100, 10, 128, 1000, "resnet20", 128, 10, 10, "inductor")
SMOKE = Sizes(("fgsm", "pgd", "spsa", "torchattacks:pgd"), ("linf",), 8, 2, 1, 32 / 255, 4, 2, 8, 40,
              "resnet4b", 8, 2, 2, "aot_eager")


def cifar(n: int, device: torch.device) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    from robustreg.data import load_data
    from robustreg.models import build_model

    model = build_model("resnet4b", weights=str(SHARED / "models" / "resnet4b.pth")).to(device).eval()
    x, y = load_data(f"npz:{SHARED / 'data' / 'cifar10' / 'cifar10_test_first932.npz'}").tensors(n)
    return model, x.to(device), y.to(device)


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Float32 accuracy (the model itself, no autocast)."""
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


# --- conformance -----------------------------------------------------------------------------------
def _one_norm(registry: Registry, name: str, all_norms: bool) -> list[str] | None:
    """linf where the attack supports it, else its first norm (None: every norm, with ``--all-norms``): the
    device contract does not depend on the norm, and one norm keeps the check inside its time."""
    if all_norms:
        return None
    supported = registry.attack(name).info.norms
    return ["linf"] if "linf" in supported else [supported[0]]


def conformance(sizes: Sizes, device: torch.device, registry: Registry, all_norms: bool = False) -> list[Row]:
    from robustreg.testing import CHECKS, check_attack, match_overrides, tiny_batch, tiny_model

    names = list(sizes.attacks) if sizes.attacks else [spec.name for spec in registry.list_attacks()]
    model = tiny_model().to(device)
    x, y = tiny_batch(6)
    x, y = x.to(device), y.to(device)
    rows, passed = [], 0
    for name in names:
        checks = [c for c in CHECKS if not (name in NO_RANDOMNESS_HERE and c == "randomized_seeds_differ")]
        norms = list(sizes.norms) if sizes.norms else ONE_NORM.get(name) or _one_norm(registry, name, all_norms)
        start = time.perf_counter()
        try:
            check_attack(registry.attack(name), model, x, y, params=match_overrides(name, FAST), norms=norms,
                         checks=checks)
            passed += 1
        except Exception as exc:  # a failing attack is a row of the table, not the end of the check
            first = " ".join(str(exc).split())[:300]
            rows.append(["conformance", name, "FAIL", first, ""])
            continue
        finally:
            seconds = time.perf_counter() - start
        rows.append(["conformance", name, "pass", f"{seconds:.1f} s", ""])
    rows.append(["conformance", f"all {len(names)} attacks on {device}", f"{passed} pass",
                 f"{len(names) - passed} fail", ""])
    return rows


# --- attack speed ----------------------------------------------------------------------------------
def _speed_runs(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
                bf16: bool, registry: Registry, device: torch.device) -> dict[str, Callable[[], Any]]:
    """label -> one call; ``model`` is the model as evaluation hands it to the attacks."""
    options = SpeedOptions(amp="bf16" if bf16 else "off")

    def forward_backward() -> None:
        xr = x.detach().requires_grad_(True)
        with options.autocast(device):
            loss = F.cross_entropy(model(xr), y)
        torch.autograd.grad(loss, xr)

    pgd = registry.build_attack("pgd", ThreatModel("linf", eps), seed=0, steps=steps, step_size=eps / 4)

    def ours() -> torch.Tensor:
        with options.autocast(device):  # a native attack runs under the autocast as a whole
            return pgd(model, x, y)

    runs: dict[str, Callable[[], Any]] = {f"{steps} x forward+backward": lambda: [forward_backward()
                                                                                  for _ in range(steps)],
                                          "robustreg pgd": ours}
    try:
        import torchattacks

        ta = torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=steps, random_start=True)
        runs["torchattacks PGD"] = lambda: ta(x, y)
    except ImportError:
        pass
    try:
        from art.attacks.evasion import ProjectedGradientDescent
        from art.estimators.classification import PyTorchClassifier

        clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                nb_classes=10, clip_values=(0.0, 1.0),
                                device_type="gpu" if device.type == "cuda" else "cpu")
        art_pgd = ProjectedGradientDescent(clf, eps=eps, eps_step=eps / 4, max_iter=steps, num_random_init=1,
                                           batch_size=len(x), verbose=False)
        xn, yn = x.cpu().numpy(), y.cpu().numpy()
        runs["ART PGD (numpy in and out: host round trip per call)"] = lambda: art_pgd.generate(xn, yn)
    except ImportError:
        pass
    return runs


def attack_speed(sizes: Sizes, device: torch.device, registry: Registry) -> list[Row]:
    model, x, y = cifar(sizes.n, device)
    eps = 8 / 255
    rows = []
    ours: dict[bool, float] = {}
    for bf16 in (False, True):
        tag = "bf16" if bf16 else "fp32"
        with fast_model(model, device, SpeedOptions(amp="bf16" if bf16 else "off")) as attacked:
            runs = _speed_runs(attacked, x, y, eps, sizes.steps, bf16, registry, device)
            outs: dict[str, Any] = {}
            wrapped = [lambda label=label, fn=fn, outs=outs: outs.__setitem__(label, fn())
                       for label, fn in runs.items()]
            times = [statistics.median(t) for t in interleaved_times(wrapped, device, repeats=sizes.repeats)]
        base = times[0]
        ours[bf16] = times[1]
        for (label, _), seconds in zip(runs.items(), times):
            robust = ""
            out = outs.get(label)
            if isinstance(out, torch.Tensor) or (out is not None and hasattr(out, "shape")):
                x_adv = torch.as_tensor(out, device=device)
                robust = f"robust {100 * accuracy(model, x_adv, y):.1f}% (fp32 verdict)"
            rows.append(["attack-speed", f"{tag} {label}", f"{seconds:.3f} s", robust, f"{seconds / base:.3f}x"])
    rows.append(["attack-speed", "robustreg pgd: bf16 time / fp32 time", f"{ours[True]:.3f} s",
                 f"{ours[False]:.3f} s", f"{ours[True] / ours[False]:.3f}x"])
    rows.append(["attack-speed", "setup", f"ResNet-4B, {len(x)} CIFAR-10 images, eps 8/255, {sizes.steps} steps",
                 f"median of {sizes.repeats}", "ratio to the fwd+bwd row"])
    return rows


# --- autoattack ------------------------------------------------------------------------------------
def _autoattack_cli(sizes: Sizes, device: torch.device, out: Path) -> tuple[dict[str, Any], float]:
    from robustreg.cli import main as cli_main

    argv = ["autoattack", "--model", "resnet4b", "--weights", str(SHARED / "models" / "resnet4b.pth"), "--data",
            f"npz:{SHARED / 'data' / 'cifar10' / 'cifar10_test_first932.npz'}", "--eps", repr(sizes.aa_eps),
            "--n", str(sizes.n), "--device", str(device), "--batch-size", "250", "--seed", "0", "--out", str(out),
            "--quiet"]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its own table and summary: the check prints one table
        status = cli_main(argv)
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"robustreg autoattack exited with {status}")
    return json.loads((out / "report.json").read_text()), seconds


def _autoattack_direct(sizes: Sizes, device: torch.device) -> tuple[float, float]:
    from robustreg_plugins.autoattack_adapter.compat import load_toolkit

    model, x, y = cifar(sizes.n, device)
    toolkit = load_toolkit("gpu_check")
    logger = logging.getLogger("auto-attack")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        start = time.perf_counter()
        adversary = toolkit.build(model, norm="linf", eps=sizes.aa_eps, seed=0, version="standard", device=device)
        x_adv = toolkit.run_standard_evaluation(adversary, x, y, 250)
        sync(device)
        seconds = time.perf_counter() - start
    finally:
        logger.setLevel(level)
    return accuracy(model, x_adv, y), seconds


def autoattack(sizes: Sizes, device: torch.device, registry: Registry) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        report, ours = _autoattack_cli(sizes, device, Path(tmp))
    direct_robust, direct = _autoattack_direct(sizes, device)
    robust = report["results"][0]["robust_accuracy"]
    eps = f"{sizes.aa_eps * 255:.3g}/255"
    return [
        ["autoattack", f"standard L_inf {eps}, ResNet-4B, {report['n']} images: robust accuracy",
         f"robustreg {100 * robust:.2f}%", f"direct {100 * direct_robust:.2f}%",
         f"clean {100 * report['clean_accuracy']:.2f}%"],
        ["autoattack", "wall time", f"robustreg {ours:.1f} s", f"direct {direct:.1f} s", f"{ours / direct:.3f}x"],
    ]


# --- black-box throughput --------------------------------------------------------------------------
def _replay_ratio(attack: Any, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                  device: torch.device, repeats: int) -> tuple[float, float, int]:
    """(attack seconds, seconds of its forward passes replayed bare, forwarded inputs), medians."""
    sizes: list[int] = []
    hook = model.register_forward_pre_hook(lambda _m, inp: sizes.append(int(inp[0].shape[0])))
    try:
        attack.run(model, x, y)
    finally:
        hook.remove()
    sizes = sizes[1:]  # the base's one-sample class-count probe is not the attack's work
    bufs = {s: torch.rand(s, *x.shape[1:], device=device) for s in set(sizes)}

    def replay() -> None:
        with torch.no_grad():
            for s in sizes:
                model(bufs[s])

    t_attack, t_replay = (statistics.median(t) for t in interleaved_times(
        [lambda: attack(model, x, y), replay], device, repeats=repeats, warmup=0))
    return t_attack, t_replay, sum(sizes)


def blackbox(sizes: Sizes, device: torch.device, registry: Registry) -> list[Row]:
    model, x, y = cifar(sizes.bb_n, device)
    threat = ThreatModel("linf", 8 / 255)
    attacks = {
        f"spsa ({sizes.spsa_steps} steps x {sizes.spsa_samples} samples, no early stop)": registry.build_attack(
            "spsa", threat, seed=0, steps=sizes.spsa_steps, samples=sizes.spsa_samples, early_stop=False,
            random_start=False, max_batch=8192),
        f"rays ({sizes.rays_queries} queries, no early stop)": registry.build_attack(
            "rays", threat, seed=0, max_queries=sizes.rays_queries, early_stop=False),
    }
    rows = []
    for label, attack in attacks.items():
        t_attack, t_replay, forwards = _replay_ratio(attack, model, x, y, device, max(sizes.repeats // 2, 1))
        rows.append(["blackbox", f"{label}, {len(x)} images", f"{forwards / t_attack:.0f} queries/s",
                     f"bare forwards {forwards / t_replay:.0f} queries/s", f"{t_attack / t_replay:.3f}x"])
    return rows


# --- training throughput ---------------------------------------------------------------------------
def training(sizes: Sizes, device: torch.device, registry: Registry) -> list[Row]:
    from robustreg.models import build_model

    _, x, y = cifar(min(932, max(sizes.train_batch, 8)), device)
    reps = -(-sizes.train_batch // x.shape[0])
    xb, yb = x.repeat(reps, 1, 1, 1)[:sizes.train_batch], y.repeat(reps)[:sizes.train_batch]
    model = build_model(sizes.train_model).to(device)
    defense = registry.build_defense("at", eps=8 / 255, steps=sizes.train_at_steps)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def steps(bf16: bool) -> None:
        for _ in range(sizes.train_steps):
            model.train()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = defense.loss(model, xb, yb, step=0)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()

    t_fp32, t_bf16 = (statistics.median(t) for t in interleaved_times(
        [lambda: steps(False), lambda: steps(True)], device, repeats=max(sizes.repeats // 2, 1)))
    per = sizes.train_batch * sizes.train_steps
    what = f"PGD-AT ({sizes.train_at_steps} steps) on {sizes.train_model}, batch {sizes.train_batch}"
    return [["training", f"{what}: fp32", f"{per / t_fp32:.0f} images/s", "", "1.000x"],
            ["training", f"{what}: bf16 autocast", f"{per / t_bf16:.0f} images/s", "", f"{t_fp32 / t_bf16:.3f}x"]]


# --- evaluation speed options ----------------------------------------------------------------------
def options(sizes: Sizes, device: torch.device, registry: Registry) -> list[Row]:
    from speed_options import run_once

    model, x, y = cifar(sizes.n, device)
    data = (x.cpu(), y.cpu())
    sets: dict[str, dict[str, Any]] = {
        "amp=bf16": {"amp": "bf16"}, "channels_last": {"channels_last": True},
        "cudnn_benchmark": {"cudnn_benchmark": True},
        "amp=bf16 + channels_last": {"amp": "bf16", "channels_last": True},
        f"compile ({sizes.compile_backend})": {"compile": sizes.compile_backend},
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        def one(opts: dict[str, Any]) -> tuple[float, torch.Tensor, float, float]:
            """(robust accuracy, broken flags, the attack cell's seconds, the whole evaluate's wall seconds)."""
            start = time.perf_counter()
            acc, broken, seconds, _ = run_once(model, data, opts, Path(tmp) / "state.pt", n=sizes.n, steps=sizes.steps,
                                               batch_size=256, device=str(device), eps=8 / 255, step_size=2 / 255)
            return acc, broken, seconds, time.perf_counter() - start

        one({})  # warm-up (CUDA context, cuDNN's first plans)
        base_acc, base_flags, base, _ = one({})
        rows.append(["options", f"pgd-{sizes.steps} float32 (all off)", f"robust {100 * base_acc:.2f}%", "agree 100%",
                     f"1.000x ({base:.2f} s)"])
        for label, opts in sets.items():
            if opts.get("compile"):
                _, _, _, first = one(opts)
                rows.append(["options", f"{label}: first run, compilation included (wall)", "", "",
                             f"{first / base:.3f}x ({first:.1f} s)"])
            acc, flags, seconds, _ = one(opts)
            agree = float((flags == base_flags).float().mean())
            rows.append(["options", f"pgd-{sizes.steps} {label}", f"robust {100 * acc:.2f}%",
                         f"agree {100 * agree:.2f}%", f"{seconds / base:.3f}x ({seconds:.2f} s)"])
    return rows


RUNNERS: dict[str, Callable[[Sizes, torch.device, Registry], list[Row]]] = {
    "conformance": conformance, "attack-speed": attack_speed, "autoattack": autoattack, "blackbox": blackbox,
    "training": training, "options": options,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto (default)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (the CPU test of this script)")
    parser.add_argument("--skip", default="", help=f"comma-separated sections to leave out ({', '.join(SECTIONS)})")
    parser.add_argument("--out", default=None,
                        help="Markdown file for the table (default on CUDA: benchmarks/results/gpu_check.md)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--all-norms", action="store_true",
                        help="conformance on every norm of each attack (default: linf where supported)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type != "cuda" and not args.smoke and args.device == "auto":
        print("gpu_check: no CUDA device here; run it on a GPU, or `--smoke --device cpu` to test the script")
        return 0
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = sorted(skip - set(SECTIONS))
    if unknown:
        parser.error(f"--skip: unknown section(s) {', '.join(unknown)}; sections: {', '.join(SECTIONS)}")
    sizes = SMOKE if args.smoke else FULL
    registry = Registry.create()
    rows: list[Row] = []
    started = time.perf_counter()
    for name in SECTIONS:
        if name in skip:
            continue
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the automatic checks' and toolkits' warnings are not the table
                if name == "conformance":
                    rows += conformance(sizes, device, registry, args.all_norms)
                else:
                    rows += RUNNERS[name](sizes, device, registry)
        except Exception as exc:  # one broken section must not lose the others' rows
            traceback.print_exc()
            rows.append([name, "FAILED", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}", "", ""])
        print(f"gpu_check: {name} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    total = time.perf_counter() - started
    head = (f"Machine: {machine()}; device {device}{' (--smoke sizes)' if args.smoke else ''}; "
            f"total {total:.0f} s.")
    table = markdown_table(HEADER, rows)
    print(f"{head}\n\n{table}")
    out = args.out if args.out is not None else (str(HERE / "results" / "gpu_check.md") if device.type == "cuda"
                                                  else None)
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(f"# GPU check\n\n{head}\n\n{table}\n")
        tmp.replace(path)
        print(f"wrote {path}")
    return 1 if any(row[1] == "FAILED" or row[2] == "FAIL" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
