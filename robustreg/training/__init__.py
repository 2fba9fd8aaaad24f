"""The trainer: runs a registered Defense over a dataset, with checkpoints, exact resume, DDP and logs.

The package: :mod:`~robustreg.training.config` (TrainConfig, declared as a ParamSet),
:mod:`~robustreg.training.state` (TrainState: the whole state, ``state_dict`` / ``load_state_dict``),
:mod:`~robustreg.training.loop` (Trainer: setup, one step, log / checkpoint, finish -> TrainResult),
:mod:`~robustreg.training.logging` (JSONL / CSV / TensorBoard and the meters) and
:mod:`~robustreg.training.distributed` (process group, gradient all-reduce).  The command line is
:mod:`robustreg.commands.train`.

``train(TrainConfig(model="resnet20", data="cifar10:DIR", defense="at", epochs=120, ...))`` builds the
model (:func:`robustreg.models.build_model`), loads the train split (:func:`robustreg.data.load_data`),
builds the defense from the registry by name and, for every batch, calls
``defense.loss(model, x, y, step=step)`` with the model in train mode, back-propagates, steps SGD and
sets the learning rate of the next step from :mod:`robustreg.schedules`.

Files in ``config.out``:

- ``last.pt``: the full state (model, optimizer, lr schedule, GradScaler, defense.state_dict(), the
  RNG states: the data generator, torch CPU/CUDA, numpy, python ``random``; the log meters; step,
  epoch, config): :meth:`TrainState.state_dict`.
  Written atomically (temporary file + ``os.replace``) every ``checkpoint_every`` steps and at the end;
  plain tensors/dicts/lists/numbers/strings only, so ``torch.load(..., weights_only=True)`` reads it.
- ``final.pt``: the model's state dict (what ``robustreg evaluate --weights DIR/final.pt`` loads); for a
  defense with a prediction head (:meth:`robustreg.Defense.head`, e.g. HE's ``s * cos(theta)``)
  ``{"state_dict": ..., "head": {"kind": "cosine", "s": ..., ...}}``, and ``build_model(weights=...)``
  applies that head, so evaluation scores the classifier that was trained.  ``last.pt`` records the
  head too.  The model is trained with the head applied (:func:`robustreg.embedding.apply_head`).
- ``log.jsonl`` / ``log.csv``: one record every ``log_every`` steps (``kind="step"``) and at each
  epoch end (``kind="epoch"``): loss, the defense's metrics, clean/adversarial batch accuracy, lr,
  seconds, images/s; the last ones add ``final_acc_clean`` (the trained classifier, eval mode, its
  head, on the first ``final_images`` training images: what ``final.pt`` gives on them).

Resume: running again with the same ``out`` continues from ``last.pt``; a checkpoint of a different
configuration is refused with the differing keys named.  On the same device (and thread count) the
resumed run ends with the same weights, bit for bit, as an uninterrupted one: the data order and
augmentation come from a seeded ``torch.Generator`` saved in the checkpoint (with the epoch's order),
and the global RNGs a defense may use are saved too, and so are the sums behind the next log
records, so the log around a resume point is the uninterrupted run's (timing fields aside).  The
caller's global RNG states are restored when training returns.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) the trainer initialises the process group (nccl
on CUDA, gloo on CPU), gives each rank ``batch_size / world_size`` samples of every global batch and
averages the gradients over ranks after ``backward()``; only rank 0 writes files.  The model is NOT
wrapped in ``DistributedDataParallel`` (why: :mod:`robustreg.training.distributed`).
"""

from __future__ import annotations

from .config import RUNTIME_KEYS, TRAIN_PARAMS, TrainConfig
from .logging import Meter, TrainLog
from .loop import Trainer, TrainResult, train
from .state import CHECKPOINT_FORMAT, TrainState

__all__ = [
    "CHECKPOINT_FORMAT",
    "RUNTIME_KEYS",
    "TRAIN_PARAMS",
    "Meter",
    "TrainConfig",
    "TrainLog",
    "TrainResult",
    "TrainState",
    "Trainer",
    "train",
]
