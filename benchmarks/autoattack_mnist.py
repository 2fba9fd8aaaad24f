"""`robustreg autoattack` against calling AutoAttack directly: standard version, L_inf eps 0.3, PGD-trained LeNet-5.

Runs ``robustreg autoattack --model lenet5-mnist --weights ... --data mnist:DIR --eps 0.3 --n N`` (the CLI,
in-process through ``robustreg.cli.main``) and then ``pyautoattack.AutoAttack(model, norm="Linf", eps=0.3,
seed=0, version="standard").run_standard_evaluation(x, y, batch_size=250)`` on the same first N test images,
and reports robust accuracy (and after each sub-attack) and wall time for both.  The two differ only by
random-start noise: the CLI's evaluation batches the clean-correct points, so AutoAttack's per-call
seeding meets different batches.

    python benchmarks/autoattack_mnist.py [--n 1000] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import torch

from _common import SHARED, machine, markdown_table, write_report

EPS = 0.3


def run_cli(n: int, device: str, out: Path) -> tuple[dict, float]:
    from robustreg.cli import main as cli_main

    argv = ["autoattack", "--model", "lenet5-mnist", "--weights", str(SHARED / "models" / "mnist_lenet5_advtrained.pt"),
            "--data", f"mnist:{SHARED / 'data' / 'mnist'}", "--eps", str(EPS), "--n", str(n), "--device", device,
            "--batch-size", "250", "--seed", "0", "--out", str(out), "--quiet"]
    start = time.perf_counter()
    status = cli_main(argv)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"robustreg autoattack exited with {status}")
    return json.loads((out / "report.json").read_text()), seconds


def run_direct(n: int, device: str) -> tuple[float, float, dict[str, float]]:
    import pyautoattack

    from robustreg.data import load_data
    from robustreg.models import build_model

    model = build_model("lenet5-mnist", weights=str(SHARED / "models" / "mnist_lenet5_advtrained.pt"))
    model = model.to(device).eval()
    x, y = load_data(f"mnist:{SHARED / 'data' / 'mnist'}").tensors(n)
    x, y = x.to(device), y.to(device)
    records: dict[str, float] = {}

    class Collect(logging.Handler):  # AutoAttack logs "robust accuracy after APGD-CE: 93.00% ..."
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            if text.startswith("robust accuracy after "):
                sub, value = text[len("robust accuracy after "):].split(":", 1)
                records[sub.lower()] = float(value.split("%")[0]) / 100

    logger = logging.getLogger("auto-attack")
    handler = Collect()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        start = time.perf_counter()
        adversary = pyautoattack.AutoAttack(model, norm="Linf", eps=EPS, seed=0, version="standard", device=device)
        x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=250)
        seconds = time.perf_counter() - start
    finally:
        logger.removeHandler(handler)
    with torch.no_grad():
        robust = float((model(x_adv).argmax(1) == y).float().mean())
    return robust, seconds, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        report, cli_seconds = run_cli(args.n, args.device, Path(tmp))
    result = report["results"][0]
    extras = result.get("extras", {})
    attacked = result.get("attacked", report["n"])
    cli_subs = {k.split(":", 1)[1]: v * attacked / report["n"] for k, v in extras.items()
                if k.startswith("robust_after:") and v is not None}
    direct_robust, direct_seconds, direct_subs = run_direct(args.n, args.device)
    rows = [
        ["clean accuracy", f"{100 * report['clean_accuracy']:.2f}%", "-"],
        *[[f"robust after {sub}", f"{100 * value:.2f}%",
           f"{100 * direct_subs[sub]:.2f}%" if sub in direct_subs else "-"] for sub, value in cli_subs.items()],
        ["robust accuracy", f"{100 * result['robust_accuracy']:.2f}%", f"{100 * direct_robust:.2f}%"],
        ["wall time (s)", f"{cli_seconds:.1f}", f"{direct_seconds:.1f}"],
        ["time ratio (robustreg / direct)", f"{cli_seconds / direct_seconds:.3f}", ""],
    ]
    body = (f"AutoAttack standard, L_inf eps {EPS}, PGD-trained LeNet-5, first {args.n} MNIST test images, "
            f"device {args.device}, seed 0, batch size 250; torch threads {torch.get_num_threads()}.\n\n"
            + markdown_table(["", "robustreg autoattack", "AutoAttack directly"], rows))
    print(body)
    path = write_report("autoattack_mnist", "robustreg autoattack vs AutoAttack on MNIST", body)
    print(f"\n{machine()}\nwrote {path}")


if __name__ == "__main__":
    main()
