"""Evaluation speed options against plain float32: verdict agreement and wall time, PGD on the LeNet-5.

Each option set evaluates the same first ``--n`` MNIST test images on the PGD-trained LeNet-5 with
``pgd`` (``--steps`` steps of 0.03, random start, seed 0) at L_inf eps 0.3 through
``robustreg.evaluation.evaluate`` (the whole pipeline: clean pass, attack, float32 verdict), and is
compared with the float32 run of the same round: robust accuracy, per-sample agreement of the broken
flags, and time ratio (the attack cell's seconds; < 1 is faster).  The option sets run round-robin for
``--rounds`` rounds (median time); compile's first run in the process (the compilation itself, into a
fresh Inductor cache folder, so cold) is reported on its own row and left out of its median.

    python benchmarks/speed_options.py --threads 1            # CPU, 300 images, 10 steps
    python benchmarks/speed_options.py --device cuda --n 1000
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from _common import SHARED, markdown_table, write_report
from robustreg.data import load_data
from robustreg.evaluation import evaluate
from robustreg.models import build_model

EPS = 0.3
OPTION_SETS: dict[str, dict[str, Any]] = {
    "float32 (all off)": {},
    "amp=bf16": {"amp": "bf16"},
    "channels_last": {"channels_last": True},
    "cudnn_benchmark": {"cudnn_benchmark": True},
    "compile (inductor)": {"compile": True},
    "amp=bf16 + channels_last": {"amp": "bf16", "channels_last": True},
}


def run_once(model: torch.nn.Module, data: Any, options: dict[str, Any], state: Path, *, n: int, steps: int,
             batch_size: int, device: str, eps: float = EPS,
             step_size: float = 0.03) -> tuple[float, torch.Tensor, float, dict[str, Any]]:
    """One ``evaluate`` with ``pgd`` under ``options``: (robust accuracy, per-sample broken flags, the attack
    cell's seconds, report["speed"])."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the automatic checks' warnings are not what is measured here
        report = evaluate(model, data, [("pgd", {"steps": steps, "step_size": step_size})], eps, n=n,
                          batch_size=batch_size, device=device, progress=False, state_path=state,
                          keep_state=True, no_check=["unbounded-attack", "logit-scale", "randomized-model"],
                          **options)
    cell = torch.load(state, weights_only=True)["cells"]["0:0"]
    state.unlink()
    result = report["results"][0]
    return result["robust_accuracy"], cell["broken"], result["seconds"], report["speed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--skip", default="", help="comma-separated option-set names to leave out")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = tempfile.TemporaryDirectory()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache.name  # a cold compile: no earlier process's compiled graphs
    model = build_model("lenet5-mnist", weights=str(SHARED / "models" / "mnist_lenet5_advtrained.pt")).eval()
    data = load_data(f"mnist:{SHARED / 'data' / 'mnist'}")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    sets = {label: opts for label, opts in OPTION_SETS.items() if label not in skip}
    seconds: dict[str, list[float]] = {label: [] for label in sets}
    robust: dict[str, list[float]] = {label: [] for label in sets}
    agree: dict[str, list[float]] = {label: [] for label in sets}
    first_compile: float | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            flags: dict[str, torch.Tensor] = {}
            for i, label in enumerate(sets):
                start = time.perf_counter()
                acc, broken, cell_seconds, speed = run_once(model, data, sets[label], Path(tmp) / f"{i}.pt", n=args.n,
                                                            steps=args.steps, batch_size=args.batch_size,
                                                            device=args.device)
                wall = time.perf_counter() - start
                print(f"round {r + 1} {label}: robust {acc:.4f}, cell {cell_seconds:.2f} s, wall {wall:.2f} s "
                      f"speed {speed}", flush=True)
                flags[label] = broken
                if sets[label].get("compile") and first_compile is None:
                    first_compile = wall  # the compilation happens in this first run
                    continue
                seconds[label].append(cell_seconds)
                robust[label].append(acc)
            base = flags[next(iter(sets))]
            for label in sets:
                agree[label].append(float((flags[label] == base).float().mean()))
    base_label = next(iter(sets))
    base_time = statistics.median(seconds[base_label])
    rows = []
    for label in sets:
        if not seconds[label]:
            continue
        t = statistics.median(seconds[label])
        rows.append([label, f"{100 * statistics.median(robust[label]):.2f}%",
                     f"{100 * min(agree[label]):.2f}%", t, t / base_time])
    if first_compile is not None:
        rows.append(["compile (inductor): first run, compilation included (wall)", "-", "-", first_compile,
                     first_compile / base_time])
    table = markdown_table(["option set", "robust accuracy", "flags agreeing with float32 (min over rounds)",
                            "attack seconds (median)", "time ratio to float32"], rows)
    body = (f"PGD-trained LeNet-5 (`mnist_lenet5_advtrained.pt`), first {args.n} MNIST test images, `pgd` "
            f"{args.steps} steps of 0.03 with random start, L_inf eps {EPS}, seed 0, batch {args.batch_size}, "
            f"device {args.device}, torch threads {torch.get_num_threads()}; each option set once per round, "
            f"{args.rounds} rounds round-robin. The verdict (is x_adv misclassified) is the float32 model's in "
            f"every row, so an option can only change what the attack finds. cudnn_benchmark has no effect off "
            f"CUDA (its row shows the run-to-run noise). compile's first run compiles into an empty Inductor "
            f"cache.\n\n{table}")
    print(body)
    path = write_report(f"speed_options_{torch.device(args.device).type}", "Evaluation speed options vs float32",
                        body)
    print(f"wrote {path}")
    cache.cleanup()


if __name__ == "__main__":
    main()
