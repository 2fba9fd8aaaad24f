"""SPSA speed: robustreg's native ``spsa`` against torchattacks' SPSA and against its own forward passes.

Same model, images and settings for both: ``samples`` model evaluations per image per step
(torchattacks' ``nb_sample = samples / 2`` antithetic pairs, each evaluated at +delta and -delta, is
the same count), delta, Adam learning rate, steps; no early stop and no random start for the native
run, so both do exactly the same number of forward passes.  Reported:

- time ratio torchattacks / native (target >= 3x) and both robust accuracies;
- native time / the bare forward passes it needs: every forward batch size the native run used is
  recorded (a forward pre-hook) and the same batches are replayed through the model under no_grad
  (target <= 1.2x: the estimator, Adam and bookkeeping cost little beyond the model);
- the native default (early stop on) for reference: time, accuracy, mean queries.

Times are medians over ``--repeats`` interleaved runs (CPU), all in this one process.

    python benchmarks/spsa_speed.py                      # MNIST LeNet, 100 images, 10 steps, 128 samples
    python benchmarks/spsa_speed.py --n 50 --steps 5 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchattacks

from _common import SHARED, interleaved_times, markdown_table, write_report
from robustreg import Registry, ThreatModel
from robustreg.data import load_data
from robustreg.models import build_model


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="MNIST test images (default %(default)s)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--samples", type=int, default=128, help="model evaluations per image per step")
    parser.add_argument("--delta", type=float, default=0.001)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--max-batch", type=int, default=1024, help="native forward-pass size cap")
    parser.add_argument("--ta-max-batch", type=int, default=64, help="torchattacks' max_batch_size (its default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = build_model("lenet5-mnist", weights=str(SHARED / "models" / "mnist_lenet5_clntrained.pt"))
    x, y = load_data(f"mnist:{SHARED / 'data' / 'mnist'}").tensors(args.n)
    threat = ThreatModel("linf", args.eps)
    reg = Registry.create()
    common = {"samples": args.samples, "delta": args.delta, "learning_rate": args.lr, "steps": args.steps,
              "max_batch": args.max_batch, "seed": 0}
    native = reg.build_attack("spsa", threat, early_stop=False, random_start=False, **common)
    native_default = reg.build_attack("spsa", threat, **common)
    ta = torchattacks.SPSA(model, eps=args.eps, delta=args.delta, lr=args.lr, nb_iter=args.steps,
                           nb_sample=args.samples // 2, max_batch_size=args.ta_max_batch)

    # Record the forward batch sizes of one native run, to replay them as the bare-forward baseline.
    sizes: list[int] = []
    hook = model.register_forward_pre_hook(lambda _m, inp: sizes.append(int(inp[0].shape[0])))
    try:
        native.run(model, x, y)
    finally:
        hook.remove()
    sizes = sizes[1:]  # the base class's one-sample class-count probe is not the attack's work
    bufs = {s: torch.rand(s, *x.shape[1:]) for s in set(sizes)}

    def replay() -> None:
        with torch.no_grad():
            for s in sizes:
                model(bufs[s])

    results: dict[str, torch.Tensor] = {}

    def run_native() -> None:
        results["native"] = native(model, x, y)

    def run_ta() -> None:
        results["torchattacks"] = ta(x, y)

    # interleaved repeats, so that a change in machine load hits all three alike
    t_replay, t_native, t_ta = (statistics.median(t) for t in interleaved_times(
        [replay, run_native, run_ta], torch.device("cpu"), args.repeats, warmup=0))
    start = time.perf_counter()
    default_result = native_default.run(model, x, y)
    t_default = time.perf_counter() - start

    clean = accuracy(model, x, y)
    acc_native = accuracy(model, results["native"], y)
    acc_ta = accuracy(model, results["torchattacks"], y)
    acc_default = accuracy(model, default_result.x_adv, y)
    forwards = sum(sizes)
    mean_queries = float(default_result.queries.float().mean())
    per_image = args.steps * args.samples

    print(f"model: mnist_lenet5_clntrained, n={args.n}, eps={args.eps}, steps={args.steps}, "
          f"samples={args.samples}, delta={args.delta}, lr={args.lr}, threads={torch.get_num_threads()}")
    print(f"forward passes: {forwards} inputs ({per_image} per image) in {len(sizes)} calls; clean acc {clean:.1%}")
    print(f"bare forwards {t_replay:.2f}s | native {t_native:.2f}s | torchattacks {t_ta:.2f}s")
    print(f"torchattacks / native = {t_ta / t_native:.2f}x (target >= 3x)")
    print(f"native / bare forwards = {t_native / t_replay:.2f}x (target <= 1.2x)")
    print(f"robust acc: native {acc_native:.1%}, torchattacks {acc_ta:.1%}; native default (early stop, random "
          f"start) {acc_default:.1%} in {t_default:.2f}s, mean queries {mean_queries:.0f}")

    rows = [
        ["bare forward passes (replayed)", t_replay, 1.0, "-"],
        ["native spsa (no early stop, no random start)", t_native, t_native / t_replay, f"{acc_native:.1%}"],
        [f"torchattacks.SPSA (nb_sample={args.samples // 2}, max_batch_size={args.ta_max_batch})", t_ta,
         t_ta / t_replay, f"{acc_ta:.1%}"],
        ["native spsa default (early stop, random start; one run)", t_default, t_default / t_replay,
         f"{acc_default:.1%}"],
    ]
    body = (
        f"MNIST LeNet (`mnist_lenet5_clntrained.pt`), first {args.n} test images (clean {clean:.1%}), linf eps "
        f"{args.eps}, {args.steps} steps, {args.samples} model evaluations per image per step, delta {args.delta}, "
        f"Adam lr {args.lr}; {forwards} forwarded inputs in {len(sizes)} calls; torch threads "
        f"{torch.get_num_threads()}; median of {args.repeats}.\n\n"
        + markdown_table(["run", "seconds", "x bare forwards", "robust acc"], rows)
        + f"\n\n- torchattacks / native: **{t_ta / t_native:.2f}x** (target >= 3x)\n"
        f"- native / bare forwards: **{t_native / t_replay:.2f}x** (target <= 1.2x)\n"
    )
    path = write_report("spsa_speed", "SPSA speed: native vs torchattacks vs bare forwards", body)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
