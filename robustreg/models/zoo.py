"""Zoo entries that need no download: a digits CNN trained here, on first use, and cached."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import load_data
from ..files import save_atomic
from .small import DigitsCNN, digits_cnn

__all__ = ["CACHE_ENV", "cache_root", "digits_cnn_cache", "pretrained_digits_cnn", "train_digits_cnn"]

CACHE_ENV = "ROBUSTREG_CACHE"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$ROBUSTREG_CACHE``, else ``~/.cache/robustreg``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "robustreg"


def train_digits_cnn(*, seed: int = 0, epochs: int = 15, batch_size: int = 64, lr: float = 3e-3) -> DigitsCNN:
    """Train :func:`digits_cnn` on the ``digits`` train split (CPU, Adam, cosine schedule); deterministic per seed.

    ``epochs`` (15), ``batch_size`` (64), ``lr`` (3e-3, Adam).  The global RNG is left as it was
    (randomness comes from a local generator) and training runs on one CPU thread (restored
    afterwards: on a busy machine one thread is much faster for so small a net); a few seconds;
    test accuracy about 98%.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    x, y = load_data("digits", "train").tensors()
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = digits_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * ((len(x) + batch_size - 1) // batch_size))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=gen)
            for start in range(0, len(x), batch_size):
                idx = order[start:start + batch_size]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def digits_cnn_cache(cache_dir: str | os.PathLike | None = None, *, seed: int = 0) -> Path:
    """Where :func:`pretrained_digits_cnn` keeps its weights: ``digits_cnn_seed{seed}_torch{version}_{cpu}.pt``.

    The torch version and the CPU kernels torch picked (``AVX2``, ``AVX512``, ``DEFAULT``) are part of the
    name: the same recipe trained by another torch build or on another CPU ends a few last bits apart, and
    reports on the model then differ at the last point, so a cache from elsewhere is never taken for this
    machine's."""
    kernels = torch.backends.cpu.get_cpu_capability()
    return cache_root(cache_dir) / f"digits_cnn_seed{seed}_torch{torch.__version__}_{kernels}.pt"


def pretrained_digits_cnn(cache_dir: str | os.PathLike | None = None, *, seed: int = 0) -> DigitsCNN:
    """:func:`digits_cnn` trained on the ``digits`` train split, cached at :func:`digits_cnn_cache`.

    ``cache_dir``: default ``$ROBUSTREG_CACHE`` or ``~/.cache/robustreg``.  The first call trains
    (deterministic for ``seed``; a few seconds on CPU) and writes the weights atomically; later
    calls load them.  An unreadable cache file is retrained and replaced; an unwritable cache
    directory only warns.  Returns the model in eval mode on the CPU (about 98% test accuracy).
    """
    path = digits_cnn_cache(cache_dir, seed=seed)
    if path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model = digits_cnn()
            model.load_state_dict(state)
            return model.eval()
        except Exception as exc:  # a truncated or foreign file: retrain and replace it
            warnings.warn(f"ignoring unreadable cached weights {str(path)!r} ({exc}); retraining", stacklevel=2)
    model = train_digits_cnn(seed=seed)
    try:
        save_atomic(model.state_dict(), path)
    except OSError as exc:
        warnings.warn(f"could not cache the trained digits CNN at {str(path)!r}: {exc}", stacklevel=2)
    return model
