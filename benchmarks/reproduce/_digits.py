"""Shared by the reproduction scripts: small adversarially trained models of ours on scikit-learn digits.

:func:`train_digits` runs :func:`robustreg.train` (digits-cnn on the 1437-image digits train split) into
``runs/<defense>-eps<eps>-e<epochs>-s<seed>/``; a finished run in that folder is reused, not retrained
(the trainer resumes from ``last.pt``), so two claims trained the same way share one model.
:func:`robust_accuracy` evaluates on the 360-image digits test split; :func:`cached_evaluation` keeps a model's
evaluation in ``runs/evals/`` under its weights' digest, so a rerun (or another process) reads it back.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNS = Path(os.environ.get("ROBUSTREG_REPRODUCE_RUNS", Path(tempfile.gettempdir()) / "robustreg-reproduce-runs"))


@dataclass(frozen=True)
class Recipe:
    """How our digits models are trained (the same for every defense, so only the defense differs)."""

    eps: float = 0.1
    epochs: int = 30
    steps: int = 10
    warmup: int = 5
    batch_size: int = 64
    lr: float = 0.05
    n_train: int | None = None  # None: all 1437 (smoke runs: a few batches)

    def describe(self) -> str:
        return (f"digits-cnn (2 conv + 2 linear layers, 1x8x8) on the scikit-learn digits train split (1437 "
                f"images), {self.epochs} epochs, batch {self.batch_size}, SGD lr {self.lr} (cosine), momentum 0.9, "
                f"weight decay 5e-4, no augmentation; inner attack: {self.steps} PGD steps at eps {self.eps:g} "
                f"(step: the defense's default, eps/4), eps ramped up linearly over the first {self.warmup} epochs "
                "(`eps_warmup_epochs`); other defense parameters at the registry defaults (paper 004's: TRADES "
                "lambda 6, ALP lambda 3, MART lambda 6; SI: s 15, m 0.2, beta 0.2), except ALP's pairing, the squared "
                "mean of the logit difference (form `mse`, the released code of the Table 1 row paper 004 "
                "reproduces; the literal unsquared norm collapsed to chance in this recipe)")


# Defense parameters that differ from the registry's defaults in our recipe, with the reason (the run folder's
# name records them, so a run trained with other values is not reused).
# alp / alp-si: paper 004 writes the pairing lam * ||W^T (z - z')||_2 (unsquared); taken literally (form
# "paper004", lam 3) it pulls digits-cnn to a constant output in this recipe (chance accuracy at lr 0.05 and
# 0.02, issue 11); "mse" is the released code of the paper whose Table 1 row paper 004 reproduces (Pang et al.
# 2020, F.mse_loss of the logits), see robustreg_plugins.classic.defenses.ALP.
DEFENSE_PARAMS: dict[str, dict[str, Any]] = {"alp": {"form": "mse"}, "alp-si": {"form": "mse"}}


def train_digits(defense: str, seed: int, recipe: Recipe, runs: Path = RUNS, model: str = "digits-cnn",
                 params: dict[str, Any] | None = None) -> tuple[Path, float, bool]:
    """(final.pt, seconds, reused) of ``defense`` trained with ``recipe`` and ``seed``; ``params``: defense
    parameters beyond :data:`DEFENSE_PARAMS` (a sweep's s, m, beta...), recorded in the folder's name."""
    from robustreg import TrainConfig, train

    extra = {**DEFENSE_PARAMS.get(defense, {}), **(params or {})}
    out = runs / (f"{defense}-eps{recipe.eps:g}-e{recipe.epochs}-st{recipe.steps}-w{recipe.warmup}-s{seed}"
                  + "".join(f"-{k}{v}" for k, v in sorted(extra.items()))
                  + (f"-n{recipe.n_train}" if recipe.n_train else "")
                  + ("" if model == "digits-cnn" else f"-{model}"))
    reused = (out / "final.pt").exists()
    start = time.perf_counter()
    params = {k: v for k, v in {"eps": recipe.eps, "steps": recipe.steps}.items() if k in _declared(defense)}
    params.update(extra)
    path = train(TrainConfig(model=model, data="digits", defense=defense, defense_params=params,
                             n_train=recipe.n_train,
                             epochs=recipe.epochs, eps_warmup_epochs=min(recipe.warmup, recipe.epochs - 1),
                             batch_size=recipe.batch_size, lr=recipe.lr, schedule="cosine", seed=seed,
                             out=str(out), quiet=True, device="cpu", checkpoint_every=0))
    return path, time.perf_counter() - start, reused


def logged_training_seconds(path: Path) -> float | None:
    """The training loop's own seconds, as the trainer logged them in the run folder of ``path`` (final.pt):
    ``seconds`` of the last epoch record of ``log.jsonl`` (cumulative over the epochs).  The same for a reused
    folder as for the run that trained it (:func:`train_digits`' seconds are the reuse's); None without a log."""
    log = Path(path).parent / "log.jsonl"
    if not log.exists():
        return None
    epochs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    seconds = [e["seconds"] for e in epochs if e.get("kind") == "epoch" and "seconds" in e]
    return round(float(seconds[-1]), 1) if seconds else None


def _declared(defense: str) -> set[str]:
    """The parameter names ``defense`` declares (single-step defenses have no ``steps``)."""
    from robustreg import Registry

    return {p.name for p in Registry.create().defense(defense).params}


def digits_test(n: int = 360, spec: str = "digits") -> tuple[Any, Any]:
    """The first ``n`` of the 360 digits test images and labels (``spec="digits28"``: at 28 x 28)."""
    from robustreg import load_data

    data = load_data(spec, "test")
    return data.tensors(min(n, len(data)))


def weights_digest(path: Path) -> str:
    """sha256 of a final.pt's tensors (names, shapes, bytes): equal digests, equal models."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def images_key(x: Any, y: Any) -> str:
    """A short digest of the evaluation images and labels (part of a cached result's name)."""
    return hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()[:16]


def config_key(name: str, config: dict[str, Any]) -> str:
    """A cache key naming an evaluation's configuration: ``<name>-<16 hex digits of the sorted JSON of config>``.

    ``config`` must hold everything that changes the result beyond the weights and the images (attacks and their
    parameters, eps, attack seed, mode, checks, smoke...): two configurations share a key only if they are equal."""
    if not name or any(c in name for c in "/\\ "):
        raise ValueError(f"config_key: name must be non-empty, without '/', '\\' or spaces; got {name!r}")
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def cached_evaluation(path: Path, x: Any, y: Any, key: str, compute: Callable[[], dict[str, Any]],
                      runs: Path = RUNS) -> tuple[dict[str, Any], str]:
    """``(result, weights digest)`` of the evaluation ``compute()`` of the model ``path`` on the images ``x, y``,
    kept in ``runs/evals/<digest[:24]>-<images_key>-<key>.json`` (``key``: the configuration, e.g.
    :func:`config_key`): read back when present, else computed and written atomically (a killed run leaves no
    half file; two processes computing the same one write the same content).

    The attacks are deterministic given the weights, images and configuration, so a rerun, another claim on the
    same model, or another process gets the stored result instead of a second evaluation.  ``compute`` returns a
    JSON-able dict; a fresh result goes through the same JSON round trip as a stored one (tuples become lists), so
    both give the same rows.  The stored file adds ``"weights"`` (the path it was computed from; provenance only,
    not returned: a model with the same weights elsewhere reads the same result)."""
    from robustreg import write_atomic

    if not key or "/" in key or "\\" in key:
        raise ValueError(f"cached_evaluation: key must be non-empty and hold no path separator; got {key!r}")
    digest = weights_digest(path)
    cache = runs / "evals" / f"{digest[:24]}-{images_key(x, y)}-{key}.json"
    if cache.exists():
        stored = json.loads(cache.read_text())
    else:
        stored = json.loads(json.dumps({**compute(), "weights": str(path)}))
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache, json.dumps(stored))
    stored.pop("weights", None)
    return stored, digest


