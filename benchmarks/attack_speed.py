"""Attack speed: our PGD, iter-FGSM and SI-PGD against the model's own cost, torchattacks and ART.

Each attack runs 20 steps on the same model, batch, eps and step size (eps / 4, random start).
Ratio = attack time / (20 x one forward+backward of the model w.r.t. the input), all measured in this
one process.  Target: our attacks at most 1.05x, and native pgd no slower than torchattacks' PGD on
plain wall time.  robustreg pgd and si-pgd stop working on a sample once one of its iterates succeeded (they
return the first successful iterate, so the result is the same); the column "samples through the
model" shows the model work that saves: torchattacks' PGD takes every sample through every step.

Every candidate runs once per round, round-robin; each ratio is the median (with quartiles) over rounds of
that round's time over the reference's, for wall and for CPU time, with the page faults.  A second table puts
robustreg pgd against torchattacks' PGD head to head: per round, the one's plain wall time over the other's.
The machine's load average before and after the run is printed.

On a shared machine the speed of identical work drifts between calls by more than the 5% the target
allows, so each round's wall ratio is also shown corrected for it (:func:`_common.corrected_ratio`),
beside the plain one, never instead of it: hooks on the model time its own passes in every call, and a
call whose model ran slower per sample than in the reference's call of the same round is scaled back by
that factor.  The reference run once more as a candidate shows what is left of the noise (its ratio is
1 by construction of the work, so its quartiles are the measurement's resolution).

    python benchmarks/attack_speed.py --model mnist --n 1000 --threads 1
    python benchmarks/attack_speed.py --model cifar --n 500 --threads 2
    python benchmarks/attack_speed.py --model cifar --n 500 --threads 1 --only-pgd --repeats 15
    python benchmarks/attack_speed.py --model cifar --n 500 --threads 2 --malloc retain
    python benchmarks/attack_speed.py --model cifar --n 256 --device cuda

Run it with ``OMP_NUM_THREADS`` equal to ``--threads``.  ``--only-pgd`` times the reference (once), robustreg
pgd and torchattacks' PGD only and writes ``attack_speed_<model>_<device>_<threads>t_pgd.md``.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F

from _common import (
    ModelClock,
    Timing,
    Whole,
    markdown_table,
    quartiles,
    ratio_rows,
    real_model_and_data,
    retain_freed_memory,
    round_ratios,
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
    parser.add_argument("--only-pgd", action="store_true",
                        help="time only the reference, robustreg pgd and torchattacks' PGD (a shorter run)")
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
    if args.only_pgd:  # the reference's second run (the noise floor) goes too: rounds are long on a busy machine
        del ours["iter-fgsm"], ours["si-pgd"], runs["20 x forward+backward (the reference again)"]
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
        if args.only_pgd:
            raise ImportError  # not asked for: left out, not reported missing
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
        if not args.only_pgd:
            missing.append("adversarial-robustness-toolbox")

    clock = ModelClock(model)
    load_before = os.getloadavg()
    times = timed_rounds(list(runs.values()), device, args.repeats + 1, clock)  # round 0: warm-up, dropped
    load_after = os.getloadavg()
    times = [t[1:] for t in times]
    rows: list[list[object]] = ratio_rows(list(runs), times, STEPS)
    rows += [[f"{package} PGD", "not installed", *[""] * (len(rows[0]) - 2)] for package in missing]

    table = markdown_table(["what (20 steps)", "wall s", "plain wall ratio to 20 x fwd+bwd: median [quartiles]",
                            "CPU ratio", "page faults / step", "samples through the model / reference's",
                            "speed-corrected wall ratio: median [quartiles]"], rows)
    body = (f"Model: {args.model}, batch {len(x)}, eps {eps:.4g}, step eps/4, device {device}, torch threads "
            f"{torch.get_num_threads()}, OMP_NUM_THREADS {os.environ.get('OMP_NUM_THREADS', 'unset')}, "
            f"malloc {args.malloc}; load average (1, 5, 15 min) {_load(load_before)} before the run, "
            f"{_load(load_after)} after, on {os.cpu_count()} CPUs.  Ratios: median [quartiles] over {args.repeats} "
            f"interleaved rounds (after one warm-up round) of each round's time over the reference's; the corrected "
            f"ratio scales each call by the speed its model's own passes ran at against the reference's in the same "
            f"round.\n\n{table}")
    labels = list(runs)
    if "robustreg pgd" in labels and "torchattacks PGD (bare)" in labels:
        ours_t, theirs_t = times[labels.index("robustreg pgd")], times[labels.index("torchattacks PGD (bare)")]
        body += "\n\n" + head_to_head(ours_t, theirs_t, times[0])
    print(body)
    name = f"attack_speed_{args.model}_{device.type}_{torch.get_num_threads()}t"
    name += "" if args.malloc == "default" else f"_{args.malloc}"
    name += "_pgd" if args.only_pgd else ""
    print(f"\nwritten to {write_report(name, 'Attack speed', body)}")


def _load(avg: tuple[float, float, float]) -> str:
    return ", ".join(f"{v:.2f}" for v in avg)


def head_to_head(ours: list[Timing], theirs: list[Timing], ref: list[Timing]) -> str:
    """robustreg pgd over torchattacks' PGD, per round: plain wall, CPU, and the ratio of their corrected ratios."""
    plain = round_ratios(ours, theirs)
    fixed_ours, fixed_theirs = round_ratios(ours, ref)["corrected"], round_ratios(theirs, ref)["corrected"]
    corrected = "n/a" if fixed_ours is None or fixed_theirs is None else \
        quartiles([a / b for a, b in zip(fixed_ours, fixed_theirs)])
    faster = sum(r <= 1.0 for r in plain["wall"] or [])
    return markdown_table(
        ["robustreg pgd / torchattacks PGD", "plain wall: median [quartiles]", "CPU: median [quartiles]",
         "speed-corrected: median [quartiles]", "rounds pgd was no slower"],
        [["same model, batch, eps, steps, step size", quartiles(plain["wall"] or []), quartiles(plain["cpu"] or []),
          corrected, f"{faster} of {len(ours)}"]])

if __name__ == "__main__":
    main()
