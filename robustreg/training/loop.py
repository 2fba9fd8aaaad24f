"""The training loop: setup -> one step at a time -> log / checkpoint -> finish, returning a TrainResult.

For every batch the :class:`Trainer` calls ``defense.loss(model, x, y, step=step)`` with the model in
train mode, back-propagates, steps SGD and sets the learning rate of the next step from
:mod:`robustreg.schedules`.  Everything that must survive a restart lives in the
:class:`~robustreg.training.state.TrainState`; what this module adds per process (the data, the
device, the log, the progress bar) is rebuilt on every start.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data import builtin_dataset_specs, load_data
from ..data.first import first_images
from ..data.source import Images, mean_image
from ..defense import Defense, DefenseOutput
from ..files import remove_stale_temporaries, save_atomic
from ..lock import folder_lock
from ..models import build_model, load_checkpoint, set_pixel_mean
from ..models.common import needs_pixel_mean
from ..registry import Registry
from ..schedules import LRSchedule
from . import distributed
from .config import TrainConfig
from .defense_params import build_param_schedule, scheduled_defense
from .logging import Meter, TrainLog, final_accuracy, make_record
from .state import TrainState, final_checkpoint, preserve_global_rng, seed_global, to_cpu, trained_head

__all__ = ["TrainResult", "Trainer", "train"]

@dataclass(frozen=True)
class TrainResult:
    """What one :meth:`Trainer.run` did.  ``final``: ``final.pt`` (None when stopped early, ``stop_at``).

    ``steps``, ``seconds``, ``images_per_s``: this process's loop; ``step``: where training stands
    (``total_steps`` when finished); ``elapsed``: seconds trained over all runs of this ``out``.
    """

    final: Path | None
    last: Path
    step: int
    total_steps: int
    steps: int
    seconds: float
    images_per_s: float
    elapsed: float
    world_size: int = 1
    rank: int = 0

    @property
    def finished(self) -> bool:
        return self.final is not None


@dataclass
class _Run:
    """Per-process context around the state: rebuilt on every start, never saved."""

    out: Path
    x: Images  # read a batch at a time (a Dataset is never all in memory)
    y: torch.Tensor
    pad: int
    flip: bool
    per_rank: int
    crop: int
    amp_dtype: torch.dtype | None  # the autocast dtype, None: no autocast
    channels_last: bool
    params: list[nn.Parameter]
    buffers: list[torch.Tensor]
    log: TrainLog
    bar: Any = None
    start_step: int = 0
    saved_step: int = -1

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.log.close()


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``cfg.amp`` on ``device``: float16 on CUDA only, bfloat16 anywhere; None: off."""
    if not cfg.amp or (cfg.amp_dtype == "float16" and device.type != "cuda"):
        return None
    return torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16


