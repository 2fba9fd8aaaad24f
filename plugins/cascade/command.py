"""The ``robustreg cascade-store`` command: craft and save a cascade store from a source network."""

from __future__ import annotations

import argparse

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments: --source SPEC --weights PATH --data SPEC --out DIR [--n N] [--seed S] ..."""
    parser.add_argument("--source", required=True, help="model SPEC of the already defended source network")
    parser.add_argument("--weights", default=None, help="checkpoint of the source network")
    parser.add_argument("--data", required=True, help="data SPEC (e.g. cifar10:DIR, digits)")
    parser.add_argument("--split", default="train", help="data split to craft from (default: train)")
    parser.add_argument("--out", required=True, help="output directory (cascade_store.pt is written there)")
    parser.add_argument("--n", type=int, default=None, help="first N images only (default: all)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the per-image eps draws of --eps-mode uniform (default 0)")
    parser.add_argument("--eps-min", type=int, default=1, help="smallest eps on the 255 scale (default 1)")
    parser.add_argument("--eps-max", type=int, default=16, help="largest eps on the 255 scale (default 16)")
    parser.add_argument("--eps-mode", choices=("all", "uniform"), default="all",
                        help="all: every image at every eps (the authors' released code, default); uniform: each image "
                             "once at a uniform eps (--seed)")
    parser.add_argument("--center-crop", type=int, default=None, help="centre-crop images to this size first")
    parser.add_argument("--source-id", default=None, help="name saved with the store (default: --source + weights)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or auto (CUDA when present); default: where the model is (the CPU)")


def run(args: argparse.Namespace) -> int:
    from robustreg import build_model, folder_lock, load_data, resolve_device

    from .store import build_cascade_store, load_cascade_store

    with folder_lock(args.out, "--out"):  # held from the start: a second cascade-store into --out is refused at once
        model = build_model(args.source, weights=args.weights)
        model = model.to(resolve_device(args.device, model))  # no --device: where the model is
        data = load_data(args.data, split=args.split)
        source_id = args.source_id or (f"{args.source}@{args.weights}" if args.weights else args.source)
        path = build_cascade_store(model, data, args.out, source_id=source_id,
                                   eps_range=(args.eps_min, args.eps_max), n=args.n, seed=args.seed,
                                   center_crop=args.center_crop, batch_size=args.batch_size, eps_mode=args.eps_mode)
    store = load_cascade_store(path)
    print(f"wrote {len(store)} iter_FGSM images from {source_id!r} (weights {store.source_hash[:12]}) to {path}")
    return 0
