"""Stored iter_FGSM images from an already defended "source" network, for cascade adversarial training.

Paper 000 (Na et al. 2018, arXiv:1708.02582) section 6 / Table 5: iter_FGSM images are crafted
once from the (centre-cropped) training images with a source network, for eps = 1, 2, ..., 16 (on the
255 scale), saved, and "used randomly during training".

The eps law follows the authors' released code (github.com/taesikna/cascade_adv_training,
``utils.py``, ``get_batch``): it keeps one iter_FGSM dataset per eps (``iter_fgsm_datasets``), i.e.
EVERY image at EVERY eps, and at each use draws the eps of each stored slot from the training's own
clipped normal, ``clip(|N(0, max_e / 2)|, 0, max_e)`` floored and shifted to 1..max_e (mean 6.73
for max_e = 16, against 8.5 for a uniform 1..16).  So :func:`build_cascade_store` crafts every eps
by default (``eps_mode="all"``) and :meth:`CascadeStore.draw` draws with that law
(``law="normal"``); ``eps_mode="uniform"`` (one eps per image, uniform on the range) with
``law="uniform"`` (entries drawn uniformly) is robustreg's earlier reading, kept as an option.

A store keeps, for each crafted image, the clean image, its iter_FGSM version, the label and the eps
used, together with the identity of the source network (its name and a SHA-256 of its weights).  It
is written atomically (temporary file, then ``os.replace``).  :func:`load_cascade_store` reads one
or several store files and refuses to mix stores crafted by different sources.

The cascade defense draws stored entries at random, independently of the trainer's batch: it needs
no sample index from the trainer, and because the clean image travels with its adversarial version
the similarity loss can pair them.  Images on the 1/255 grid (the usual uint8 datasets, whose
iter_FGSM steps of 1/255 stay on the grid) are kept as uint8, exactly; others as float32.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustreg import ModelState, ThreatModel, save_atomic

from .attacks import IterFGSM

__all__ = ["EPS_MODES", "FORMAT", "LAWS", "STORE_FILE", "CascadeStore", "build_cascade_store", "load_cascade_store",
           "stored_eps_law", "weights_hash"]

FORMAT = "robustreg-cascade-store/1"
STORE_FILE = "cascade_store.pt"
EPS_MODES = ("all", "uniform")
LAWS = ("normal", "uniform")


def stored_eps_law(n: int, max_eps255: int, generator: torch.Generator) -> torch.Tensor:
    """n eps (255 scale, int64 in 1..max_eps255; mean 6.73 for 16) as the released code picks a stored set.

    ``get_batch``: ``intensity = clip(|N(0, max_e/2)|, 0, max_e)``, ``idx = clip(floor(intensity), 0,
    max_e - 1)``, dataset ``idx`` holds eps ``idx + 1``.
    """
    intensity = (torch.randn(n, generator=generator, dtype=torch.float64) * (max_eps255 / 2)).abs()
    return intensity.clamp(0, max_eps255).floor().clamp(0, max_eps255 - 1).to(torch.int64) + 1


def weights_hash(model: nn.Module) -> str:
    """SHA-256 of a model's state dict (names, dtypes, shapes and values, in key order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _to_storage(x: torch.Tensor) -> torch.Tensor:
    """uint8 when every value is on the 1/255 grid (exact), else float32."""
    scaled = x * 255
    rounded = scaled.round()
    if bool(((scaled - rounded).abs() < 1e-3).all()):
        return rounded.to(torch.uint8)
    return x.to(torch.float32)


def _from_storage(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float32) / 255 if x.dtype == torch.uint8 else x.to(torch.float32)


