"""Overhead of robustreg's torchattacks and AutoAttack adapters over calling the toolkits directly.

For each entry it times ``attack(model, x, y)`` against the bare toolkit call on the same model, the
same inputs, the same parameters and the same seed, so both do the same work:

- torchattacks: the bare call builds ``torchattacks.<Class>(model, **kwargs)`` with exactly the keyword
  arguments the adapter derives (``attack.toolkit_kwargs``) and calls it, with torch's RNG seeded alike.
- AutoAttack: the bare call builds ``AutoAttack(model, norm=, eps=, seed=, version="standard")``, sets
  ``attacks_to_run`` to the entry's sub-attack(s) and calls ``run_standard_evaluation`` (which also runs
  AutoAttack's sanity checks: 5 extra forwards, a traced forward).

Two bare baselines: as a user calls the toolkit (parameters require grad, so toolkits that call
``backward()`` also compute parameter gradients), and with the parameters frozen, as the adapters run
it (input gradients only).  overhead = adapter / frozen bare.  Medians over ``--repeats`` interleaved
runs.  Model and data: the PGD-trained LeNet-5 and the first ``--n`` MNIST test images (../shared);
``--aa-n`` for the AutoAttack entries and torchattacks' AutoAttack variant.  Tables:
``results/adapter_overhead_torchattacks.md`` and ``results/adapter_overhead_autoattack.md``.

    python benchmarks/adapter_overhead.py [--n 100] [--aa-n 32] [--repeats 5] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import fnmatch
import logging
import statistics
from collections.abc import Callable
from contextlib import contextmanager

import torch

from _common import interleaved_times, machine, markdown_table, real_model_and_data, write_report
from robustreg import Registry, ThreatModel

LINF = ThreatModel("linf", 0.3)
L2 = ThreatModel("l2", 2.0)
TA_CASES = [  # (entry, threat, params) -- budgets that take ~0.1-2 s on CPU
    ("torchattacks:fgsm", LINF, {}),
    ("torchattacks:bim", LINF, {"steps": 10, "step_size": 0.03}),
    ("torchattacks:pgd", LINF, {"steps": 10, "step_size": 0.03}),
    ("torchattacks:pgdl2", L2, {"steps": 10, "step_size": 0.25}),
    ("torchattacks:rfgsm", LINF, {"steps": 10, "step_size": 0.03}),
    ("torchattacks:mifgsm", LINF, {"steps": 10, "step_size": 0.03}),
    ("torchattacks:tpgd", LINF, {"steps": 10, "step_size": 0.03}),
    ("torchattacks:eotpgd", LINF, {"steps": 5, "step_size": 0.03}),
    ("torchattacks:apgd", LINF, {"steps": 10}),
    ("torchattacks:apgdt", LINF, {"steps": 10}),
    ("torchattacks:fab", LINF, {"steps": 10}),
    ("torchattacks:square", LINF, {"n_queries": 100}),
    ("torchattacks:spsa", LINF, {"steps": 2, "nb_sample": 32, "max_batch_size": 64}),
    ("torchattacks:cw", L2, {"steps": 20}),
    ("torchattacks:deepfool", L2, {"steps": 10}),
    ("torchattacks:autoattack", LINF, {}),
]
AA_CASES = [  # (entry, sub-attacks the bare run is given)
    ("autoattack:apgd-ce", ["apgd-ce"]),
    ("autoattack:apgd-dlr", ["apgd-dlr"]),
    ("autoattack:apgd-t", ["apgd-t"]),
    ("autoattack:fab-t", ["fab-t"]),
    ("autoattack:square", ["square"]),
    ("autoattack:standard", None),
]
SEED = 0


@contextmanager
def frozen(model: torch.nn.Module, on: bool):
    flags = [p.requires_grad for p in model.parameters()]
    try:
        if on:
            for p in model.parameters():
                p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
            p.grad = None


def bare_torchattacks(attack, model, x, y, freeze: bool) -> Callable[[], object]:
    import torchattacks

    cls = getattr(torchattacks, attack.spec.call)

    def run() -> object:
        kwargs = attack.toolkit_kwargs(model, x, SEED)
        with frozen(model, freeze), torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            return cls(model, **kwargs)(x, y)

    return run


def bare_autoattack(threat: ThreatModel, subs: list[str] | None, model, x, y, freeze: bool) -> Callable[[], object]:
    import pyautoattack

    def run() -> object:
        with frozen(model, freeze), torch.random.fork_rng(devices=[]):
            adversary = pyautoattack.AutoAttack(model, eps=threat.eps, norm={"linf": "Linf", "l2": "L2"}[threat.norm],
                                                seed=SEED, version="standard", device=x.device)
            if subs is not None:
                adversary.attacks_to_run = list(subs)
            return adversary.run_standard_evaluation(x, y, batch_size=250)

    return run


def interleaved_medians(fns: list[Callable[[], object]], device: torch.device, repeats: int) -> list[float]:
    return [statistics.median(t) for t in interleaved_times(fns, device, repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="MNIST images for the torchattacks entries")
    parser.add_argument("--aa-n", type=int, default=32, help="MNIST images for the AutoAttack entries")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", default="*", help="fnmatch pattern of entries to run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("auto-attack").setLevel(logging.ERROR)
    device = torch.device(args.device)
    registry = Registry.create()
    model, x_all, y_all = real_model_and_data("mnist", max(args.n, args.aa_n), device)
    rows: dict[str, list[list[object]]] = {"torchattacks": [], "autoattack": []}

    def record(name: str, threat: ThreatModel, n: int, ours: float, bare: float, bare_frozen: float) -> None:
        toolkit = name.split(":", 1)[0]
        rows[toolkit].append([name, threat.describe(), n, ours, bare, bare_frozen, ours / bare_frozen, ours / bare])
        save(toolkit)  # after every row, so an interrupted run keeps what it measured
        print(f"{name:28s} {threat.describe():14s} n={n:4d} ours {ours:8.3f}s  bare {bare:8.3f}s  "
              f"bare-frozen {bare_frozen:8.3f}s  overhead {ours / bare_frozen:.3f}x  vs user-style {ours / bare:.3f}x",
              flush=True)

    def save(toolkit: str) -> object:
        header = ["entry", "threat", "n", "adapter s", "bare s", "bare frozen s", "overhead (vs frozen)",
                  "vs user-style bare"]
        body = (
            f"PGD-trained LeNet-5, first MNIST test images; median of {args.repeats} interleaved runs after one "
            f"warm-up; device {device}; torch threads {torch.get_num_threads()}.\n"
            "overhead = adapter time / bare toolkit time with the parameters frozen (the same work: input "
            "gradients only); the last column compares with the toolkit called as a user would (parameters "
            "require grad).\n\n" + markdown_table(header, rows[toolkit])
        )
        return write_report(f"adapter_overhead_{toolkit}", f"{toolkit} adapter overhead", body)

    for name, threat, params in TA_CASES:
        if not fnmatch.fnmatchcase(name, args.only):
            continue
        n = args.aa_n if name == "torchattacks:autoattack" else args.n  # an AutoAttack-sized budget
        x, y = x_all[:n], y_all[:n]
        attack = registry.build_attack(name, threat, seed=SEED, **params)
        ours, bare, bare_frozen = interleaved_medians(
            [lambda a=attack, x=x, y=y: a(model, x, y), bare_torchattacks(attack, model, x, y, False),
             bare_torchattacks(attack, model, x, y, True)], device, args.repeats)
        record(name, threat, n, ours, bare, bare_frozen)

    x, y = x_all[: args.aa_n], y_all[: args.aa_n]
    for name, subs in AA_CASES:
        if not fnmatch.fnmatchcase(name, args.only):
            continue
        attack = registry.build_attack(name, LINF, seed=SEED)
        ours, bare, bare_frozen = interleaved_medians(
            [lambda a=attack: a(model, x, y), bare_autoattack(LINF, subs, model, x, y, False),
             bare_autoattack(LINF, subs, model, x, y, True)], device, args.repeats)
        record(name, LINF, args.aa_n, ours, bare, bare_frozen)

    print(f"\n{machine()}\nwrote " + ", ".join(str(save(t)) for t, r in rows.items() if r))


if __name__ == "__main__":
    main()
