"""What every analysis shares: its output, PNG rendering and batched helpers.

An analysis module (a plugin's) defines a function computing the analysis (the API, returning report.json's
dict), and its plugin registers the command side in ``robustreg_register_analyses``::

    registrar.add_analysis("my-analysis", configure, run, summary="what it shows")

``configure(parser)`` adds its arguments (the shared ones: :func:`add_analysis_args`); ``run(args)``
returns an :class:`AnalysisOutput`, which ``robustreg analyze`` writes with :func:`write_analysis`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from tqdm import tqdm

from ..attack import Attack
from ..data.first import first_samples
from ..evaluation.checking import clean_correct
from ..evaluation.craft import craft_attack
from ..figures import figure, figure_png
from ..files import write_set_atomic
from ..runtime import predict
from ..tables import format_table

__all__ = ["AnalysisOutput", "accuracy", "analysis_samples", "craft_batched", "figure", "figure_png", "finite",
           "json_params", "labelled_models", "markdown_table", "progress", "sample_losses",
           "write_analysis"]

T = TypeVar("T")


@dataclass
class AnalysisOutput:
    """What an analysis writes: ``report`` (report.json, JSON-serialisable, finite numbers), ``markdown``
    (report.md) and ``pngs`` (file name -> PNG bytes, at least one)."""

    report: dict[str, Any]
    markdown: str
    pngs: dict[str, bytes] = field(default_factory=dict)


def finite(value: float) -> float | None:
    """``value`` as a JSON-safe float: None for NaN or inf (report.json holds no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None


def analysis_samples(x: Any, y: Any, caller: str, **required: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The samples an analysis runs on, checked (float images in [0, 1], finite; int64 labels in range) and held in
    memory: an analysis reads its few hundred samples several times (default ``--n 200``).

    ``x, y``: tensors or numpy arrays; with ``y`` None, ``x`` is any data ``evaluate`` takes (an ``(x, y)`` pair, a
    map-style Dataset, a DataLoader, a ``LabeledData``; see :mod:`robustreg.data.collect`), every sample of it.
    ``required``: the analysis's arguments that have a None default only so that ``y`` may be left out; a
    TypeError names the first one missing."""
    for name, value in required.items():
        if value is None:
            raise TypeError(f"{caller} missing required argument: {name!r}")
    try:
        images, labels, _ = first_samples(x if y is None else (x, y), None)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{caller}: {exc}") from None
    return images, labels


def write_analysis(output: AnalysisOutput, out: str | Path) -> list[Path]:
    """Write report.md, the PNGs, then report.json (last) into ``out`` as one set
    (:func:`robustreg.files.write_set_atomic`): a kill leaves the old report.json or the whole new set."""
    if not output.pngs:
        raise ValueError("an analysis writes at least one PNG")
    files: dict[str, bytes | str] = {"report.md": output.markdown, **output.pngs}
    files["report.json"] = json.dumps(output.report, indent=2, allow_nan=False) + "\n"
    return write_set_atomic(out, files, last="report.json")


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "", enabled: bool = True) -> Iterator[T]:
    """``items``, with a tqdm bar on stderr when ``enabled`` (long runs show progress)."""
    if not enabled:
        yield from items
        return
    yield from tqdm(items, total=total, desc=desc, leave=False, dynamic_ncols=True)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y`` (a NaN row is never correct, as in ``evaluate``)."""
    if not len(x):
        return 0.0
    return float(clean_correct(predict(model, x, x.device, batch_size), y).float().mean())


def markdown_table(header: list[str], rows: Iterable[list[Any]]) -> str:
    """A Markdown table (:func:`robustreg.tables.format_table`), floats with 4 significant digits."""
    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return format_table(header, [[cell(v) for v in row] for row in rows], markdown=True)


def json_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Attack parameters as JSON values (non-finite floats as strings)."""
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in params.items()}


def craft_batched(attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  batch_size: int = 256) -> torch.Tensor:
    """``attack`` on every point as a cell of the evaluation engine, in batches of ``batch_size``
    (:func:`robustreg.evaluation.craft.craft_attack`): the adversarial examples, shaped like ``x``."""
    return craft_attack(attack, model, x, y, batch_size)


@torch.no_grad()
def sample_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Per-sample cross-entropy of ``model`` on ``x`` (shape N), in batches."""
    return torch.cat([torch.nn.functional.cross_entropy(model(x[i:i + batch_size]), y[i:i + batch_size],
                                                        reduction="none") for i in range(0, len(x), batch_size)])


def labelled_models(models: Mapping[str, nn.Module] | Iterable[tuple[str, nn.Module]] | nn.Module
                    ) -> list[tuple[str, nn.Module]]:
    """An API's ``models`` argument as (label, model) pairs: one model (labelled "model"), a mapping or pairs."""
    if isinstance(models, nn.Module):
        return [("model", models)]
    items = list(models.items()) if isinstance(models, Mapping) else list(models)
    if not items:
        raise ValueError("models must hold at least one model")
    return items
