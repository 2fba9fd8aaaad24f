"""Per-sample verdicts in report.json: which samples each cell broke, one character per sample.

A report holds, as text of ``n`` characters ``0`` / ``1`` (character ``i`` is sample ``i`` of the evaluated
data, in its order; the form the reproduction scripts' ``bits`` use):

- ``clean_correct_samples`` (top level): 1 where the model classifies the clean sample correctly;
- ``results[k].broken_samples``: 1 where that attack at that eps broke the sample (it ran on it -- a
  clean-correct point, in cascade mode one every earlier attack left standing -- and the model got the
  adversarial point wrong);
- ``worst_case[e].broken_samples``: 1 where some attack at that eps (and, with ``adaptive``, a remedy)
  broke the sample; robust at that eps = ``clean_correct`` and not ``broken``.

One byte per sample and cell: n = 10,000 with 3 eps x 2 attacks is 10 strings, about 100 kB of report.json.
:func:`read_samples` (``EvalReport.samples()``) reads them back as bool tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..readback import Damage

__all__ = ["SampleVerdicts", "bits", "check_bits", "read_samples", "unbits"]

_ZERO = ord("0")


def bits(flags: torch.Tensor) -> str:
    """Per-sample flags as text of ``0`` / ``1`` (one character per sample, in order)."""
    values = flags.detach().to("cpu", torch.bool).numpy().astype(np.uint8) + _ZERO
    return values.tobytes().decode("ascii")


def check_bits(value: Any, where: str, n: int) -> str:
    """``value`` as :func:`bits` writes it for ``n`` samples; anything else is a :class:`Damage`."""
    if not isinstance(value, str):
        raise Damage(f"{where} is {type(value).__name__}, not a string of 0 and 1")
    if len(value) != n:
        raise Damage(f"{where} holds {len(value)} per-sample values, expected n = {n}")
    if value.strip("01"):
        raise Damage(f"{where} holds characters other than 0 and 1")
    return value


def unbits(value: Any, where: str, n: int) -> torch.Tensor:
    """:func:`bits`' text back as a bool tensor of ``n`` (checked by :func:`check_bits`)."""
    text = check_bits(value, where, n)
    return torch.from_numpy(np.frombuffer(text.encode("ascii"), dtype=np.uint8) == ord("1"))


@dataclass(frozen=True)
class SampleVerdicts:
    """Every sample's verdicts of one report (bool tensors, sample ``i`` of the data at index ``i``).

    ``clean_correct``: n; ``broken``: eps x attacks x n (``labels[a]`` at ``eps[e]``); ``broken_any``: eps x n
    (the worst case).  :attr:`robust`: eps x n, clean-correct and not broken at that eps."""

    eps: list[float]
    labels: list[str]
    clean_correct: torch.Tensor
    broken: torch.Tensor
    broken_any: torch.Tensor

    @property
    def robust(self) -> torch.Tensor:
        return self.clean_correct[None, :] & ~self.broken_any

    def cell(self, label: str, eps: float) -> torch.Tensor:
        """The samples attack ``label`` broke at ``eps`` (n bools); an unknown one is a one-line KeyError."""
        if label not in self.labels:
            raise KeyError(f"label must be one of {', '.join(self.labels)}, got {label!r}")
        if eps not in self.eps:
            raise KeyError(f"eps must be one of {', '.join(f'{e:g}' for e in self.eps)}, got {eps!r}")
        return self.broken[self.eps.index(eps), self.labels.index(label)]

    def to_pandas(self) -> Any:
        """One row per sample: ``clean_correct``, ``broken:<label>@<eps>`` per cell and ``robust@<eps>`` per eps
        (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("SampleVerdicts.to_pandas needs pandas: pip install pandas") from None
        columns: dict[str, Any] = {"clean_correct": self.clean_correct.numpy()}
        for e, eps in enumerate(self.eps):
            for a, label in enumerate(self.labels):
                columns[f"broken:{label}@{eps:g}"] = self.broken[e, a].numpy()
            columns[f"robust@{eps:g}"] = self.robust[e].numpy()
        return pd.DataFrame(columns)


def _labels(report: Mapping[str, Any]) -> list[str]:
    return [str(a.get("label") or a["name"]) for a in report["attacks"]]


def read_samples(report: Mapping[str, Any]) -> SampleVerdicts:
    """The per-sample verdicts of ``report`` (a report dict or a report.json read back); a report written
    before robustreg kept them is a ValueError saying so, a damaged one a :class:`~robustreg.readback.Damage`."""
    if "clean_correct_samples" not in report:
        raise ValueError("this report holds no per-sample verdicts (clean_correct_samples): it was written by an "
                         "older robustreg; rerun the evaluation to get them")
    n, eps, labels = int(report["n"]), [float(e) for e in report["eps"]], _labels(report)
    clean = unbits(report["clean_correct_samples"], "clean_correct_samples", n)
    rows: Sequence[Mapping[str, Any]] = report["results"]
    broken = torch.stack([unbits(row.get("broken_samples"), f"results[{k}].broken_samples", n)
                          for k, row in enumerate(rows)]).reshape(len(eps), len(labels), n)
    worst = torch.stack([unbits(row.get("broken_samples"), f"worst_case[{e}].broken_samples", n)
                         for e, row in enumerate(report["worst_case"])])
    return SampleVerdicts(eps, labels, clean, broken, worst)
