"""Training throughput of each defense through the Trainer, as a multiple of plain training's cost.

Every defense trains the same model on the same batches (CIFAR-shaped: the 932 exact CIFAR-10 test
images when ../shared has them, else seeded random images) through ``robustreg.training.Trainer``.
Images/s per step come from the trainer's own per-step log (``log_every=1``); the first ``--warmup``
steps of each run are dropped, and the defenses run round-robin for ``--rounds`` rounds so a drift in
the machine's load hits them all.  Cost = plain images/s / defense images/s; k = the defense's attack
steps (``.steps``, or 1 for a single-step defense).  Target: cost <= 1.05 x (k + 1).

Cost is per step with the network optimising the same number of images: ``bidirectional`` and
``pivot`` ADD one adversarial copy per clean image, so they draw half a batch (paper 000's 64 clean
+ 64 adversarial = 128) and cost = their step time / plain training's step time.

    python benchmarks/train_throughput.py                      # resnet20, batch 128, CPU
    python benchmarks/train_throughput.py --device cuda --steps 20 --amp
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from _common import SHARED, markdown_table, write_report
from robustreg import Registry
from robustreg.training import TrainConfig, Trainer

# name -> parameters (eps 8/255 everywhere; AT with the 10 steps the brief asks for)
DEFENSES: dict[str, dict] = {
    "standard": {},
    "kurakin": {},
    "pivot": {},
    "at": {"eps": 8 / 255, "steps": 10},
    "trades-si": {"eps": 8 / 255, "steps": 10},
}
# defenses that add adversarial copies to the batch instead of replacing images: the trainer draws
# batch / (1 + copies) clean images so the network optimises the same number of images per step
ADDS_COPIES = {"bidirectional", "pivot"}


def _data(n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    npz = SHARED / "data" / "cifar10" / "cifar10_test_first932.npz"
    if npz.exists():
        from robustreg.data import load_data

        x, y = load_data(f"npz:{npz}").tensors()
        reps = -(-n // x.shape[0])
        return x.repeat(reps, 1, 1, 1)[:n], y.repeat(reps)[:n], "CIFAR-10 test images (932, repeated)"
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g), "seeded random images"


def _k(trainer: Trainer) -> int | None:
    if trainer.config.defense == "standard":
        return 0
    steps = getattr(trainer.defense, "steps", None)
    if isinstance(steps, int):
        return steps
    info = getattr(trainer.defense, "info", None)
    return 1 if info is not None and info.single_step else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20", help="model spec (default resnet20)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4, help="measured steps per defense and round")
    parser.add_argument("--warmup", type=int, default=1, help="steps dropped at the start of each run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--defenses", default=",".join(DEFENSES), help="comma-separated; unknown ones skip")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    registry = Registry.create()
    known = registry.entries("defenses")
    names = [d for d in args.defenses.split(",") if d]
    skipped = [d for d in names if d not in known]
    names = [d for d in names if d in known]
    if "standard" not in names:
        raise SystemExit("the plain-training defense 'standard' is needed as the baseline")
    per_run = args.warmup + args.steps
    x, y, source = _data(args.batch_size * per_run)
    drawn = {d: args.batch_size // 2 if d in ADDS_COPIES else args.batch_size for d in names}
    step_seconds: dict[str, list[float]] = {d: [] for d in names}
    ks: dict[str, int | None] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in names:
                cfg = TrainConfig(model=args.model, data="bench", defense=name, defense_params=DEFENSES.get(name, {}),
                                  iterations=per_run, batch_size=drawn[name], lr=0.01, schedule="constant",
                                  augment=True, flip=True, device=args.device, amp=args.amp, checkpoint_every=0,
                                  log_every=1, quiet=True, out=str(Path(tmp) / f"{name}-{r}"))
                trainer = Trainer(cfg, registry=registry, data=(x, y))
                trainer.fit()
                ks[name] = _k(trainer)
                log = [json.loads(line) for line in (Path(tmp) / f"{name}-{r}" / "log.jsonl").read_text().splitlines()]
                seconds = [drawn[name] / rec["images_per_s"] for rec in log if rec["kind"] == "step"]
                step_seconds[name] += seconds[args.warmup:]
                print(f"round {r + 1}/{args.rounds} {name}: {statistics.median(seconds[args.warmup:]):.3f} s/step",
                      file=sys.stderr, flush=True)
    plain = statistics.median(step_seconds["standard"])
    header = ["defense", "k (attack steps)", "clean images/step", "optimised images/step", "images/s",
              "cost (x plain)", "budget 1.05 (k+1)", "within budget"]
    rows = []
    for name in names:
        seconds = statistics.median(step_seconds[name])
        cost = seconds / plain
        k = ks[name]
        budget = 1.05 * (k + 1) if k is not None else None
        optimised = 2 * drawn[name] if name in ADDS_COPIES else drawn[name]
        rows.append([name, "-" if k is None else k, drawn[name], optimised, drawn[name] / seconds, cost,
                     "-" if budget is None else budget, "-" if budget is None else ("yes" if cost <= budget else "NO")])
    table = markdown_table(header, rows)
    notes = (f"Model {args.model}, batch {args.batch_size}, device {args.device}"
             f"{' (amp)' if args.amp else ''}, threads {torch.get_num_threads()}; data: {source}; "
             f"median of {args.steps} steps x {args.rounds} rounds per defense after {args.warmup} warm-up step(s).")
    if skipped:
        notes += f"\n\nNot registered (skipped): {', '.join(skipped)}."
    print(table)
    print(notes)
    path = write_report("train_throughput", "Training throughput per defense", f"{notes}\n\n{table}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
