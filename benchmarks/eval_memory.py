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
    python benchmarks/eval_memory.py --imagefolder --threads 1 --repeat 3   # streamed 224 x 224 JPEGs

``--imagefolder``: data as an ImageNet evaluation has it, streamed.  In a temporary folder, the 10,000
CIFAR-10 test JPEGs (the shared data's tarball) resized to 224 x 224 (PIL bilinear, re-saved as JPEG
quality 90) in torchvision's ImageFolder layout; the n = 1000 folder holds the first 100 of each class (hard
links).  Each size is evaluated in its own process as ``robustreg.data.FolderData(DIR)`` -- what
``--data imagefolder:DIR`` reads -- so the engine decodes ``--batch-size`` images at a time and never holds
the set (10,000 x 3 x 224 x 224 float32 would be 5.6 GiB).  The model is a small CNN with adaptive pooling
and RANDOM weights (seed 0): memory does not depend on what it learnt, and its ~10% clean accuracy means the
attacks run on ~n/10 points.  Attacks fgsm and pgd (``--steps``) at L_inf 8/255, independent mode; measured
as above, and the peak RSS of 10,000 against that of 1,000 (target <= 1.1).  ``--mmap-threshold BYTES`` runs
the children with glibc's ``MALLOC_MMAP_THRESHOLD_`` fixed: with glibc's default (a threshold that rises to the
largest block freed) the freed batches and decode buffers are reused from a heap that fragments, and RSS
creeps up with the number of batches even though no image is kept.

    python benchmarks/eval_memory.py --imagefolder --threads 1 --mmap-threshold 131072
    python benchmarks/eval_memory.py --imagefolder --threads 1 --repeat 3 --preload libjemalloc.so.2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
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


def _small_cnn() -> torch.nn.Module:
    """A CNN for any input size (adaptive pooling), random weights: the memory benchmark needs no accuracy."""
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 7, stride=4, padding=3), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)).eval()


