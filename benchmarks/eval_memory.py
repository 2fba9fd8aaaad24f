"""Peak memory of an evaluation: bounded by the batch, not by the number of images.

Each ``--sizes`` value n runs in its own process (so one run's high-water mark cannot hide another's):
the PGD-trained LeNet-5, the first n MNIST test images (given as tensors, so the images themselves --
n x 784 float32, reported on their own -- are in memory before the evaluation starts), and four attacks
in independent mode (each on every clean-correct point): ``fgsm``, ``pgd``, ``si-pgd`` and ``step-ll``
at L_inf eps 0.3, ``--steps`` steps for the iterative ones, batch ``--batch-size``.  Measured:

- CPU: the resident set size sampled every 5 ms by a thread during ``evaluate`` (its peak minus the RSS
  just before: the evaluation's own memory), and ``resource.getrusage`` ``ru_maxrss`` of the process;
- CUDA: ``torch.cuda.max_memory_allocated`` during ``evaluate`` (the images stay on the CPU; the
  evaluation moves one batch at a time).

The evaluation keeps per-sample records (a few numbers per image and attack) and never the adversarial
examples of more than one batch, so its peak should hardly grow with n (ratio near 1).

    python benchmarks/eval_memory.py --threads 1                       # n = 1000 and 10000, CPU
    python benchmarks/eval_memory.py --sizes 2000,10000 --steps 2
    python benchmarks/eval_memory.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import torch

from _common import SHARED, markdown_table, write_report

HERE = Path(__file__).resolve().parent
EPS = 0.3
MIB = 2**20


def _rss() -> int:
    """This process's resident set size in bytes (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """The largest RSS seen by a thread sampling every ``interval`` seconds while in the block."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = _rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def child(args: argparse.Namespace) -> None:
    """One evaluation of n images; prints one JSON line."""
    from robustreg.data import load_data
    from robustreg.evaluation import evaluate
    from robustreg.models import build_model

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = build_model("lenet5-mnist", weights=str(SHARED / "models" / "mnist_lenet5_advtrained.pt")).eval()
    x, y = load_data(f"mnist:{SHARED / 'data' / 'mnist'}").tensors(args.n)
    attacks = [("fgsm", {}), ("pgd", {"steps": args.steps}), ("si-pgd", {"steps": args.steps}), ("step-ll", {})]
    if device.type == "cuda":
        model.to(device)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        cuda_before = torch.cuda.memory_allocated(device)
    before = _rss()
    start = time.perf_counter()
    with warnings.catch_warnings(), PeakRSS() as peak:
        warnings.simplefilter("ignore")  # the automatic checks' warnings are not what is measured
        report = evaluate(model, (x, y), attacks, EPS, batch_size=args.batch_size, device=device, progress=False,
                          mode="independent")
    seconds = time.perf_counter() - start
    out = {"n": args.n, "data_bytes": x.numel() * x.element_size() + y.numel() * y.element_size(),
           "rss_before": before, "rss_peak": peak.peak, "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
           * 1024, "seconds": seconds, "clean": report["clean_accuracy"],
           "robust": {r["label"]: r["robust_accuracy"] for r in report["results"]}}
    if device.type == "cuda":
        out["cuda_peak"] = torch.cuda.max_memory_allocated(device) - cuda_before
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated n (default %(default)s)")
    parser.add_argument("--steps", type=int, default=3, help="steps of pgd and si-pgd (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    runs = []
    for n in [int(s) for s in args.sizes.split(",") if s.strip()]:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--n", str(n), "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--device", args.device, "--threads", str(args.threads)]
        done = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"n={n} failed:\n{done.stderr[-3000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(runs[-1], flush=True)
    first = runs[0]
    rows = []
    for run in runs:
        own = run["rss_peak"] - run["rss_before"]
        row = [run["n"], run["data_bytes"] / MIB, run["rss_before"] / MIB, run["rss_peak"] / MIB, own / MIB,
               own / (first["rss_peak"] - first["rss_before"]), run["maxrss"] / MIB]
        if "cuda_peak" in run:
            row += [run["cuda_peak"] / MIB, run["cuda_peak"] / first["cuda_peak"]]
        row += [run["seconds"], f"{100 * run['clean']:.2f}%",
                ", ".join(f"{k} {100 * v:.1f}%" for k, v in run["robust"].items())]
        rows.append(row)
    header = ["n", "images (MiB)", "RSS before (MiB)", "RSS peak during evaluate (MiB)",
              "evaluation's own (MiB)", f"ratio to n={first['n']}", "ru_maxrss (MiB)"]
    if "cuda_peak" in first:
        header += ["CUDA max allocated (MiB)", f"CUDA ratio to n={first['n']}"]
    header += ["seconds", "clean", "robust accuracy (independent)"]
    body = (f"PGD-trained LeNet-5, first n MNIST test images (as tensors), attacks fgsm, pgd ({args.steps} steps), "
            f"si-pgd ({args.steps} steps), step-ll at L_inf eps {EPS}, independent mode, batch {args.batch_size}, "
            f"device {args.device}, torch threads {args.threads or torch.get_num_threads()}; each n in its own "
            f"process. \"Evaluation's own\" = peak RSS sampled every 5 ms during `evaluate` minus the RSS just "
            f"before it (the images are already loaded).\n\n" + markdown_table(header, rows))
    print(body)
    path = write_report(f"eval_memory_{torch.device(args.device).type}", "Evaluation peak memory vs n", body)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
