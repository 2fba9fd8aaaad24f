"""Overhead of robustreg's ART adapter over calling ART directly.

For each entry (fgm, bim, pgd, apgd-ce, apgd-dlr, square) it times ``attack(model, x, y)`` against the bare
ART call on the same pre-built ``PyTorchClassifier``, the same float32 numpy inputs, the same ART
parameters (taken from the entry's own mapping) and the same RNG seed, so both do the same work.  The
bare call includes building ART's attack object and ``generate``; the adapter adds its input checks,
the model-state snapshot, the numpy round trip and the final projection/verification.

Two bare baselines are timed: ART as a user calls it (the model's parameters require grad, so ART's
``backward()`` also computes parameter gradients), and ART with the parameters frozen, which is what
the adapter does (input gradients only).  The overhead is adapter / frozen-bare; the other ratio shows
what the freezing saves.  Median over ``--repeats`` interleaved runs (order rotated each repeat; one
torch thread by default, so that other load on a small machine perturbs less); the table is written to
``benchmarks/results/adapter_overhead_art.md``.

    python benchmarks/adapter_overhead_art.py [--n 100] [--repeats 9] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from _common import SHARED, interleaved_times, write_report
from robustreg import Registry, ThreatModel

CASES = [  # (entry, threat, params)
    ("art:fgm", ThreatModel("linf", 0.3), {}),
    ("art:bim", ThreatModel("linf", 0.3), {"steps": 10}),
    ("art:pgd", ThreatModel("linf", 0.3), {"steps": 10, "step_size": 0.03}),
    ("art:pgd", ThreatModel("l2", 2.0), {"steps": 10, "step_size": 0.25}),
    ("art:apgd-ce", ThreatModel("linf", 0.3), {"steps": 10}),
    ("art:apgd-dlr", ThreatModel("linf", 0.3), {"steps": 10}),
    ("art:square", ThreatModel("linf", 0.3), {"n_queries": 50}),
]


def load(n: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, str]:
    from robustreg.data import load_data
    from robustreg.models import build_model

    weights = SHARED / "models" / "mnist_lenet5_advtrained.pt"
    mnist = SHARED / "data" / "mnist"
    if weights.exists() and mnist.exists():
        model = build_model("lenet5-mnist", weights=weights).eval()
        x, y = load_data(f"mnist:{mnist}").tensors(n)
        return model, x, y, f"LeNet-5 (PGD-trained), first {n} MNIST test images"
    model = build_model("lenet5-mnist").eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 28, 28, generator=gen)
    return model, x, torch.randint(0, 10, (n,), generator=gen), f"untrained LeNet-5, {n} random images"


def bare_call(attack, classifier, x_np: np.ndarray, y_np: np.ndarray, seed: int) -> np.ndarray:
    """Exactly what the adapter hands ART: build the ART attack, generate, under the same seed."""
    from robustreg import seeded_global_rngs

    with seeded_global_rngs(seed, torch.device("cpu")):
        art_attack = attack.build_art_attack(classifier, len(x_np))
        return art_attack.generate(x=x_np, y=y_np)


def fixed_cost(repeats: int = 200) -> tuple[float, float, float, float]:
    """The adapter's per-call cost with almost no attack work: FGM on 8 images of the 8x8 tiny model.

    Returns (median adapter, median bare-frozen, min adapter, min bare-frozen) in seconds.
    """
    from robustreg.testing import tiny_batch, tiny_model
    from robustreg_plugins.art_adapter._base import classifier_for, one_hot, to_numpy

    model = tiny_model().eval()
    x, y = tiny_batch(8)
    attack = Registry.create().build_attack("art:fgm", ThreatModel("linf", 0.1), seed=0)
    _, classifier = classifier_for(model, x)
    x_np, y_np = to_numpy(x), one_hot(y, classifier.nb_classes)

    def run_bare() -> None:
        for p in model.parameters():
            p.requires_grad_(False)
        bare_call(attack, classifier, x_np, y_np, 0)
        for p in model.parameters():
            p.requires_grad_(True)

    adapter, bare = interleaved_times([lambda: attack(model, x, y), run_bare], torch.device("cpu"), repeats)
    return statistics.median(adapter), statistics.median(bare), min(adapter), min(bare)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from robustreg_plugins.art_adapter._base import art_version, classifier_for, one_hot, to_numpy

    registry = Registry.create()
    model, x, y, what = load(args.n)
    _, classifier = classifier_for(model, x)
    x_np, y_np = to_numpy(x), one_hot(y, classifier.nb_classes)
    rows = []
    for name, threat, params in CASES:
        attack = registry.build_attack(name, threat, seed=0, **params)
        # the seed the adapter derives from its generator, so the bare call does the same work
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=torch.Generator().manual_seed(0)).item())

        def run_adapter(attack=attack) -> None:
            attack(model, x, y)

        def run_bare(attack=attack, seed=seed) -> None:
            bare_call(attack, classifier, x_np, y_np, seed)

        def run_frozen(attack=attack, seed=seed) -> None:
            flags = [p.requires_grad for p in model.parameters()]
            for p in model.parameters():
                p.requires_grad_(False)
            try:
                bare_call(attack, classifier, x_np, y_np, seed)
            finally:
                for p, flag in zip(model.parameters(), flags):
                    p.requires_grad_(flag)
                    p.grad = None

        # the warm-up round fills the classifier cache and first-call allocations
        t_adapter, t_bare, t_frozen = interleaved_times([run_adapter, run_bare, run_frozen], torch.device("cpu"),
                                                        args.repeats)
        a, b, f = (statistics.median(t) for t in (t_adapter, t_bare, t_frozen))
        a_min, f_min = min(t_adapter), min(t_frozen)
        rows.append((f"{name} {threat.describe()} {params or ''}".strip(), a, b, f, a_min, f_min))
        print(f"{rows[-1][0]:<52} adapter {a * 1e3:8.1f} ms  bare {b * 1e3:8.1f} ms  bare-frozen {f * 1e3:8.1f} ms  "
              f"overhead {a / f:5.3f}x (min/min {a_min / f_min:5.3f}x, {(a_min - f_min) * 1e3:+.1f} ms)  "
              f"vs user call {a / b:5.3f}x", flush=True)

    fa, fb, fa_min, fb_min = fixed_cost()
    print(f"fixed cost (FGM, 8 images 1x8x8, tiny model): adapter {fa * 1e3:.2f} ms, bare {fb * 1e3:.2f} ms "
          f"(median; min {fa_min * 1e3:.2f} / {fb_min * 1e3:.2f} ms)", flush=True)

    lines = [
        f"{what}; ART {art_version()}, numpy {np.__version__}; torch threads {args.threads}; "
        f"median of {args.repeats} interleaved runs.",
        "",
        "overhead = adapter / bare ART with frozen parameters (the same compute); "
        "vs user call = adapter / bare ART as usually called (parameters require grad). Target: overhead <= 1.03x.",
        "",
        "min/min: the same ratio over the fastest run of each (less sensitive to other load); "
        "extra ms: fastest adapter run minus fastest frozen bare run.",
        "",
        "| entry | adapter (ms) | bare ART (ms) | bare ART, frozen params (ms) | overhead | min/min | extra ms "
        "| vs user call |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, a, b, f, a_min, f_min in rows:
        lines.append(f"| {label} | {a * 1e3:.1f} | {b * 1e3:.1f} | {f * 1e3:.1f} | {a / f:.3f}x | "
                     f"{a_min / f_min:.3f}x | {(a_min - f_min) * 1e3:+.1f} | {a / b:.3f}x |")
    lines += [
        "",
        "Fixed per-call cost of the adapter (input checks incl. one probe forward, model-state snapshot, "
        "numpy round trip, RNG seeding, final projection and verification), measured with almost no attack work "
        "(FGM on 8 images of robustreg.testing.tiny_model, 200 interleaved runs): "
        f"adapter {fa * 1e3:.2f} ms vs bare ART {fb * 1e3:.2f} ms (median), "
        f"{fa_min * 1e3:.2f} vs {fb_min * 1e3:.2f} ms (min): about {(fa - fb) * 1e3:.2f} ms per call.",
    ]
    print(f"wrote {write_report('adapter_overhead_art', 'ART adapter overhead', chr(10).join(lines))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