def evaluate_samples(model: Any, x: Any, y: Any, attacks: list[Any], eps: Any, seed: int, device: str = "cpu",
                     checks: bool = True, mode: str = "independent") -> tuple[dict[str, Any], dict[str, str]]:
    """``robustreg.evaluate`` plus the per-sample results: ``(report, {"clean": bits, label: bits, ...})``.

    A bit is 1 where the model is correct on that image (clean, or under that attack: clean-correct and not
    broken), as :func:`_verdict.bits` writes it; read from the run's own state file (kept for this), so the
    numbers are the report's (in cascade mode cumulative: correct under this attack and every earlier one).
    Each attack's key is its label in the report (its name unless repeated), with ``@<eps * 255>`` when
    ``eps`` is a list of several.
    ``checks=False`` turns off the automatic evaluation checks (smoke runs only: they cost more than the run)."""
    import torch
    from _verdict import bits

    from robustreg import Registry, evaluate

    every_check = tuple(spec.name for spec in Registry.create().checks())  # the core's and the plugins'
    with tempfile.TemporaryDirectory() as tmp:
        state_path = Path(tmp) / "state.pt"
        report = evaluate(model, (x, y), attacks, eps, seed=seed, mode=mode, device=device, progress=False,
                          no_check=() if checks else every_check, state_path=state_path, keep_state=True)
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    clean = state["clean_correct"].bool()
    samples, standing = {"clean": bits(clean)}, clean.clone()
    per_eps = len(report["attacks"])
    for i, entry in enumerate(report["results"]):  # eps-major: cell "e:a" (the state's key) is entry e * A + a
        e, a = divmod(i, per_eps)
        if a == 0:
            standing = clean.clone()
        broken = state["cells"][f"{e}:{a}"]["broken"].bool()
        # cascade: cumulative, as the report's numbers are (an attack runs only on what the earlier ones left)
        standing = (standing if mode == "cascade" else clean) & ~broken
        key = entry["label"] if len(report["eps"]) == 1 else f"{entry['label']}@{round(entry['eps'] * 255)}"
        samples[key] = bits(standing)
    return report, samples


