"""RayS on MNIST LeNet: robust accuracy at eps and the average decision-boundary distance (ADBD).

For the standard and the PGD-trained LeNet (``mnist_lenet5_{clntrained,advtrained}.pt``) on the same
images: RayS with early stop (robust accuracy, mean queries) and RayS without early stop, spending
the whole budget on tightening the boundary distance (ADBD, as in RayS' and paper 004's tables).
Expected: the adversarially trained model has the larger ADBD and the higher robust accuracy.

    python benchmarks/rays_adbd.py --n 100 --queries 1000
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import SHARED, markdown_table, write_report
from robustreg import Registry, ThreatModel
from robustreg.data import load_data
from robustreg.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--queries", type=int, default=1000, help="max_queries per image")
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y = load_data(f"mnist:{SHARED / 'data' / 'mnist'}").tensors(args.n)
    reg = Registry.create()
    threat = ThreatModel("linf", args.eps)
    rows = []
    for kind in ("clntrained", "advtrained"):
        model = build_model("lenet5-mnist", weights=str(SHARED / "models" / f"mnist_lenet5_{kind}.pt"))
        with torch.no_grad():
            clean = float((model(x).argmax(1) == y).float().mean())
        row = [kind, f"{clean:.1%}"]
        for early_stop in (True, False):
            attack = reg.build_attack("rays", threat, max_queries=args.queries, early_stop=early_stop)
            start = time.perf_counter()
            result = attack.run(model, x, y)
            seconds = time.perf_counter() - start
            with torch.no_grad():
                robust = float((model(result.x_adv).argmax(1) == y).float().mean())
            row += [f"{robust:.1%}", result.extras["adbd"], float(result.queries.float().mean()), seconds]
            print(f"{kind} early_stop={early_stop}: robust {robust:.1%}, ADBD {result.extras['adbd']:.4f}, "
                  f"mean queries {float(result.queries.float().mean()):.0f}, {seconds:.1f}s")
        rows.append(row)
    header = ["model", "clean", "robust (early stop)", "ADBD (early stop)", "queries", "s",
              "robust (full budget)", "ADBD (full budget)", "queries", "s"]
    body = (f"First {args.n} MNIST test images, linf eps {args.eps}, max_queries {args.queries}, torch threads "
            f"{torch.get_num_threads()}.\n\n" + markdown_table(header, rows) + "\n")
    print(f"wrote {write_report('rays_adbd', 'RayS on MNIST LeNet: robust accuracy and ADBD', body)}")


if __name__ == "__main__":
    main()