def build_folders(root: Path, sizes: list[int], side: int = 224) -> dict[int, Path]:
    """``root/n<N>/<class>/<NNNN>.jpg`` for each N in ``sizes``: the CIFAR-10 test JPEGs resized to ``side``;
    the largest folder first, the others hard links to its first N / 10 images of each class."""
    import tarfile

    from PIL import Image

    tar_path = SHARED / "data" / "cifar10" / "cifar10_test_jpeg_q75_yoongikim.tar.gz"
    if not tar_path.exists():
        raise SystemExit(f"the CIFAR-10 test JPEGs are not at {tar_path} (set ROBUSTREG_SHARED)")
    largest = max(sizes)
    per_class = largest // 10
    big = root / f"n{largest}"
    with tarfile.open(tar_path, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 3 or int(parts[2].split(".")[0]) >= per_class:
                continue
            (big / parts[1]).mkdir(parents=True, exist_ok=True)
            with Image.open(tar.extractfile(member)) as img:  # type: ignore[arg-type]
                img.convert("RGB").resize((side, side), Image.BILINEAR).save(big / parts[1] / parts[2], quality=90)
    folders = {largest: big}
    for n in sizes:
        if n == largest:
            continue
        folders[n] = root / f"n{n}"
        for src in sorted(big.glob("*/*.jpg")):
            if int(src.stem) < n // 10:
                (folders[n] / src.parent.name).mkdir(parents=True, exist_ok=True)
                os.link(src, folders[n] / src.parent.name / src.name)
    return folders


def child_folder(args: argparse.Namespace) -> None:
    """One streamed evaluation of the ImageFolder ``args.folder``; prints one JSON line."""
    from robustreg.data import FolderData
    from robustreg.evaluation import evaluate

    if args.threads:
        torch.set_num_threads(args.threads)
    data = FolderData(args.folder)
    model = _small_cnn()
    before = _rss()
    start = time.perf_counter()
    with warnings.catch_warnings(), PeakRSS() as peak:
        warnings.simplefilter("ignore")  # the automatic checks' warnings are not what is measured
        report = evaluate(model, data, [("fgsm", {}), ("pgd", {"steps": args.steps})], 8 / 255,
                          batch_size=args.batch_size, device=args.device, progress=False, mode="independent", seed=0)
    seconds = time.perf_counter() - start
    print(json.dumps({"n": len(data), "data_bytes": len(data) * 3 * 224 * 224 * 4, "rss_before": before,
                      "rss_peak": peak.peak, "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "seconds": seconds, "clean": report["clean_accuracy"], "read": report["data"]["read"],
                      "robust": {r["label"]: r["robust_accuracy"] for r in report["results"]}}))


def main_folder(args: argparse.Namespace, sizes: list[int]) -> None:
    """Build the folders, evaluate each size in its own process, write the table."""
    import tempfile

    runs = []
    with tempfile.TemporaryDirectory(prefix="robustreg-imagefolder-") as tmp:
        started = time.perf_counter()
        folders = build_folders(Path(tmp), sizes)
        print(f"built {', '.join(str(n) for n in sizes)}-image folders in {time.perf_counter() - started:.0f} s",
              flush=True)
        for repeat in range(args.repeat):  # interleaved: a slow drift of the machine hits every size alike
            for n in sizes:
                cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--folder", str(folders[n]),
                       "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--device", args.device,
                       "--threads", str(args.threads)]
                env = dict(os.environ)
                if args.mmap_threshold:  # glibc: blocks this large are mmapped and handed back when freed
                    env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
                if args.preload:  # another allocator (e.g. jemalloc) in place of glibc's malloc
                    env["LD_PRELOAD"] = args.preload
                done = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True, env=env)
                if done.returncode != 0:
                    raise SystemExit(f"n={n} failed:\n{done.stderr[-3000:]}")
                runs.append({**json.loads(done.stdout.strip().splitlines()[-1]), "repeat": repeat + 1})
                print(runs[-1], flush=True)
    first = runs[0]
    rows = [[run["repeat"], run["n"], run["data_bytes"] / MIB, run["rss_before"] / MIB, run["rss_peak"] / MIB,
             (run["rss_peak"] - run["rss_before"]) / MIB, run["rss_peak"] / first["rss_peak"],
             (run["rss_peak"] - run["rss_before"]) / (first["rss_peak"] - first["rss_before"]), run["maxrss"] / MIB,
             run["seconds"], run["read"], f"{100 * run['clean']:.1f}%",
             ", ".join(f"{k} {100 * v:.1f}%" for k, v in run["robust"].items())]
            for run in runs]
    header = ["run", "n", "the images as float32 (MiB)", "RSS before (MiB)", "peak RSS during evaluate (MiB)",
              "evaluation's own (MiB)", f"peak RSS ratio to n={first['n']}", f"own ratio to n={first['n']}",
              "ru_maxrss (MiB)", "seconds", "data read", "clean", "robust accuracy (independent)"]
    allocator = ("glibc malloc " + (f"with MALLOC_MMAP_THRESHOLD_={args.mmap_threshold}" if args.mmap_threshold
                                    else "as it is"))
    if args.preload:
        allocator = f"LD_PRELOAD={args.preload} (its malloc in place of glibc's)"
    body = (f"ImageFolder of n CIFAR-10 test JPEGs resized to 224 x 224 (built in a temporary folder), read as "
            f"`FolderData(DIR)` (`--data imagefolder:DIR`), streamed {args.batch_size} images at a time; a small CNN "
            f"with adaptive pooling and RANDOM weights (memory does not depend on them; clean accuracy ~10%, so the "
            f"attacks run on ~n/10 points), fgsm and pgd ({args.steps} steps) at L_inf 8/255, independent mode, "
            f"batch {args.batch_size}, device {args.device}, torch threads {args.threads or torch.get_num_threads()}; "
            f"each n in its own process; {allocator}.  "
            f"\"Evaluation's own\" = peak RSS sampled every 5 ms during `evaluate` minus "
            f"the RSS just before it.  Target: peak RSS at n=10000 <= 1.1 x that at n=1000.  Each size ran "
            f"{args.repeat} time(s), interleaved; the ratio columns compare with the first run of n={first['n']}.\n\n"
            + markdown_table(header, rows) + _medians(runs, sizes))
    print(body)
    fixed = f"_mmap{args.mmap_threshold}" if args.mmap_threshold else ""
    fixed += f"_{Path(args.preload).name.split('.')[0]}" if args.preload else ""
    path = write_report(f"eval_memory_imagefolder_{torch.device(args.device).type}{fixed}",
                        "Evaluation peak memory vs n: a streamed ImageFolder of 224 x 224 JPEGs", body)
    print(f"wrote {path}")


def _medians(runs: list[dict], sizes: list[int]) -> str:
    """The summary line of repeated runs: each size's median peak RSS and the ratio of the medians (glibc's heap
    makes one run's high-water mark vary by 10-20% from run to run, so one pair of runs decides nothing)."""
    if len({run["repeat"] for run in runs}) < 2:
        return ""
    median = {n: statistics.median(run["rss_peak"] for run in runs if run["n"] == n) / MIB for n in sizes}
    ratios = [f"n={n}: {median[n] / median[sizes[0]]:.3f}" for n in sizes[1:]]
    return ("\n\nMedian peak RSS over the runs: " + ", ".join(f"n={n} {median[n]:.0f} MiB" for n in sizes)
            + f"; ratio of the medians to n={sizes[0]}: " + ", ".join(ratios) + ".")


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
    parser.add_argument("--imagefolder", action="store_true",
                        help="stream an ImageFolder of 224 x 224 JPEGs instead (batch 50 unless --batch-size)")
    parser.add_argument("--mmap-threshold", type=int, default=0, metavar="BYTES",
                        help="--imagefolder: run each size with glibc's MALLOC_MMAP_THRESHOLD_=BYTES (a fixed "
                             "threshold: freed image buffers go back to the OS instead of fragmenting the heap)")
    parser.add_argument("--preload", default="", metavar="LIB",
                        help="--imagefolder: run each size with LD_PRELOAD=LIB (e.g. libjemalloc.so.2: another malloc)")
    parser.add_argument("--repeat", type=int, default=1, metavar="R",
                        help="--imagefolder: run every size R times, interleaved, and compare the medians")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_folder(args) if args.folder else child(args)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.imagefolder:
        args.batch_size = args.batch_size if args.batch_size != 250 else 50
        main_folder(args, sizes)
        return
    runs = []
    for n in sizes:
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
