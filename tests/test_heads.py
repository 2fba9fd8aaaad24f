"""Model heads: a defense's prediction head is recorded in the checkpoint and applied again on loading.

A model trained with HE (``he``: PGD-AT with hypersphere embedding) predicts with ``s * cos(theta)``;
``build_model(weights=final.pt)`` must return that classifier, not ``W z + b``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from robustreg import Registry, build_model, embed
from robustreg.data import load_data
from robustreg.embedding import Head, HeadLinear, apply_head, model_head
from robustreg.models.common import checkpoint_head, load_state_dict_file
from robustreg.training import TrainConfig, Trainer
from robustreg_plugins.scale_invariant.defense_he import HEAT, he_logits

EPS = 0.12  # linf, [0, 1] units, on 8x8 digits
S = 15.0


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.create()


def _config(out: Path, defense: str, epochs: int, **kw: object) -> TrainConfig:
    params = {"eps": EPS, "steps": 3} if defense != "standard" else {}
    base = dict(model="digits-cnn", data="digits", defense=defense, defense_params=params, epochs=epochs,
                batch_size=64, lr=0.05, schedule="cosine", augment=False, checkpoint_every=0, quiet=True,
                lr_warmup_epochs=0.0, out=str(out))  # no warm-up: the linear and cosine heads still disagree
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def he_run(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> tuple[Trainer, Path]:
    trainer = Trainer(_config(tmp_path_factory.mktemp("he"), "he", 8), registry=registry)
    return trainer, trainer.fit()


def _trained(trainer: Trainer) -> nn.Module:
    assert trainer.model is not None
    return trainer.model


def _plain(model: nn.Module) -> nn.Module:
    """The same weights through ``W z + b`` (how a checkpoint loaded before heads were recorded)."""
    return apply_head(model, None)


# --- the Head concept -----------------------------------------------------------------------------

def test_head_record_round_trips_and_validates() -> None:
    head = Head("cosine", s=S)
    assert head.to_dict() == {"kind": "cosine", "s": 15.0, "normalize_features": True, "normalize_weights": True,
                              "bias": False, "eps": 1e-12}
    assert Head.from_dict(head.to_dict()) == head
    with pytest.raises(ValueError, match="kind must be one of linear, cosine"):
        Head("arc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="s must be a finite number > 0"):
        Head("cosine", s=0)
    with pytest.raises(ValueError, match="ckpt: unknown head field"):
        Head.from_dict({"kind": "cosine", "scale": 2.0}, origin="ckpt")


def test_apply_head_keeps_parameters_and_embed_sees_the_same_z_w_b() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    x = torch.rand(5, 1, 8, 8)
    before = embed(model, x)
    weight, keys = model[3].weight, list(model.state_dict())
    assert apply_head(model, Head("cosine", s=S)) is model
    assert isinstance(model[3], HeadLinear) and model[3].weight is weight and list(model.state_dict()) == keys
    assert model_head(model) == Head("cosine", s=S)
    after = embed(model, x)
    assert torch.equal(after.logits, model(x)) and torch.equal(after.logits, S * before.cosine())
    assert torch.equal(after.cosine(), before.cosine()) and after.weight is weight and after.head_name == "3"
    with_bias = Head("cosine", s=2.0, normalize_features=False, bias=True)
    assert before.bias is not None
    assert torch.allclose(with_bias.logits(before.features, before.weight, before.bias),
                          2.0 * before.features @ nn.functional.normalize(weight, dim=1).T + before.bias)
    apply_head(model, None)
    assert type(model[3]) is nn.Linear and model[3].weight is weight and model_head(model) is None
    assert torch.equal(model(x), before.logits)


# --- HE: the checkpoint is the classifier that was trained -------------------------------------------

def test_he_checkpoint_records_its_cosine_head(he_run: tuple[Trainer, Path]) -> None:
    trainer, final = he_run
    saved = torch.load(final, weights_only=True)
    assert set(saved) == {"state_dict", "head"}
    assert saved["head"] == Head("cosine", s=S).to_dict()
    assert checkpoint_head(final) == Head("cosine", s=S)
    model = _trained(trainer)
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in model.state_dict().items())
    assert set(load_state_dict_file(final)) == set(model.state_dict())
    assert model_head(model) == Head("cosine", s=S)  # trained with the head applied


def test_he_checkpoint_predicts_with_the_cosine_head(he_run: tuple[Trainer, Path]) -> None:
    _, final = he_run
    x, y = load_data("digits", "test").tensors()
    model = build_model("digits-cnn", weights=final)
    plain = _plain(build_model("digits-cnn", weights=final))
    with torch.no_grad():
        logits = model(x)
        cosine = he_logits(plain, x, S)  # the defense's own prediction, on the plain model
        linear = plain(x)
    assert torch.equal(logits, cosine)
    agreement = (logits.argmax(1) == cosine.argmax(1)).float().mean().item()
    acc = (logits.argmax(1) == y).float().mean().item()
    acc_linear = (linear.argmax(1) == y).float().mean().item()
    assert agreement == 1.0 and acc == (cosine.argmax(1) == y).float().mean().item()
    assert (linear.argmax(1) != logits.argmax(1)).any() and acc_linear != acc, (acc, acc_linear)
    # attacks see the cosine logits, SI-PGD's cos(theta) is unchanged
    emb, emb_plain = embed(model, x), embed(plain, x)
    assert torch.equal(emb.logits, logits) and torch.equal(emb.cosine(), emb_plain.cosine())
    assert torch.equal(emb.weight, emb_plain.weight) and torch.equal(emb.bias, emb_plain.bias)  # type: ignore[arg-type]


def test_the_log_reports_the_checkpoints_clean_accuracy(he_run: tuple[Trainer, Path]) -> None:
    trainer, final = he_run
    records = [json.loads(line) for line in (Path(trainer.config.out) / "log.jsonl").read_text().splitlines()]
    last_epoch = [r for r in records if r["kind"] == "epoch"][-1]
    assert last_epoch["step"] == records[-1]["step"] == 8 * trainer.state.steps_per_epoch  # type: ignore[union-attr]
    x, y = load_data("digits", "train").tensors()  # the images the trainer trained on, in its order
    n = last_epoch["final_images"]
    assert n == x.shape[0]
    model = build_model("digits-cnn", weights=final)
    with torch.no_grad():
        correct = int((model(x[:n]).argmax(1) == y[:n]).sum())
        correct_linear = int((_plain(model)(x[:n]).argmax(1) == y[:n]).sum())
    assert last_epoch["final_acc_clean"] == correct / n and correct_linear != correct
    assert not any("final_acc_clean" in r for r in records[:-2])


def test_the_head_changes_no_weight_of_he_training(registry: Registry, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with_head = Trainer(_config(tmp_path / "head", "he", 1, n_train=256), registry=registry)
    a = torch.load(with_head.fit(), weights_only=True)["state_dict"]
    monkeypatch.setattr(HEAT, "head", lambda self: None)
    without = Trainer(_config(tmp_path / "none", "he", 1, n_train=256), registry=registry)
    b = torch.load(without.fit(), weights_only=True)
    assert "head" not in b and all(torch.equal(a[k], b[k]) for k in b)


# --- plain checkpoints, resume, training on from a head --------------------------------------------

def test_a_plain_checkpoint_loads_unchanged(registry: Registry, tmp_path: Path) -> None:
    trainer = Trainer(_config(tmp_path, "standard", 1, n_train=256), registry=registry)
    final = trainer.fit()
    saved = torch.load(final, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in saved.values())  # a plain state dict, as before
    assert checkpoint_head(final) is None and torch.load(tmp_path / "last.pt", weights_only=True)["head"] is None
    model = build_model("digits-cnn", weights=final)
    assert type(model.fc2) is nn.Linear and model_head(model) is None
    x = load_data("digits", "test").tensors()[0][:50]
    with torch.no_grad():
        assert torch.equal(model(x), _trained(trainer).eval()(x))


def test_the_head_round_trips_through_last_pt_resume(registry: Registry, tmp_path: Path) -> None:
    ref = Trainer(_config(tmp_path / "ref", "he", 2, n_train=256), registry=registry).fit()
    out = tmp_path / "stopped"
    first = Trainer(_config(out, "he", 2, n_train=256), registry=registry).run(stop_at=3)
    assert first.final is None
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["step"] == 3 and state["head"] == Head("cosine", s=S).to_dict()
    assert model_head(build_model("digits-cnn", weights=out / "last.pt")) == Head("cosine", s=S)
    resumed = Trainer(_config(out, "he", 2, n_train=256), registry=registry)
    final = resumed.fit()
    assert model_head(_trained(resumed)) == Head("cosine", s=S)
    got, want = torch.load(final, weights_only=True), torch.load(ref, weights_only=True)
    assert got["head"] == want["head"] == Head("cosine", s=S).to_dict()
    assert all(torch.equal(got["state_dict"][k], v) for k, v in want["state_dict"].items())


def test_training_on_from_a_cosine_checkpoint_keeps_its_head(registry: Registry, he_run: tuple[Trainer, Path],
                                                              tmp_path: Path) -> None:
    cfg = _config(tmp_path, "standard", 1, n_train=128, weights=str(he_run[1]))
    final = Trainer(cfg, registry=registry).fit()
    assert checkpoint_head(final) == Head("cosine", s=S)


# --- the command line -------------------------------------------------------------------------------

def test_evaluate_reports_the_cosine_head_clean_accuracy(he_run: tuple[Trainer, Path], tmp_path: Path) -> None:
    _, final = he_run
    exe = Path(sys.executable).with_name("robustreg")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "robustreg.cli"]
    out = tmp_path / "eval"
    proc = subprocess.run([*command, "evaluate", "--model", "digits-cnn", "--weights", str(final), "--data", "digits",
                           "--attacks", "fgsm", "--eps", "0.05", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    x, y = load_data("digits", "test").tensors()
    plain = _plain(build_model("digits-cnn", weights=final))
    with torch.no_grad():
        cosine = (he_logits(plain, x, S).argmax(1) == y).float().mean().item()
        linear = (plain(x).argmax(1) == y).float().mean().item()
    assert report["clean_accuracy"] == pytest.approx(cosine, abs=1e-6) and abs(linear - cosine) > 1e-3
