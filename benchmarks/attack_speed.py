"""Attack speed: our PGD, iter-FGSM and SI-PGD against the model's own cost, torchattacks and ART.

Each attack runs 20 steps on the same model and batch.  Ratio = attack time / (20 x one
forward+backward of the model w.r.t. the input), all measured in this one process.  Target: our
attacks at most 1.05x, ahead of torchattacks.  torchattacks' and ART's PGD on the same inputs are
shown beside them.  Every candidate runs once per round, round-robin; each ratio is the median over
rounds of that round's time over the reference's, for wall and for CPU time, with the page faults.

On a shared machine the speed of identical work drifts between calls by more than the 5% the target
allows, so each round's wall ratio is also shown corrected for it (:func:`_common.corrected_ratio`):
hooks on the model time its own passes in every call, and a call whose model ran slower per sample
than in the reference's call of the same round is scaled back by that factor.  The reference run once
more as a candidate shows what is left of the noise after the correction (its ratio is 1 by
construction of the work, so its quartiles are the measurement's resolution).

    python benchmarks/attack_speed.py --model mnist --n 300 --threads 1
    python benchmarks/attack_speed.py --model cifar --n 500 --threads 2
    python benchmarks/attack_speed.py --model cifar --n 500 --threads 2 --malloc retain
    python benchmarks/attack_speed.py --model cifar --n 256 --device cuda
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from _common import (
    ModelClock,
    Whole,
    markdown_table,
    ratio_rows,
    real_model_and_data,
    retain_freed_memory,
    timed_rounds,
    write_report,
)
from robustreg import Registry, ThreatModel

STEPS = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mnist", choices=["mnist", "cifar"])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--malloc", default="default", choices=["default", "retain"],
                        help="retain: glibc keeps freed memory (no page faults on reuse), for every candidate alike")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.malloc == "retain" and not retain_freed_memory():
        raise SystemExit("--malloc retain needs glibc (Linux)")
    device = torch.device(args.device)
    model, x, y = real_model_and_data(args.model, args.n, device)
    eps = 0.3 if args.model == "mnist" else 8 / 255
    threat = ThreatModel("linf", eps)
    registry = Registry.create()

    for p in model.parameters():  # as the Attack base does while an attack runs: input gradients only
        p.requires_grad_(False)

    def forward_backward() -> None:
        xr = x.detach().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xr), y), xr)

    # label -> one call; all run round-robin (interleaved_times), so load drift hits each alike
    def reference() -> None:
        for _ in range(STEPS):
            forward_backward()

    runs: dict[str, object] = {"20 x forward+backward (reference)": reference,
                               "20 x forward+backward (the reference again)": reference}
    ours = {
        "pgd": dict(steps=STEPS, step_size=eps / 4),
        "iter-fgsm": dict(steps=STEPS, alpha=eps / 4),  # paper 000 calls the step alpha
        "si-pgd": dict(steps=STEPS, step_size=eps / 4),
    }
    for name, params in ours.items():
        attack = registry.build_attack(name, threat, seed=0, **params)
        runs[f"robustreg {name}"] = lambda a=attack: a(model, x, y)
    missing = []
    try:
        import torchattacks

        ta = torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=STEPS, random_start=True)
        runs["torchattacks PGD (bare)"] = lambda: ta(x, y)
    except ImportError:
        missing.append("torchattacks")
    try:
        from art.attacks.evasion import ProjectedGradientDescent
        from art.estimators.classification import PyTorchClassifier

        # Whole: ART would run an nn.Sequential's children one by one, past the clock's hooks (same work)
        clf = PyTorchClassifier(Whole(model), loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                nb_classes=int(model(x[:1]).shape[1]), clip_values=(0.0, 1.0),
                                device_type="gpu" if device.type == "cuda" else "cpu")
        art_pgd = ProjectedGradientDescent(clf, eps=eps, eps_step=eps / 4, max_iter=STEPS, num_random_init=1,
                                           batch_size=len(x), verbose=False)
        xn, yn = x.cpu().numpy(), y.cpu().numpy()
        runs["ART PGD (bare)"] = lambda: art_pgd.generate(xn, yn)
    except ImportError:
        missing.append("adversarial-robustness-toolbox")

    clock = ModelClock(model)
    times = timed_rounds(list(runs.values()), device, args.repeats + 1, clock)  # round 0: warm-up, dropped
    rows: list[list[object]] = ratio_rows(list(runs), [t[1:] for t in times], STEPS)
    rows += [[f"{package} PGD", "not installed", "", "", "", ""] for package in missing]

    table = markdown_table(["what (20 steps)", "wall s", "wall ratio to 20 x fwd+bwd", "CPU ratio",
                            "page faults / step", "speed-corrected wall ratio: median [quartiles]"], rows)
    body = (f"Model: {args.model}, batch {len(x)}, eps {eps:.4g}, device {device}, torch threads "
            f"{torch.get_num_threads()}, malloc {args.malloc}; ratios: median over {args.repeats} interleaved rounds "
            f"(after one warm-up round) of each round's time over the reference's; the corrected ratio scales each "
            f"call by the speed its model's own passes ran at against the reference's in the same round.\n\n{table}")
    print(body)
    name = f"attack_speed_{args.model}_{device.type}_{torch.get_num_threads()}t"
    name += "" if args.malloc == "default" else f"_{args.malloc}"
    print(f"\nwritten to {write_report(name, 'Attack speed', body)}")


if __name__ == "__main__":
    main()
