"""The training logs: ``log.jsonl`` + ``log.csv`` (+ TensorBoard), and the meters behind their records.

One record every ``log_every`` steps (``kind="step"``) and at each epoch end (``kind="epoch"``):
loss, the defense's metrics, clean/adversarial batch accuracy (from the defense's logits: through the
model's prediction head), lr, seconds, images/s; the last step and epoch records add
``final_acc_clean``, the trained classifier's accuracy (eval mode, its head) on the first
``final_images`` training images, which evaluating ``final.pt`` on them reproduces.  The
:class:`Meter` sums are part of the training state (:mod:`robustreg.training.state`), so a resumed
run writes the records an uninterrupted one would (timing fields aside).
"""

from __future__ import annotations

import csv
import json
import math
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..data.source import Images
from ..defense import DefenseOutput
from ..errors import storage_errors

__all__ = ["FINAL_IMAGES", "TIMING_KEYS", "Meter", "TrainLog", "final_accuracy", "make_record"]

# Record fields that measure time, not training (they differ between a run and its resumption).
TIMING_KEYS = frozenset({"seconds", "images_per_s"})
# How many training images the last records' ``final_acc_clean`` is measured on (at most).
FINAL_IMAGES = 10_000


class Meter:
    """Sums of loss, metrics and accuracies over a window of steps (device tensors; one sync per read)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.images = 0  # since ``start``: for images/s only, not saved
        self.loss: torch.Tensor | None = None
        self.metrics: dict[str, float] = {}
        self.correct: dict[str, torch.Tensor] = {}
        self.counted: dict[str, int] = {}
        self.start = time.perf_counter()

    def add(self, out: DefenseOutput, y: torch.Tensor, images: int) -> None:
        loss = out.loss.detach().float()
        self.loss = loss if self.loss is None else self.loss + loss
        for k, v in out.metrics.items():
            self.metrics[k] = self.metrics.get(k, 0.0) + float(v)
        for key, logits, labels in (("acc_clean", out.logits_clean, out.labels_clean),
                                    ("acc_adv", out.logits_adv, out.labels_adv)):
            if logits is not None:
                labels = labels if labels is not None else y[: logits.shape[0]]
                hit = (logits.detach().argmax(1) == labels).sum()
                self.correct[key] = self.correct[key] + hit if key in self.correct else hit
                self.counted[key] = self.counted.get(key, 0) + int(logits.shape[0])
        self.steps += 1
        self.images += images

    def values(self, world_size: int) -> dict[str, float]:
        """Means over the window, averaged over ranks (all ranks must call this at the same step)."""
        names = ["loss", *sorted(self.metrics), *sorted(self.correct)]
        device = self.loss.device if self.loss is not None else torch.device("cpu")
        vec = [self.loss if self.loss is not None else torch.zeros((), device=device)]
        vec += [torch.tensor(self.metrics[k], device=device) for k in sorted(self.metrics)]
        vec += [self.correct[k].float() / max(1, self.counted[k]) * self.steps for k in sorted(self.correct)]
        stacked = torch.stack([v.float().reshape(()) for v in vec]) / max(1, self.steps)
        if world_size > 1:
            torch.distributed.all_reduce(stacked)
            stacked /= world_size
        return dict(zip(names, stacked.tolist()))

    def images_per_s(self) -> float:
        window = time.perf_counter() - self.start
        return self.images / window if window > 0 else 0.0

    def state_dict(self) -> dict[str, Any]:
        """The sums (CPU tensors, plain numbers): what the next record needs from the steps so far."""
        return {"steps": self.steps, "loss": None if self.loss is None else self.loss.detach().cpu(),
                "metrics": dict(self.metrics), "correct": {k: v.detach().cpu() for k, v in self.correct.items()},
                "counted": dict(self.counted)}

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device) -> None:
        self.reset()
        self.steps = int(state["steps"])
        self.loss = None if state["loss"] is None else state["loss"].to(device)
        self.metrics = {str(k): float(v) for k, v in state["metrics"].items()}
        self.correct = {str(k): v.to(device) for k, v in state["correct"].items()}
        self.counted = {str(k): int(v) for k, v in state["counted"].items()}


def make_record(kind: str, meter: Meter, *, step: int, epoch_end: bool, steps_per_epoch: int, lr: float,
                world_size: int, seconds: float, defense: str) -> dict[str, Any]:
    """One log record of ``meter``'s window; a non-finite mean loss raises FloatingPointError."""
    values = meter.values(world_size)
    if not math.isfinite(values["loss"]):
        raise FloatingPointError(f"defense {defense!r} gave a non-finite loss ({values['loss']}) "
                                 f"in the steps up to {step}")
    rec: dict[str, Any] = {"kind": kind, "step": step,
                           "epoch": step // steps_per_epoch if epoch_end else step / steps_per_epoch, "lr": lr}
    rec.update(values)
    rec["seconds"] = seconds
    rec["images_per_s"] = meter.images_per_s()
    return rec


@torch.no_grad()
def final_accuracy(model: torch.nn.Module, x: torch.Tensor | Images, y: torch.Tensor, *, device: torch.device,
                   batch_size: int, limit: int = FINAL_IMAGES) -> tuple[float, int]:
    """Clean accuracy of ``model`` as it predicts (eval mode, its prediction head) on the first ``limit``
    images of ``x``, and how many; the model's mode is restored."""
    n = min(limit, int(x.shape[0]))
    was_training = model.training
    model.eval()
    try:
        correct = 0
        for i in range(0, n, batch_size):
            xb, yb = x[i:min(i + batch_size, n)].to(device), y[i:min(i + batch_size, n)].to(device)
            correct += int((model(xb).argmax(1) == yb).sum())
    finally:
        model.train(was_training)
    return correct / max(1, n), n


class TrainLog:
    """``log.jsonl`` + ``log.csv`` (+ TensorBoard); rank 0 only.  On resume drops records past the step."""

    def __init__(self, out: Path, *, enabled: bool, tensorboard: bool, resume_step: int | None) -> None:
        self.enabled = enabled
        self.jsonl = out / "log.jsonl"
        self.csv = out / "log.csv"
        self.columns: list[str] | None = None
        self.writer: Any = None
        if not enabled:
            return
        records = self._kept(resume_step)
        with storage_errors(self.jsonl), self.jsonl.open("w") as fh:
            for rec in records:
                fh.write(json.dumps(rec) + "\n")
        if self.csv.exists():
            self.csv.unlink()
        for rec in records:
            self._csv_row(rec)
        if tensorboard:
            self.writer = _tensorboard(out)

    def _kept(self, resume_step: int | None) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        if resume_step is None or not self.jsonl.exists():
            return records
        with self.jsonl.open() as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut by the kill that interrupted the run
                    continue
                if rec.get("step", 0) <= resume_step:
                    records.append(rec)
        return records

    def _csv_row(self, rec: Mapping[str, Any]) -> None:
        new = self.columns is None
        if self.columns is None:
            self.columns = list(rec)
        with storage_errors(self.csv), self.csv.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore", restval="")
            if new:
                writer.writeheader()
            writer.writerow(rec)

    def write(self, rec: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with storage_errors(self.jsonl), self.jsonl.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        self._csv_row(rec)
        if self.writer is not None:
            for k, v in rec.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.writer.add_scalar(f"{rec['kind']}/{k}", v, rec["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn("tensorboard=True but the tensorboard package is not installed; logging to "
                      "log.jsonl/log.csv only", stacklevel=4)
        return None
    return SummaryWriter(str(out / "tensorboard"))
