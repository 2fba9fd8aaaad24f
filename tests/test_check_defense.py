"""The defense conformance kit run over every registered defense, and proof that it can fail."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustreg import Defense, DefenseInfo, DefenseOutput, Param, ParamSet, Registry, crafting
from robustreg.testing import check_defense, tiny_batch, tiny_model
from robustreg_plugins.cascade import build_cascade_store

# Small budgets through the declared parameters (keys a defense does not declare are dropped).
FAST = {"steps": 1, "replays": 2}

_REGISTRY = Registry.create()
NAMES = sorted(_REGISTRY.entries("defenses"))


@pytest.fixture(scope="module")
def cascade_store(tmp_path_factory):
    """A small cascade store from a tiny source model, built as the cascade plugin's tests build one."""
    path = tmp_path_factory.mktemp("store") / "s"
    x, y = tiny_batch(24, seed=2)
    build_cascade_store(tiny_model(seed=7).eval(), (x, y), path, source_id="tiny-7", seed=0)
    return path


@pytest.mark.parametrize("name", NAMES)
def test_every_registered_defense_conforms(name, cascade_store):
    params = dict(FAST, store=str(cascade_store)) if name == "cascade" else FAST
    x, y = tiny_batch(8)
    check_defense(_REGISTRY.defense(name), tiny_model(), x, y, params=params)


def test_caller_model_is_left_as_found():
    model = tiny_model().eval()
    p = next(model.parameters())
    p.grad = torch.ones_like(p)
    check_defense(_REGISTRY.defense("at"), model, params=FAST)
    assert not model.training and p.grad is not None and torch.equal(p.grad, torch.ones_like(p))


# --- deliberately broken defenses: the kit must catch each one ----------------------------------
class _Good(Defense):
    """One FGSM step crafted in eval mode (robustreg.crafting), trained on in train mode."""

    name = "good"
    info = DefenseInfo()
    params = ParamSet([Param("eps", "float", 0.1, "step", low=0)])

    def craft(self, model, x, y):
        with crafting(model) as m:
            xa = x.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(nn.functional.cross_entropy(m(xa), y), xa)
        return (x + self.eps * g.sign()).clamp(0, 1).detach()

    def loss(self, model, x, y, *, step=0):
        x_adv = self.craft(model, x, y)
        loss = nn.functional.cross_entropy(model(x_adv), y)
        return DefenseOutput(loss, {"loss": float(loss.detach())})


class _CraftsInTrainMode(_Good):
    def craft(self, model, x, y):  # no crafting(): a train-mode forward updates BatchNorm statistics
        xa = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(xa), y), xa)
        return (x + self.eps * g.sign()).clamp(0, 1).detach()


class _LeavesEvalMode(_Good):
    def craft(self, model, x, y):
        model.eval()  # forgets to restore train mode
        xa = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(xa), y), xa)
        return (x + self.eps * g.sign()).clamp(0, 1).detach()


class _UnfreezesParameters(_Good):
    def loss(self, model, x, y, *, step=0):
        for p in model.parameters():
            p.requires_grad_(True)
        return super().loss(model, x, y, step=step)


class _DetachedHead(_Good):
    def loss(self, model, x, y, *, step=0):
        feats = model[:-1](self.craft(model, x, y)).detach()  # no gradient reaches the body
        loss = nn.functional.cross_entropy(model[-1](feats), y)
        return DefenseOutput(loss)


class _NaNLoss(_Good):
    def loss(self, model, x, y, *, step=0):
        out = super().loss(model, x, y, step=step)
        return DefenseOutput(out.loss * float("nan"))


class _ForgetfulState(_Good):
    def __init__(self, **params):
        super().__init__(**params)
        self.count = 0

    def loss(self, model, x, y, *, step=0):
        self.count += 1
        return super().loss(model, x, y, step=step)

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):  # accepts the state but keeps nothing
        pass


@pytest.mark.parametrize("broken, message", [
    (_CraftsInTrainMode, "not part of the loss"),
    (_LeavesEvalMode, "training=False"),
    (_UnfreezesParameters, "requires_grad=True"),
    (_DetachedHead, "got no .grad"),
    (_NaNLoss, "not finite"),
    (_ForgetfulState, "different state_dict"),
])
def test_kit_catches_broken_defenses(broken, message):
    check_defense(_Good)  # the correct defense passes
    with pytest.raises(AssertionError, match=message):
        check_defense(broken)


def test_built_defense_is_refused_with_advice():
    with pytest.raises(TypeError, match="not a built"):
        check_defense(_Good())


class _AdversarialInTrainMode(_Good):
    def adversarial(self, model, x, y, *, step=0):  # crafting on its own, but in train mode
        return _CraftsInTrainMode.craft(self, model, x, y)

    def craft(self, model, x, y):
        return self.adversarial(model, x, y)


def test_kit_runs_adversarial_apart():
    with pytest.raises(AssertionError, match=r"adversarial\(\) changed buffer"):
        check_defense(_AdversarialInTrainMode)