def robust_accuracy(model: Any, x: Any, y: Any, attacks: list[tuple[str, dict[str, Any]]], eps: float,
                    seed: int, device: str = "cpu", checks: bool = True,
                    samples: dict[str, str] | None = None) -> dict[str, Any]:
    """{"clean": acc, attack name: robust acc, ...}: each attack alone on all clean-correct points.

    ``samples``: filled with the per-sample results (:func:`evaluate_samples`)."""
    report, per_sample = evaluate_samples(model, x, y, attacks, eps, seed, device, checks)
    if samples is not None:
        samples.update(per_sample)
    out: dict[str, Any] = {"clean": report["clean_accuracy"]}
    for entry in report["results"]:
        out[entry["attack"]] = entry["robust_accuracy"]
    return out


def worst_case_accuracy(model: Any, x: Any, y: Any, attacks: list[str], eps: float, seed: int,
                        device: str = "cpu", samples: dict[str, str] | None = None) -> float:
    """Robust accuracy against all ``attacks`` together: each runs on the points the previous ones left standing
    (cascade mode, as AutoAttack does), so a point counts as robust only if it survives every one.

    ``samples``: filled with ``{"worst-case": bits}`` (correct under every attack)."""
    report, per_sample = evaluate_samples(model, x, y, attacks, eps, seed, device, mode="cascade")
    if samples is not None:
        last = report["results"][-1]["label"]
        samples["worst-case"] = per_sample[last]
    return report["results"][-1]["robust_accuracy"]
