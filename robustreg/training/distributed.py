"""Process-group setup and the collectives the trainer needs (gradients, buffers, state, barriers).

The model is NOT wrapped in ``DistributedDataParallel``: DDP's reducer expects exactly one forward
per backward, but a defense runs the model many times per step (attack iterations in eval mode,
TRADES' clean and adversarial passes), which DDP either syncs at the wrong time or rejects ("marked
ready twice").  Handing the defense the plain module and all-reducing the gradients (flattened, one
collective per bucket, :func:`average_gradients`) is the same arithmetic as DDP, works with every
defense unchanged, and attacks inside a defense never trigger a collective.  Parameters and buffers
are broadcast from rank 0 at start (:func:`broadcast_tensors`), and floating buffers (BatchNorm
statistics) before every step, as DDP's ``broadcast_buffers`` does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = [
    "all_gather_objects",
    "average_gradients",
    "barrier",
    "broadcast_tensors",
    "local_rank",
    "process_group",
    "rank",
    "resolve_device",
    "world_size",
]


def world_size() -> int:
    """The world size of an initialised group, else ``WORLD_SIZE`` (1 when unset)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size())
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1 and not dist.is_available():
        raise ValueError(f"WORLD_SIZE={size} but this torch build has no torch.distributed")
    return size


@contextmanager
def process_group(device: str) -> Iterator[int]:
    """Yield the world size; under torchrun without a group, initialise one (nccl on CUDA, gloo on CPU)
    for the duration.  A group the caller made is used as it is and left alone."""
    dist = torch.distributed
    size = world_size()
    own = False
    if size > 1 and not dist.is_initialized():
        use_cuda = device != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo")
        own = True
    try:
        yield size
    finally:
        if own:
            dist.destroy_process_group()


def rank(size: int) -> int:
    return int(torch.distributed.get_rank()) if size > 1 else 0


def local_rank(size: int) -> int | None:
    return int(os.environ["LOCAL_RANK"]) if size > 1 and "LOCAL_RANK" in os.environ else None


def resolve_device(spec: str, local: int | None) -> torch.device:
    """``auto`` -> cuda if available else cpu; plain ``cuda`` under torchrun -> this rank's GPU."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} asked for but CUDA is not available; use --device cpu")
        if spec == "cuda" and local is not None:
            return torch.device("cuda", local)
    return torch.device(spec)


def broadcast_tensors(tensors: Iterable[torch.Tensor], size: int) -> None:
    """Overwrite ``tensors`` with rank 0's (no-op for one process)."""
    if size > 1:
        for t in tensors:
            torch.distributed.broadcast(t, 0)


def barrier(size: int) -> None:
    if size > 1:
        torch.distributed.barrier()


def all_gather_objects(obj: Any, size: int) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` for one process)."""
    if size == 1:
        return [obj]
    gathered: list[Any] = [None] * size
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def _buckets(grads: Sequence[torch.Tensor], bucket: int) -> Iterator[list[torch.Tensor]]:
    chunk: list[torch.Tensor] = []
    size = 0
    for g in grads:
        if chunk and size + g.numel() > bucket:
            yield chunk
            chunk, size = [], 0
        chunk.append(g)
        size += g.numel()
    if chunk:
        yield chunk


def average_gradients(params: Sequence[nn.Parameter], size: int, bucket: int = 2**23) -> None:
    """All-reduce the mean gradient over ranks, flattened into buckets of ``bucket`` elements."""
    for p in params:
        if p.grad is None:  # every rank must contribute the same tensors
            p.grad = torch.zeros_like(p)
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for p in params:
        assert p.grad is not None
        groups.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
    for grads in groups.values():
        for chunk in _buckets(grads, bucket):
            flat = torch.cat([g.reshape(-1) for g in chunk])
            torch.distributed.all_reduce(flat)
            flat /= size
            offset = 0
            for g in chunk:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()