@dataclass
class CascadeStore:
    """Clean images, their stored iter_FGSM versions, labels and per-image eps, from one source.

    ``x_clean`` / ``x_adv``: N x C x H x W, uint8 (value * 255) or float32 in [0, 1].
    ``source_id``: the name given when crafting; ``source_hash``: SHA-256 of the source's weights.
    """

    x_clean: torch.Tensor
    x_adv: torch.Tensor
    y: torch.Tensor
    eps: torch.Tensor
    source_id: str
    source_hash: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.y.shape[0]
        if self.x_clean.shape != self.x_adv.shape or self.x_clean.shape[0] != n or self.eps.shape != (n,):
            raise ValueError(
                f"inconsistent store: x_clean {tuple(self.x_clean.shape)}, x_adv {tuple(self.x_adv.shape)}, "
                f"y {tuple(self.y.shape)}, eps {tuple(self.eps.shape)}"
            )
        if n == 0:
            raise ValueError("a cascade store must hold at least one image")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def get(self, index: torch.Tensor, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
        """``(x_clean, x_adv, y)`` of the entries ``index`` as float32 [0, 1] images on ``device``."""
        index = index.cpu()
        return (_from_storage(self.x_clean[index]).to(device), _from_storage(self.x_adv[index]).to(device),
                self.y[index].to(device))

    def draw(self, n: int, generator: torch.Generator, *, law: str = "normal", max_eps255: int = 16) -> torch.Tensor:
        """Indices of ``n`` entries drawn with replacement from ``generator``.

        ``law="normal"`` (the released code): each slot's eps from :func:`stored_eps_law`, then an
        entry of that eps uniformly; the store must hold every eps 1..max_eps255 (``eps_mode="all"``
        holds each image at each).  ``law="uniform"``: entries uniformly, whatever their eps.
        """
        if law not in LAWS:
            raise ValueError(f"law must be one of {', '.join(LAWS)}, got {law!r}")
        if law == "uniform":
            return torch.randint(0, len(self), (n,), generator=generator)
        eps255 = stored_eps_law(n, max_eps255, generator)
        position = torch.rand(n, generator=generator, dtype=torch.float64)
        held = (self.eps.to(torch.float64) * 255).round().to(torch.int64)
        index = torch.empty(n, dtype=torch.int64)
        for e in eps255.unique().tolist():
            entries = (held == e).nonzero().squeeze(1)
            if entries.numel() == 0:
                raise ValueError(f"the cascade store holds no image at eps {e}/255 (it holds "
                                 f"{sorted(set(held.tolist()))}); the released code's law needs every eps "
                                 f"1..{max_eps255}: build it with eps_mode='all', or draw with law='uniform'")
            slots = (eps255 == e).nonzero().squeeze(1)
            pick = (position[slots] * entries.numel()).floor().to(torch.int64).clamp(max=entries.numel() - 1)
            index[slots] = entries[pick]
        return index

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write ``out_dir/cascade_store.pt`` atomically; return its path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / STORE_FILE
        payload = {"format": FORMAT, "x_clean": self.x_clean, "x_adv": self.x_adv, "y": self.y, "eps": self.eps,
                   "source_id": self.source_id, "source_hash": self.source_hash, "meta": dict(self.meta)}
        return save_atomic(payload, path)


def _center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if size > h or size > w:
        raise ValueError(f"center_crop must be <= the image size {h}x{w}, got {size}")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


def _craft(source_model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps255: torch.Tensor,
           batch_size: int) -> torch.Tensor:
    """iter_FGSM of each image at its own eps (255 scale), one batched attack per eps."""
    device = next(source_model.parameters()).device
    x_adv = torch.empty_like(x)
    state = ModelState(source_model)
    try:
        for e in eps255.unique().tolist():
            attack = IterFGSM(ThreatModel("linf", e / 255))
            where = (eps255 == e).nonzero().squeeze(1)
            for chunk in where.split(batch_size):
                x_adv[chunk] = attack(source_model, x[chunk].to(device), y[chunk].to(device)).cpu()
    finally:
        state.restore()
    return x_adv


def build_cascade_store(
    source_model: nn.Module,
    data: Any,
    out_dir: str | os.PathLike,
    *,
    source_id: str,
    eps_range: tuple[int, int] = (1, 16),
    n: int | None = None,
    seed: int = 0,
    center_crop: int | None = None,
    batch_size: int = 256,
    eps_mode: str = "all",
) -> Path:
    """Craft iter_FGSM images of ``data`` with ``source_model`` once and save them to ``out_dir``.

    ``eps_mode="all"`` (default, the authors' released code: one dataset per eps): every image at
    every integer eps ``eps_range[0] .. eps_range[1]`` on the 255 scale (paper: 1..16), so the store
    holds N x 16 entries; ``"uniform"``: each image once, at an eps drawn uniformly from that range
    (``seed``).  iter_FGSM runs with alpha = 1/255 and int(min(eps + 4, 1.25 eps)) iterations (images
    are grouped by eps, so each group is one batched attack).

    ``data``: a :class:`robustreg.data.LabeledData` (anything with ``.tensors(n)``) or an ``(x, y)``
    pair of float [0, 1] images and int64 labels.  ``source_id``: a name for the source network,
    saved with the SHA-256 of its weights.  ``center_crop``: crop the images to this size first
    (paper: centre-cropped training images).  The model's modes and gradients are left as found.
    Returns the path of the written store.
    """
    if not isinstance(source_id, str) or not source_id:
        raise ValueError(f"source_id must be a non-empty string naming the source network, got {source_id!r}")
    lo, hi = eps_range
    if not (isinstance(lo, int) and isinstance(hi, int) and 0 < lo <= hi <= 255):
        raise ValueError(f"eps_range must be two ints 1 <= low <= high <= 255 (255 scale), got {eps_range!r}")
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be an int >= 1 or None, got {n!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if eps_mode not in EPS_MODES:
        raise ValueError(f"eps_mode must be one of {', '.join(EPS_MODES)}, got {eps_mode!r}")
    x, y = data.tensors(n) if hasattr(data, "tensors") else data
    if n is not None:
        x, y = x[:n], y[:n]
    x = x.to(torch.float32)
    if center_crop is not None:
        x = _center_crop(x, center_crop)
    if eps_mode == "all":  # eps-major: entry e * N + i is image i at eps lo + e
        eps255 = torch.arange(lo, hi + 1).repeat_interleave(x.shape[0])
        x, y = x.repeat(hi - lo + 1, *([1] * (x.dim() - 1))), y.repeat(hi - lo + 1)
    else:
        eps255 = torch.randint(lo, hi + 1, (x.shape[0],), generator=torch.Generator().manual_seed(seed))
    x_adv = _craft(source_model, x, y, eps255, batch_size)
    store = CascadeStore(
        _to_storage(x), _to_storage(x_adv), y.to(torch.int64).cpu(), eps255.to(torch.float32) / 255,
        source_id, weights_hash(source_model),
        meta={"eps_range_255": [lo, hi], "eps_mode": eps_mode, "seed": seed, "center_crop": center_crop,
              "attack": "iter-fgsm", "alpha": 1 / 255},
    )
    return store.save(out_dir)


def _read(path: Path) -> dict[str, Any]:
    if path.is_dir():
        path = path / STORE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no cascade store at {path} (build one with `robustreg cascade-store`)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a robustreg cascade store (format {FORMAT!r})")
    return payload


def load_cascade_store(
    paths: str | os.PathLike | list[str | os.PathLike], *, expect_source_hash: str | None = None
) -> CascadeStore:
    """Load one store (a directory or its ``cascade_store.pt``) or several, concatenated.

    Raises ValueError if the stores come from different source networks (different weight hashes
    or names), or if ``expect_source_hash`` is given and differs.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise ValueError("paths must name at least one cascade store")
    payloads = [(Path(p), _read(Path(p))) for p in items]
    first_path, first = payloads[0]
    for path, other in payloads[1:]:
        if (other["source_hash"], other["source_id"]) != (first["source_hash"], first["source_id"]):
            raise ValueError(
                f"refusing to mix cascade stores from different sources: {first_path} was crafted by "
                f"{first['source_id']!r} ({first['source_hash'][:12]}), {path} by {other['source_id']!r} "
                f"({other['source_hash'][:12]})"
            )
    if expect_source_hash is not None and first["source_hash"] != expect_source_hash:
        raise ValueError(
            f"cascade store {first_path} was crafted by a source with weights hash {first['source_hash'][:12]}, "
            f"expected {expect_source_hash[:12]}"
        )

    def cat(key: str) -> torch.Tensor:
        parts = [p[key] for _, p in payloads]
        if len({t.dtype for t in parts}) > 1:
            parts = [_from_storage(t) for t in parts]
        return torch.cat(parts)

    return CascadeStore(cat("x_clean"), cat("x_adv"), cat("y"), cat("eps"), first["source_id"],
                        first["source_hash"], dict(first.get("meta", {})))
