"""Wall time of one evaluation on 1 and 2 torchrun processes (one thread each), and the speed-up.

The PGD-trained LeNet-5 on the first 2000 MNIST test images, pgd + si-pgd + fgsm at eps 0.3; both
runs are launched from this one run, one after the other, and must give the same report.  Printed
(and written to ``results/scaling.txt``): each run's wall time of the ``evaluate`` call, the ranks'
seconds in the attacks and the seconds after their own batches (waiting for the others, the gather).

    ROBUSTREG_SHARED=/path/to/shared python benchmarks/scaling.py [--n 2000] [--steps 10] [--batch-size 250,64]
        [--rounds 3]

Two batch sizes by default: the per-process cost and the two processes' contention for the shared caches
depend on it, so the table shows the speed-up at each and the faster runs' ratio.  On a shared VM the same
run's wall time drifts by 20% and more from one run to the next, so each batch size is run ``--rounds``
times, 1 and 2 processes side by side (alternating which goes first), and the speed-up is the median of
the rounds' ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
    # The group's rendezvous waits for the slowest process to start (imports, loading): part of the launch,
    # timed apart; evaluate() then runs in the group as in a user's own torchrun script.
    start = time.perf_counter()
    grouped = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if grouped:
        torch.distributed.init_process_group("gloo")
        torch.distributed.barrier()
    rendezvous = time.perf_counter() - start
    start = time.perf_counter()
    report = evaluate(model, data, attacks, [0.3], n=args.n, batch_size=int(args.batch_size), progress=False,
                      distributed=True, no_check=["randomized-model", "zero-gradients"])
    wall = time.perf_counter() - start
    if grouped:
        torch.distributed.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print("RESULT " + json.dumps({"wall": wall, "rendezvous": rendezvous, "distributed": report["distributed"],
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
    p.add_argument("--rounds", type=int, default=3,
                   help="1- and 2-process runs per batch size, alternating which goes first")
    args = p.parse_args([a for a in sys.argv[1:] if a != "--"])
    if args.worker:
        worker(args)
        return
    sizes = [int(b) for b in str(args.batch_size).split(",")]
    lines = [f"# evaluation scaling: lenet5-mnist (PGD-trained), {args.n} MNIST test images, pgd + si-pgd "
             f"({args.steps} steps) + fgsm at eps 0.3, CPU gloo, 1 thread per process",
             f"# machine: {machine()}",
             "# wall_s: the evaluate() call, in the process group (its rendezvous, a launch cost, apart: rendezvous_s)",
             "batch  round  processes  wall_s  rendezvous_s  attack_s_per_rank  after_own_batches_s_per_rank "
             "(wait + gather + replay)"]
    summary: list[str] = []
    walls: dict[tuple[int, int], list[float]] = {}
    for b in sizes:
        ratios, accuracies = [], None  # a batch is a unit of randomness: another size, other numbers
        for r in range(args.rounds):  # the machine's speed drifts between runs: pair neighbouring runs
            order = (1, 2) if r % 2 == 0 else (2, 1)
            runs = {nproc: launch(nproc, args, 29700 + 10 * b + 1000 * r + nproc, b) for nproc in order}
            for nproc in (1, 2):
                run = runs[nproc]
                if accuracies is None:
                    accuracies = run["accuracies"]
                if run["accuracies"] != accuracies:
                    raise SystemExit(f"batch {b}, {nproc} processes: robust accuracies {run['accuracies']} differ from "
                                     f"{accuracies}")
                d = run["distributed"]
                walls.setdefault((b, nproc), []).append(run["wall"])
                lines.append(f"{b:5d}  {r:5d}  {nproc:9d}  {run['wall']:6.1f}  {run['rendezvous']:12.2f}  "
                             f"{d['seconds_per_rank']}  {d['gather_seconds_per_rank']}")
            ratios.append(runs[1]["wall"] / runs[2]["wall"])
        summary.append(f"batch {b}: speed-up (wall 1 / wall 2) per round {[round(q, 2) for q in ratios]}, median "
                       f"{statistics.median(ratios):.2f}x; robust accuracies (identical in every run): {accuracies}")
    if len(sizes) > 1:
        best = {nproc: min(statistics.median(w) for (_, q), w in walls.items() if q == nproc) for nproc in (1, 2)}
        summary.append(f"the faster batch size's median 1-process wall over the faster one's median 2-process wall: "
                       f"{best[1] / best[2]:.2f}x")
    text = "\n".join(lines + summary) + "\n"
    print(text, end="")
    (HERE / "results" / "scaling.txt").write_text(text)


if __name__ == "__main__":
    main()
