"""Loading a local Hugging Face image classifier, and the module that makes it a robustreg model."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

import robustreg

__all__ = ["HFClassifier", "build"]


class HFClassifier(nn.Module):
    """``model(pixel_values=normalised x).logits``: [0, 1] images in, logits N x K out."""

    def __init__(self, model: nn.Module, mean: list[float] | None, std: list[float] | None) -> None:
        super().__init__()
        self.model = model
        # buffers: they follow .to(device); no normalisation is (x - 0) / 1, exact in floating point
        self.register_buffer("mean", torch.tensor(mean if mean is not None else [0.0]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std if std is not None else [1.0]).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = cast(torch.Tensor, self.mean), cast(torch.Tensor, self.std)
        return self.model(pixel_values=(x - mean) / std).logits


def _normalisation(folder: Path) -> tuple[list[float] | None, list[float] | None]:
    """``(image_mean, image_std)`` of the folder's preprocessor config when it normalises, else (None, None)."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return None, None
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise robustreg.UserError(f"hf:{folder}: {path.name} is not readable JSON ({exc})") from exc
    if not config.get("do_normalize", True) or "image_mean" not in config or "image_std" not in config:
        return None, None
    mean, std = config["image_mean"], config["image_std"]
    mean = [float(mean)] * 3 if isinstance(mean, (int, float)) else [float(v) for v in mean]
    std = [float(std)] * 3 if isinstance(std, (int, float)) else [float(v) for v in std]
    return mean, std


def build(location: str, **params: Any) -> nn.Module:
    """The image classifier saved in the local folder ``location`` (``save_pretrained``), behind its normalisation."""
    folder = Path(location).expanduser()
    if not folder.is_dir():
        raise robustreg.UserError(f"hf:{location}: no such folder; hf: takes a local folder written by "
                                  "save_pretrained (robustreg never downloads from the hub)")
    if not (folder / "config.json").is_file():
        raise robustreg.UserError(f"hf:{location}: the folder has no config.json; save the model there with "
                                  "model.save_pretrained(folder)")
    transformers = importlib.import_module("transformers")
    params.pop("local_files_only", None)
    model = transformers.AutoModelForImageClassification.from_pretrained(str(folder), local_files_only=True,
                                                                          **params)
    mean, std = _normalisation(folder)
    return HFClassifier(model.eval(), mean, std)
