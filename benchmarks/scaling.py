"""Wall time of one evaluation on 1 and 2 torchrun processes (one thread each), and the speed-up.

The PGD-trained LeNet-5 on the first 2000 MNIST test images, pgd + si-pgd + fgsm at eps 0.3; both
runs are launched from this one run, one after the other, and must give the same report.  Printed
(and written to ``results/scaling.txt``): each run's wall time of the ``evaluate`` call, the ranks'
seconds in the attacks and the seconds after their own batches (waiting for the others, the gather).

    ROBUSTREG_SHARED=/path/to/shared python benchmarks/scaling.py [--n 2000] [--steps 10] [--batch-size 250,64]

Two batch sizes by default: the per-process cost and the two processes' contention for the shared caches
depend on it, so the table shows the speed-up at each and the fastest runs' ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import SHARED, machine  # noqa: E402

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def worker(args: argparse.Namespace) -> None:
    """One rank: evaluate (distributed=True) and print rank 0's timing as JSON."""
    import torch

    from robustreg.data import load_data
    from robustreg.evaluation import evaluate
    from robustreg.models import build_model

    torch.set_num_threads(1)
    model = build_model("lenet5-mnist", weights=str(SHARED / "models" / "mnist_lenet5_advtrained.pt"))
    data = load_data(f"mnist:{SHARED / 'data' / 'mnist'}", "test")
    attacks = [("pgd", {"steps": args.steps}), ("si-pgd", {"steps": args.steps}), ("fgsm", {})]
    start = time.perf_counter()
    report = evaluate(model, data, attacks, [0.3], n=args.n, batch_size=int(args.batch_size), progress=False,
                      distributed=True, no_check=["randomized-model", "zero-gradients"])
    wall = time.perf_counter() - start
    if int(os.environ.get("RANK", "0")) == 0:
        print("RESULT " + json.dumps({"wall": wall, "distributed": report["distributed"],
                                      "accuracies": [r["robust_accuracy"] for r in report["results"]]}), flush=True)


def launch(nproc: int, args: argparse.Namespace, port: int, batch_size: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [TORCHRUN, "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1", "--master_port", str(port),
           __file__, "--", "--worker", "--n", str(args.n), "--steps", str(args.steps),
           "--batch-size", str(batch_size)]
    with tempfile.TemporaryDirectory() as cwd:
        out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch-size", default="250,64", help="one or more batch sizes, comma-separated")
    args = p.parse_args([a for a in sys.argv[1:] if a != "--"])
    if args.worker:
        worker(args)
        return
    sizes = [int(b) for b in str(args.batch_size).split(",")]
    lines = [f"# evaluation scaling: lenet5-mnist (PGD-trained), {args.n} MNIST test images, pgd + si-pgd "
             f"({args.steps} steps) + fgsm at eps 0.3, CPU gloo, 1 thread per process",
             f"# machine: {machine()}",
             "batch  processes  wall_s  attack_s_per_rank  after_own_batches_s_per_rank (wait + gather + replay)"]
    summary, walls = [], {}
    for b in sizes:
        runs = {nproc: launch(nproc, args, 29700 + 10 * b + nproc, b) for nproc in (1, 2)}
        if runs[1]["accuracies"] != runs[2]["accuracies"]:
            raise SystemExit(f"batch {b}: the two runs disagree: {runs[1]['accuracies']} vs {runs[2]['accuracies']}")
        for nproc, run in runs.items():
            d = run["distributed"]
            walls[b, nproc] = run["wall"]
            lines.append(f"{b:5d}  {nproc:9d}  {run['wall']:6.1f}  {d['seconds_per_rank']}  "
                         f"{d['gather_seconds_per_rank']}")
        summary.append(f"batch {b}: speed-up (wall 1 / wall 2) {runs[1]['wall'] / runs[2]['wall']:.2f}x; robust "
                       f"accuracies (identical): {runs[1]['accuracies']}")
    best = {nproc: min(w for (_, p), w in walls.items() if p == nproc) for nproc in (1, 2)}
    if len(sizes) > 1:
        summary.append(f"fastest 1-process run over fastest 2-process run: {best[1] / best[2]:.2f}x")
    text = "\n".join(lines + summary) + "\n"
    print(text, end="")
    (HERE / "results" / "scaling.txt").write_text(text)


if __name__ == "__main__":
    main()