class Trainer:
    """Runs ``config.defense`` over ``config.data`` on ``config.model``; see :mod:`robustreg.training`.

    ``registry``: where the defense (and named models/datasets) come from; default ``Registry.create()``.
    ``model``: an ``nn.Module`` or a zero-argument factory used instead of ``build_model(config.model)``
    (a factory is called under the seeded RNG, so its initial weights are reproducible).
    ``data``: used instead of ``load_data(config.data)``: an ``(x, y)`` pair of tensors or numpy arrays, any
    map-style ``Dataset`` or a ``DataLoader`` (read a batch at a time; a shuffling DataLoader is collected), or a
    dataset with ``.tensors()``.
    :meth:`run` returns a :class:`TrainResult`; :meth:`fit` the path of ``final.pt``.  After either,
    ``model``, ``defense``, ``optimizer`` and ``state`` (the :class:`TrainState`) are available.

    Example::

        cfg = TrainConfig(model="digits-cnn", data="digits", defense="at", epochs=5, batch_size=64, lr=0.05,
                          schedule="cosine", defense_params={"eps": 0.1, "steps": 5}, out="runs/at")
        final = Trainer(cfg).fit()          # runs/at/final.pt
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        registry: Any = None,
        model: nn.Module | Callable[[], nn.Module] | None = None,
        data: Any = None,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        if model is None and not config.model:
            raise ValueError("model must be a model spec (a registered name, file.py:factory or pkg.mod:factory)")
        self.config = config
        self._registry = registry
        self._model_arg = model
        self._data_arg = data
        self.state: TrainState | None = None
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    @property
    def defense(self) -> Defense | None:
        """The defense of the last step (a schedule hands each step its values as a copy: see
        :func:`~robustreg.training.defense_params.scheduled_defense`); None before :meth:`run`."""
        return self.state.defense if self.state is not None else None

    # .. entry points ..
    def fit(self) -> Path:
        """Train (or resume) to the end and return the path of ``final.pt``."""
        final = self.run().final
        assert final is not None
        return final

    def run(self, *, stop_at: int | None = None) -> TrainResult:
        """Train (or resume); ``stop_at``: stop after that step with a checkpoint (no ``final.pt``), to resume later.

        The caller's global RNG states are restored when it returns.
        """
        if stop_at is not None and (not isinstance(stop_at, int) or isinstance(stop_at, bool) or stop_at < 1):
            raise ValueError(f"stop_at must be None or an integer >= 1, got {stop_at!r}")
        with distributed.process_group(self.config.device) as world_size, preserve_global_rng(), \
                self._out_lock(world_size):
            state, run = self._setup(world_size)
            try:
                stop = state.total_steps if stop_at is None else min(stop_at, state.total_steps)
                while state.step < stop:
                    result, yb, lr = self._train_step(state, run)
                    self._after_step(state, run, result, yb, lr)
                return self._finish(state, run)
            finally:
                run.close()

    # .. setup ..
    def _out_lock(self, world_size: int) -> AbstractContextManager[Any]:
        """Rank 0 holds the lock of ``out`` for the run (a second run into it is refused: two runs would
        interleave their log rows and overwrite each other's checkpoints); the other ranks write nothing there."""
        return folder_lock(self.config.out, "--out") if distributed.rank(world_size) == 0 else nullcontext()

    def _registry_or_default(self) -> Any:
        if self._registry is None:
            self._registry = Registry.create()
        return self._registry

    def _load_images(self) -> tuple[Images, torch.Tensor]:
        """The first ``n_train`` training samples, checked: tensors as given; a Dataset (``imagefolder:DIR`` at
        ``resize`` / ``center_crop`` included) or an in-order DataLoader read a batch at a time as training asks
        for it, never all in memory (:func:`robustreg.data.first.first_images`)."""
        cfg, data = self.config, self._data_arg
        if data is None:
            data = load_data(cfg.data, split="train", registry=self._registry_or_default())
        if cfg.resize is not None or cfg.center_crop is not None:
            if not callable(getattr(data, "with_size", None)):
                raise ValueError(f"resize / center_crop apply to data imagefolder:DIR only, got data {cfg.data!r} "
                                 f"(its images have one size already)")
            data = data.with_size(cfg.resize, cfg.center_crop)
        try:
            x, y, _ = first_images(data, cfg.n_train)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"training {exc}") from None
        return x, y

    def _build_model(self) -> nn.Module:
        arg, cfg = self._model_arg, self.config
        if arg is None:
            model: Any = build_model(cfg.model, weights=cfg.weights, normalize=cfg.normalize,
                                     registry=self._registry_or_default(), **cfg.model_params)
        else:
            model = arg if isinstance(arg, nn.Module) else arg()
            if not isinstance(model, nn.Module):
                raise TypeError(f"model factory returned {type(model).__name__}, not an nn.Module")
            if cfg.weights:
                model = load_checkpoint(model, cfg.weights)
        return model

    def _dataset_spec(self) -> Any:
        """The registered spec of ``config.data``'s name (None for a dataset the registry does not know)."""
        name = self.config.data.split(":", 1)[0].lower()
        try:
            return self._registry_or_default().dataset(name)
        except LookupError:
            return builtin_dataset_specs().get(name)

    def _flippable(self, x: Images) -> bool:
        """``config.flip``, else the dataset's registered ``flippable`` (never for single-channel images or a
        dataset the registry does not know: pass ``flip=True`` for those)."""
        if self.config.flip is not None:
            return self.config.flip
        if x.shape[1] <= 1:
            return False
        spec = self._dataset_spec()
        return bool(spec is not None and spec.flippable)

    def _augmentation(self, x: Images) -> tuple[int, bool, int]:
        """``(padding, flip, crop side)``; ``augment=None`` follows the dataset's registered ``augment``."""
        cfg = self.config
        augment = cfg.augment
        if augment is None:
            spec = self._dataset_spec()
            augment = bool(getattr(spec, "augment", True)) if spec is not None else True
        size = min(x.shape[-2], x.shape[-1])
        if cfg.crop_size is not None and cfg.crop_size > size + 2 * (cfg.crop_padding or 0):
            raise ValueError(f"crop_size {cfg.crop_size} is larger than the {size}-pixel images (padding "
                             f"{cfg.crop_padding or 0})")
        if not augment:
            return 0, False, 0
        default_pad = 0 if cfg.crop_size is not None else int(round(x.shape[-1] / 8))
        pad = cfg.crop_padding if cfg.crop_padding is not None else default_pad
        return pad, self._flippable(x), cfg.crop_size or 0

    def _resolve_defaults(self) -> None:
        """The config with what the defense declares in place of the keys left unset (``lr_warmup_epochs``),
        so that the checkpoint records numbers; an unknown defense name fails here, before the data loads."""
        spec = self._registry_or_default().defense(self.config.defense)
        if self.config.lr_warmup_epochs is None:
            self.config = replace(self.config, lr_warmup_epochs=float(spec.info.lr_warmup_epochs))

    def _environment(self, world_size: int) -> tuple[int, torch.device]:
        """This process's rank and device; checks that need neither data nor model; the output folder."""
        cfg = self.config
        rank = distributed.rank(world_size)
        device = distributed.resolve_device(cfg.device, distributed.local_rank(world_size))
        if rank == 0 and device.type != "cuda":
            for key in ("amp", "channels_last"):
                if getattr(cfg, key) and not (key == "amp" and cfg.amp_dtype == "bfloat16"):
                    warnings.warn(f"{key}=true applies to CUDA only; ignored on {device}", stacklevel=4)
        if cfg.batch_size % world_size:
            raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the world size {world_size}")
        out = Path(cfg.out)
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(out)  # left by a run killed while writing; the file it replaced is intact
        return rank, device

    def _build_state(self, world_size: int, rank: int, device: torch.device, steps_per_epoch: int,
                     images: Images | None = None) -> TrainState:
        """Model, defense, optimizer, scaler, generator and schedule, seeded; step 0.  ``images``: the
        training images, whose per-pixel mean a ``normalize: pixel-mean`` model front subtracts."""
        cfg = self.config
        total = cfg.iterations if cfg.iterations is not None else (cfg.epochs or 1) * steps_per_epoch
        schedule = LRSchedule.create(cfg.schedule, lr=cfg.lr, total_steps=total, steps_per_epoch=steps_per_epoch,
                                     milestones=cfg.milestones, milestone_unit=cfg.milestone_unit, gamma=cfg.gamma,
                                     peak=cfg.cyclic_peak,
                                     warmup_steps=int(round((cfg.lr_warmup_epochs or 0) * steps_per_epoch)))
        seed_global(cfg.seed)
        model = self._build_model()
        if images is not None and needs_pixel_mean(model):  # a pixel-mean front without a mean (not from the weights)
            set_pixel_mean(model, mean_image(images).unsqueeze(0))  # one pass over the images, a batch at a time
        model = model.to(device)
        if cfg.channels_last and device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        if rank:
            seed_global(cfg.seed + 7919 * rank)  # per-rank noise for the defenses' own randomness
        defense = self._registry_or_default().build_defense(cfg.defense, **cfg.defense_params)
        model, head = trained_head(defense, model)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"model {cfg.model!r} has no trainable parameters")
        optimizer = torch.optim.SGD(params, lr=schedule(0), momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                    nesterov=cfg.nesterov)
        scaler = torch.amp.GradScaler("cuda") if _amp_dtype(cfg, device) == torch.float16 else None
        return TrainState(cfg, model, optimizer, schedule, defense, torch.Generator().manual_seed(cfg.seed),
                          steps_per_epoch, total, scaler=scaler, device=device, world_size=world_size, rank=rank,
                          head=head, param_schedule=build_param_schedule(defense, cfg, steps_per_epoch))

    def _setup(self, world_size: int) -> tuple[TrainState, _Run]:
        self._resolve_defaults()
        cfg = self.config
        rank, device = self._environment(world_size)
        x, y = self._load_images()
        steps_per_epoch = x.shape[0] // cfg.batch_size
        if steps_per_epoch < 1:
            raise ValueError(f"batch_size {cfg.batch_size} is larger than the {x.shape[0]} training samples")
        pad, flip, crop = self._augmentation(x)
        state = self._build_state(world_size, rank, device, steps_per_epoch, x)
        self.state, self.model, self.optimizer = state, state.model, state.optimizer
        last = Path(cfg.out) / "last.pt"
        if last.exists():
            state.resume(last)
        distributed.broadcast_tensors(state.model.state_dict().values(), world_size)
        run = _Run(Path(cfg.out), x, y, pad, flip, cfg.batch_size // world_size, crop,
                   amp_dtype=_amp_dtype(cfg, device), channels_last=cfg.channels_last and device.type == "cuda",
                   params=[p for p in state.model.parameters() if p.requires_grad],
                   buffers=[b for b in state.model.buffers() if b.is_floating_point()],
                   log=TrainLog(Path(cfg.out), enabled=rank == 0, tensorboard=cfg.tensorboard,
                                resume_step=state.step or None),
                   start_step=state.step)
        if rank == 0 and not cfg.quiet:
            run.bar = tqdm(total=state.total_steps, initial=state.step, desc=f"train {cfg.defense}", unit="step",
                           dynamic_ncols=True)
        state.start_clock()
        state.window.start = state.epoch_meter.start = state.clock
        return state, run

    # .. one step ..
    @staticmethod
    def _batch(x_all: Images, y_all: torch.Tensor, idx: torch.Tensor, pad: int, flip: bool,
               generator: torch.Generator, rank: int, per_rank: int, crop: int = 0
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's slice of the global batch ``idx``, augmented with draws made for the whole batch.

        Random crops of side ``crop`` (0: the image's) out of the image zero-padded by ``pad``."""
        b = idx.shape[0]
        offsets = None
        if crop:
            spans = (x_all.shape[-2] + 2 * pad - crop, x_all.shape[-1] + 2 * pad - crop)
            offsets = torch.stack([torch.randint(0, n + 1, (b,), generator=generator) for n in spans], 1)
        elif pad:
            offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator)
        flips = torch.rand(b, generator=generator) < 0.5 if flip else None
        sl = slice(rank * per_rank, (rank + 1) * per_rank)
        x, y = x_all[idx[sl]], y_all[idx[sl]]
        if offsets is not None:
            off = offsets[sl]
            _, c, h, w = x.shape
            if crop:
                h = w = crop
            padded = F.pad(x, (pad, pad, pad, pad))
            rows = (off[:, 0:1] + torch.arange(h)).view(-1, 1, h, 1)
            cols = (off[:, 1:2] + torch.arange(w)).view(-1, 1, 1, w)
            x = padded[torch.arange(x.shape[0]).view(-1, 1, 1, 1), torch.arange(c).view(1, c, 1, 1), rows, cols]
        if flips is not None:
            x = torch.where(flips[sl].view(-1, 1, 1, 1), x.flip(3), x)
        return x, y

    def _next_batch(self, state: TrainState, run: _Run) -> tuple[torch.Tensor, torch.Tensor]:
        bs = self.config.batch_size
        pos = state.step % state.steps_per_epoch
        idx = state.order(run.x.shape[0])[pos * bs:(pos + 1) * bs]
        xb, yb = self._batch(run.x, run.y, idx, run.pad, run.flip, state.generator, state.rank, run.per_rank,
                             run.crop)
        xb = xb.to(state.device, non_blocking=True)
        yb = yb.to(state.device, non_blocking=True)
        if run.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb, yb

    def _train_step(self, state: TrainState, run: _Run) -> tuple[DefenseOutput, torch.Tensor, float]:
        """One optimizer step on the next batch; returns the defense's output, the labels and the lr used."""
        cfg, model, optimizer, scaler = self.config, state.model, state.optimizer, state.scaler
        xb, yb = self._next_batch(state, run)
        lr = state.schedule(state.step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        distributed.broadcast_tensors(run.buffers, state.world_size)
        # the schedule's values for this step, handed over as a copy; the copy carries the defense's state on
        state.defense = scheduled_defense(state.defense, state.param_schedule, state.step)
        model.train()
        amp = nullcontext() if run.amp_dtype is None else torch.autocast(state.device.type, dtype=run.amp_dtype)
        with amp:
            result = state.defense.loss(model, xb, yb, step=state.step)
        if not isinstance(result, DefenseOutput):
            raise TypeError(f"defense {cfg.defense!r} returned {type(result).__name__}, not a DefenseOutput")
        optimizer.zero_grad(set_to_none=True)
        (scaler.scale(result.loss) if scaler is not None else result.loss).backward()
        if state.world_size > 1:
            distributed.average_gradients(run.params, state.world_size)
        if cfg.grad_clip is not None:
            if scaler is not None:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(run.params, cfg.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        state.step += 1
        return result, yb, lr

    # .. log / checkpoint ..
    def _after_step(self, state: TrainState, run: _Run, result: DefenseOutput, yb: torch.Tensor, lr: float) -> None:
        cfg, step = self.config, state.step
        state.window.add(result, yb, cfg.batch_size)
        state.epoch_meter.add(result, yb, cfg.batch_size)
        if run.bar is not None:
            run.bar.update(1)
        epoch_end = step % state.steps_per_epoch == 0

        def record(kind: str, meter: Meter, at_epoch_end: bool) -> dict[str, Any]:
            return make_record(kind, meter, step=step, epoch_end=at_epoch_end, steps_per_epoch=state.steps_per_epoch,
                               lr=lr, world_size=state.world_size, seconds=state.seconds(), defense=cfg.defense)

        final = self._final_accuracy(state, run) if state.done and run.log.enabled else {}
        if step % cfg.log_every == 0 or step == state.total_steps:
            rec = {**record("step", state.window, epoch_end), **final}
            run.log.write(rec)
            if run.bar is not None:
                run.bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{lr:.3g}")
            state.window.reset()
        if epoch_end:
            run.log.write({**record("epoch", state.epoch_meter, True), **final})
            state.epoch_meter.reset()
        if not state.done and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            state.save(run.out / "last.pt")
            run.saved_step = step

    def _final_accuracy(self, state: TrainState, run: _Run) -> dict[str, Any]:
        """``final_acc_clean``: the trained classifier (eval mode, its head) on the first ``final_images``
        un-augmented training images, what evaluating ``final.pt`` on them gives."""
        acc, n = final_accuracy(state.model, run.x, run.y, device=state.device, batch_size=self.config.batch_size)
        return {"final_acc_clean": acc, "final_images": n}

    # .. finish ..
    def _finish(self, state: TrainState, run: _Run) -> TrainResult:
        """The last checkpoint and, when training is done, ``final.pt`` (the model's state dict, with its head)."""
        seconds = state.seconds() - state.elapsed
        if run.saved_step != state.step:
            state.save(run.out / "last.pt")
        final = None
        if state.done:
            final = run.out / "final.pt"
            if state.rank == 0:
                save_atomic(final_checkpoint(to_cpu(state.model.state_dict()), state.head), final)
            distributed.barrier(state.world_size)
        steps = state.step - run.start_step
        return TrainResult(final=final, last=run.out / "last.pt", step=state.step, total_steps=state.total_steps,
                           steps=steps, seconds=seconds,
                           images_per_s=steps * self.config.batch_size / seconds if seconds > 0 else 0.0,
                           elapsed=state.seconds(), world_size=state.world_size, rank=state.rank)


def train(config: TrainConfig, *, registry: Any = None, model: Any = None, data: Any = None) -> Path:
    """Train (or resume) ``config``; returns the path of ``final.pt`` (see :class:`Trainer`)."""
    return Trainer(config, registry=registry, model=model, data=data).fit()
