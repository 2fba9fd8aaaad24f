"""A third-party plugin written from the README of plugin API 1.0, before parameters were declared.

Its attack and defense take their parameters in ``__init__`` and register them as ``defaults=``;
neither declares ``params``.  Plugin API 1.1 still loads it -- the defaults become declared
parameters typed by their values -- with one ``RobustregDeprecationWarning`` per entry naming the
declaration to write instead (README, "Migrating a plugin").  Kept unmigrated on purpose:
``tests/test_plugin_api.py`` loads it.
"""

from __future__ import annotations

import torch
from torch import nn

import robustreg


class SignSteps(robustreg.Attack):
    """Iterated signed-gradient steps (BIM, Kurakin et al. 2016, arXiv:1607.02533), linf, written for API 1.0."""

    name = "legacy-bim"
    info = robustreg.AttackInfo(norms=("linf",), kind="white-box", source="robustreg-example-legacy",
                                toolkit="legacy", summary="BIM written against plugin API 1.0 (example)")

    def __init__(self, threat, steps=10, step_size=0.01, **kwargs):  # the 1.0 way: parameters in __init__
        super().__init__(threat, **kwargs)
        self.steps = steps
        self.step_size = step_size

    def perturb(self, model, x, y, generator, target=None):
        eps = self.threat.eps
        x_adv = x.clone()
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            loss = nn.functional.cross_entropy(model(x_adv), y)
            (grad,) = torch.autograd.grad(loss, x_adv)
            with torch.no_grad():
                x_adv = x_adv + self.step_size * grad.sign()
                x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(*self.threat.box)
        return x_adv.detach()


class NoisyTraining(robustreg.Defense):
    """Cross-entropy on Gaussian-noised inputs (a weak baseline), written for API 1.0."""

    name = "legacy-noise"
    info = robustreg.DefenseInfo(source="robustreg-example-legacy", summary="CE on x + sigma * N(0, I) (example)")

    def __init__(self, sigma=0.1):
        super().__init__()
        self.sigma = sigma

    def loss(self, model, x, y, *, step=0):
        logits = model((x + self.sigma * torch.randn_like(x)).clamp(0, 1))
        loss = nn.functional.cross_entropy(logits, y)
        return robustreg.DefenseOutput(loss, {"loss": float(loss.detach())}, logits_adv=logits.detach())


def linear_digits():
    """A linear classifier of 1x8x8 digits (untrained)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def _configure(parser):
    parser.add_argument("--who", default="world")


def _run(args):
    print(f"hello {args.who} from a plugin API 1.0 plugin")
    return 0


@robustreg.hookimpl
def robustreg_register_attacks(registrar):
    registrar.add_attack(SignSteps.name, SignSteps, defaults={"steps": 10, "step_size": 0.01})


@robustreg.hookimpl
def robustreg_register_defenses(registrar):
    registrar.add_defense(NoisyTraining.name, NoisyTraining, defaults={"sigma": 0.1})


@robustreg.hookimpl
def robustreg_register_models(registrar):
    registrar.add_model("legacy-linear", linear_digits, num_classes=10, input_shape=(1, 8, 8))


@robustreg.hookimpl
def robustreg_register_commands(registrar):
    registrar.add_command("legacy-hello", _configure, _run, help="say hello (example of a plugin API 1.0 command)")
