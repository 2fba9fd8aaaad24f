"""APGD: native ``apgd`` against the model's own cost, and against AutoAttack's APGD on the same samples.

Speed: ``apgd`` (linf, ``--steps`` steps, 1 restart, loss ce) on the points of the first ``--n``
that the model classifies correctly (APGD attacks only those, as AutoAttack's does, so the reference runs
on the same batch).  Ratio = apgd time / (steps x one forward+backward of the model w.r.t. the input),
all measured in this one process, the candidates round-robin, the median of the per-round ratios
reported.  APGD's own work per run is steps + 1 forward+backward passes (the start is evaluated too)
plus one forward of the clean batch, so 1.01x is its floor at 100 steps; target: at most 1.03x.  CPU
time of the process is shown beside wall time: on a shared machine it is the steadier of the two.

Agreement: on the first ``--compare-n`` points, robust accuracy and seconds of ``apgd`` (ce, dlr) and of
``autoattack:apgd-ce`` / ``autoattack:apgd-dlr`` (AutoAttack's standard settings: 100 steps, 1 restart),
all with seed 0.

    python benchmarks/apgd_speed.py --model mnist --n 300 --threads 1
    python benchmarks/apgd_speed.py --model cifar --n 500 --threads 1
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from _common import markdown_table, ratio_rows, real_model_and_data, timed_rounds, write_report
from robustreg import Registry, ThreatModel


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def speed_table(model, x, y, threat: ThreatModel, registry: Registry, steps: int, repeats: int) -> str:
    with torch.no_grad():
        keep = model(x).argmax(1) == y
    x, y = x[keep], y[keep]

    def forward_backward() -> None:
        xr = x.detach().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)

    for p in model.parameters():  # as the Attack base does while an attack runs: input gradients only
        p.requires_grad_(False)
    def reference() -> None:
        for _ in range(steps):
            forward_backward()

    runs: dict[str, Callable[[], object]] = {f"{steps} x forward+backward (reference)": reference}
    attack = registry.build_attack("apgd", threat, loss="ce", steps=steps, seed=0)
    runs["robustreg apgd (ce)"] = lambda: attack(model, x, y)
    for _ in range(3):
        forward_backward()  # warm-up
    times = timed_rounds(list(runs.values()), x.device, repeats)
    rows = ratio_rows(list(runs), times, steps)
    header = [f"what ({steps} steps, {len(x)} points)", "wall s",
              f"plain wall ratio to {steps} x fwd+bwd: median [quartiles]", "CPU ratio", "page faults / step"]
    return markdown_table(header, rows)


def agreement_table(model, x, y, threat: ThreatModel, registry: Registry, steps: int) -> str:
    rows = []
    for loss in ("ce", "dlr"):
        for label, attack in ((f"robustreg apgd ({loss}, {steps} steps)",
                               registry.build_attack("apgd", threat, loss=loss, steps=steps, seed=0)),
                              (f"autoattack:apgd-{loss}", registry.build_attack(f"autoattack:apgd-{loss}", threat,
                                                                               seed=0))):
            start = time.perf_counter()
            x_adv = attack(model, x, y)
            seconds = time.perf_counter() - start
            rows.append([label, f"{100 * accuracy(model, x_adv, y):.1f}", seconds])
    header = [f"attack (first {len(x)} points, clean {100 * accuracy(model, x, y):.1f}%)", "robust accuracy %",
              "seconds"]
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mnist", choices=["mnist", "cifar"])
    parser.add_argument("--n", type=int, default=300, help="points of the speed measurement (before filtering)")
    parser.add_argument("--compare-n", type=int, default=200, help="points of the AutoAttack comparison")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5, help="rounds of the speed measurement")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, x, y = real_model_and_data(args.model, max(args.n, args.compare_n), device)
    threat = ThreatModel("linf", 0.3 if args.model == "mnist" else 8 / 255)
    registry = Registry.create()

    agreement = agreement_table(model, x[: args.compare_n], y[: args.compare_n], threat, registry, args.steps)
    print(agreement, flush=True)
    speed = speed_table(model, x[: args.n], y[: args.n], threat, registry, args.steps, args.repeats)
    print(speed, flush=True)
    body = (f"Model: {args.model} ({'PGD-trained LeNet-5' if args.model == 'mnist' else 'resnet4b'}), "
            f"{threat.describe()}, device {device}, torch threads {torch.get_num_threads()}.\n\n"
            f"## Against AutoAttack's APGD (seed 0, 1 restart)\n\n{agreement}\n\n"
            f"## Cost (median of {args.repeats} interleaved rounds; the first {args.n} points, those classified "
            f"correctly)\n\n{speed}")
    path = write_report(f"apgd_speed_{args.model}_{device.type}", "APGD: speed and agreement with AutoAttack", body)
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
