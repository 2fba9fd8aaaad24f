"""--adaptive on deliberately broken real checkpoints: does it find the robustness the break hides?

For the PGD-trained LeNet-5 (MNIST, eps 0.3) and resnet4b (CIFAR-10, eps 2/255) from ../shared/models,
five breaks that leave the weights alone:

- ``scale``: logits x 1e4 (cross-entropy saturates; same decisions);
- ``softmax``: the model returns probabilities (same decisions);
- ``noise``: Gaussian noise on the input at every call (a randomised model: decisions change);
- ``quantise``: the input rounded to 8 levels (no gradient; decisions change);
- ``front``: a smooth staircase in front of the model, ``(floor(255 x) + sigmoid(400 (frac(255 x) - 0.5))) /
  255``, which leaves the pixels (multiples of 1/255) where they are and has a gradient of exactly zero
  almost everywhere (gradient masking by a smooth function; decisions practically unchanged).

Per model and break, on the same images: the unbroken model's PGD robust accuracy, plain ``evaluate`` of
the broken model (the overestimate), ``evaluate(..., adaptive=True)`` (the remedies' result), and for the
breaks that change decisions an attack written by hand for them (PGD and APGD through BPDA for the
quantiser and the staircase; PGD-100 with steps of eps/10 on the mean gradient of 20 draws and a 9-draw majority
verdict for the noise).  The target: the
adaptive number within 3 points of the unbroken model's where the break keeps the decisions (scale,
softmax, front) and of the hand-written attack where it does not (quantise, noise).

    python benchmarks/adaptive.py --n 500            # both models; --models mnist for one
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import robustreg
from _common import markdown_table, real_model_and_data, write_report
from robustreg.evaluation import evaluate
from robustreg.testing.breaks import Noisy, Quantise, Scaled, Softmaxed, Staircase

SETTINGS = {  # model -> (eps, PGD steps, step size, noise sigma)
    "mnist": (0.3, 40, 0.01, 0.1),
    "cifar": (2 / 255, 20, 0.5 / 255, 4 / 255),
}


def breaks(model: nn.Module, sigma: float) -> dict[str, nn.Module]:
    return {"scale": Scaled(model, 1e4), "softmax": Softmaxed(model), "noise": Noisy(model, sigma),
            "quantise": nn.Sequential(Quantise(8), model), "front": nn.Sequential(Staircase(), model)}


def worst(report: dict) -> float:
    return 100 * report["worst_case"][-1]["robust_accuracy"]


def eot_by_hand(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, step: float,
                draws: int = 20, votes: int = 9) -> float:
    """PGD on the mean gradient of ``draws`` noisy forwards; a point is broken when the majority of ``votes``
    forwards misclassify it (the clean-correct points by the same vote)."""
    torch.manual_seed(0)
    with torch.no_grad():
        right = torch.stack([model(x).argmax(1) == y for _ in range(votes)]).sum(0) * 2 > votes
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = sum(F.cross_entropy(model(x_adv), y) for _ in range(draws))
        (g,) = torch.autograd.grad(loss, x_adv)
        x_adv = (torch.min(torch.max(x_adv.detach() + step * g.sign(), x - eps), x + eps)).clamp(0, 1)
    with torch.no_grad():
        still = torch.stack([model(x_adv).argmax(1) == y for _ in range(votes)]).sum(0) * 2 > votes
    return 100 * float((right & still).float().mean())


def one_model(which: str, n: int, chosen: list[str], rules: dict[str, list[str]]) -> list[list[object]]:
    eps, steps, step, sigma = SETTINGS[which]
    model, x, y = real_model_and_data(which, n, torch.device("cpu"))
    pgd = [("pgd", {"steps": steps, "step_size": step})]

    def run(m: nn.Module, attacks=pgd, **kw) -> dict:
        return evaluate(m, (x, y), attacks, [eps], progress=False, **kw)

    honest = worst(run(model))
    through = [("pgd", {"steps": 2 * steps, "step_size": step}), ("apgd", {"steps": 100})]
    by_hand: dict[str, Callable[[], float]] = {
        "quantise": lambda: worst(run(nn.Sequential(robustreg.BPDA(Quantise(8)), model), through)),
        "front": lambda: worst(run(nn.Sequential(robustreg.BPDA(Staircase()), model), through)),
        "noise": lambda: eot_by_hand(breaks(model, sigma)["noise"], x, y, eps, 100, eps / 10),
    }
    rows = []
    for name, broken in breaks(model, sigma).items():
        if name not in chosen:
            continue
        torch.manual_seed(0)
        plain = run(broken)
        started = time.perf_counter()
        torch.manual_seed(0)
        adaptive = run(broken, adaptive=True)
        seconds = time.perf_counter() - started
        hand = by_hand[name]() if name in by_hand else None
        target = hand if name in ("quantise", "noise") else honest
        gap = worst(adaptive) - target
        remedies = sorted({r["remedy"] for r in adaptive["adaptive"]["runs"] if r["broken"]})
        warned = sorted(c["name"] for c in plain["checks"] if c["status"] == "warn")
        rules.setdefault(adaptive["adaptive"]["verdict"], []).append(f"{which} {name}")
        rows.append([which, name, f"{honest:.1f}", f"{worst(plain):.1f}", f"{worst(adaptive):.1f}",
                     "-" if hand is None else f"{hand:.1f}", f"{gap:+.1f}", "yes" if abs(gap) <= 3 else "NO",
                     ", ".join(warned) or "-", ", ".join(remedies) or "-", f"{seconds:.0f}"])
        print(" | ".join(str(v) for v in rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="images per model (default 500)")
    parser.add_argument("--models", default="mnist,cifar", help="mnist, cifar or both (default)")
    parser.add_argument("--breaks", default="scale,softmax,noise,quantise,front", help="which breaks (default all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    header = ["model", "break", "unbroken PGD", "plain evaluate", "--adaptive", "by hand", "adaptive - target",
              "within 3", "checks that warned", "remedies that broke points", "adaptive s"]
    chosen = [b.strip() for b in args.breaks.split(",")]
    rules: dict[str, list[str]] = {}
    rows = [row for which in args.models.split(",") for row in one_model(which.strip(), args.n, chosen, rules)]
    verdicts = "; ".join(f"{', '.join(where)}: {rule}" for rule, where in rules.items())
    body = (f"n = {args.n} images per model, robust accuracy in %, one torch thread. Target: the unbroken "
            "model's PGD for scale, softmax and front (decisions unchanged), the hand-written attack for "
            "quantise (PGD-2k and APGD-100 through BPDA, the worse for the model) and noise (EoT over 20 draws, "
            "PGD-100, steps eps/10, 9-draw majority, the clean points by the same vote).\n\n"
            f"The verdict rule of --adaptive (report.json `adaptive.verdict`): {verdicts}.\n\n"
            + markdown_table(header, rows))
    print(write_report("adaptive", "--adaptive on broken real checkpoints", body))


if __name__ == "__main__":
    main()
