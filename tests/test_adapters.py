"""The adapter kit (robustreg.adapters): a toolkit module on sys.path, an entry built from a table row, run."""

from __future__ import annotations

import sys
import textwrap
from typing import Any

import pytest
import torch
from torch import nn

from robustreg import (
    AdapterEntry,
    AttackError,
    Param,
    ThreatModel,
    Toolkit,
    ToolkitAttack,
    entry_docstring,
    make_entry_class,
)
from robustreg.testing import tiny_batch, tiny_model

# A real toolkit package written to a temporary folder: one signed step of ``step`` on the CE, plus a
# global-RNG draw (as toolkits' random starts do), so the kit's seeding is observable.
_TOOLKIT_SOURCE = '''
import torch
import torch.nn.functional as F


def signed_step(model, x, y, *, step, eps, noise=0.0):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    start = x.detach() + noise * (torch.rand_like(x) * 2 - 1)
    return (start + step * grad.sign()).clamp(0, 1)
'''

KIT_TOOLKIT = Toolkit(prefix="kit", distribution="robustreg-kit-toolkit", module="robustreg_kit_toolkit")


@pytest.fixture
def toolkit_on_path(tmp_path, monkeypatch):
    (tmp_path / "robustreg_kit_toolkit.py").write_text(textwrap.dedent(_TOOLKIT_SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "robustreg_kit_toolkit", raising=False)


class KitAttack(ToolkitAttack):
    toolkit = KIT_TOOLKIT

    def call_toolkit(self, toolkit: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     target: torch.Tensor | None, seed: int) -> torch.Tensor:
        return getattr(toolkit, self.toolkit_call())(model, x, y, eps=self.threat.eps,
                                                     **self.params.toolkit_kwargs(self.config))


def _doc(entry: AdapterEntry, version: str) -> str:
    return entry_docstring(entry, KIT_TOOLKIT, origin=f"kit {version}", eps="eps from the ThreatModel.",
                           minimal_norm="Minimal-norm.", seed="an int seed.", box="[0, 1]")


ENTRY = AdapterEntry(
    "signed-step", "signed_step", "One signed step", "A paper (Someone, 2020), arXiv:2001.00001", ("linf",),
    (Param("step_size", "float", 8 / 255, "step size", low=0, low_open=True, toolkit="step"),
     Param("noise", "float", 0.0, "uniform start noise", low=0)),
    implied={"restarts": 1},
)
SignedStep = make_entry_class(ENTRY, KitAttack, doc=_doc, module=__name__)
MinimalStep = make_entry_class(AdapterEntry("minimal-step", {"linf": "signed_step"}, "Unbounded step", "P",
                                            params=ENTRY.params, minimal_norm=True),
                               KitAttack, doc=_doc, module=__name__)


def test_entry_class_from_the_row():
    assert SignedStep.name == "kit:signed-step"
    assert SignedStep.__qualname__ == "KitSignedStep" and SignedStep.__module__ == __name__
    assert SignedStep.info.norms == ("linf",) and SignedStep.info.toolkit == "kit"
    assert SignedStep.info.source == "robustreg-kit-toolkit not installed (signed_step); A paper (Someone, 2020), " \
                                     "arXiv:2001.00001"
    assert SignedStep.implied == {"restarts": 1} and not SignedStep.minimal_norm
    assert SignedStep.declaration().names() == ["step_size", "noise", "seed", "eval_mode", "eot"]
    assert MinimalStep.info.norms == ("linf",) and MinimalStep.minimal_norm  # norms from the per-norm call


def test_docstring_lists_parameters_with_toolkit_keywords():
    doc = SignedStep.__doc__
    assert doc.startswith("One signed step (kit not installed).\n\nPaper: A paper")
    assert "    step_size -> step (a number > 0; default 8/255): step size" in doc
    assert "    noise -> noise (a number >= 0; default 0): uniform start noise" in doc
    assert "Minimal-norm." not in doc and "Minimal-norm." in MinimalStep.__doc__
    assert "reg.build_attack('kit:signed-step', ThreatModel('linf', 0.3), seed=0)" in doc


def test_norms_needed_for_a_single_call():
    with pytest.raises(ValueError, match=r"entry 'x': norms must be given when call is one name, got 'f'"):
        AdapterEntry("x", "f", "t", "p")


def test_missing_toolkit_is_one_line_with_the_install_hint():
    attack = SignedStep(ThreatModel("linf", 0.1))
    x, y = tiny_batch(2)
    with pytest.raises(ImportError) as info:
        attack(tiny_model(), x, y)
    assert str(info.value) == ("kit:signed-step needs the robustreg-kit-toolkit package: "
                               "pip install robustreg-kit-toolkit")


def test_missing_dependency_is_named(tmp_path, monkeypatch):
    (tmp_path / "robustreg_kit_toolkit.py").write_text("import robustreg_kit_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "robustreg_kit_toolkit", raising=False)
    kit = Toolkit(prefix="kit", distribution="robustreg-kit-toolkit", module="robustreg_kit_toolkit",
                  requires=" (and its dependency)", install="pip install robustreg-kit-toolkit dependency")
    with pytest.raises(ImportError) as info:
        kit.load("kit:x")
    assert str(info.value) == ("kit:x needs the robustreg-kit-toolkit package (and its dependency); "
                               "robustreg_kit_missing_dependency could not be imported: "
                               "pip install robustreg-kit-toolkit dependency")


def test_runs_the_toolkit_seeded_and_leaves_the_global_rng(toolkit_on_path):
    model = tiny_model().eval()
    x, y = tiny_batch(4)
    threat = ThreatModel("linf", 0.1)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = SignedStep(threat, step_size=0.05, noise=0.05, seed=7)(model, x, y)
    assert torch.equal(torch.get_rng_state(), state)  # the toolkit's draws were inside a fork
    again = SignedStep(threat, step_size=0.05, noise=0.05, seed=7)(model, x, y)
    assert torch.equal(first, again)  # the toolkit's global-RNG draws follow the attack's seed
    other = SignedStep(threat, step_size=0.05, noise=0.05, seed=8)(model, x, y)
    assert not torch.equal(first, other)
    # in the ball (up to float32 rounding of x +- eps) and moved: the toolkit ran
    assert float((first - x).abs().max()) <= 0.1 + 1e-6 and float((first - x).abs().max()) > 0.04


def test_minimal_norm_result_is_projected_into_the_ball(toolkit_on_path):
    """A step of 0.3 with eps 0.1: the toolkit leaves the ball; a minimal-norm entry projects, else it is
    the toolkit's bug, reported (never silently projected)."""
    model = tiny_model().eval()
    x, y = tiny_batch(4)
    threat = ThreatModel("linf", 0.1)
    projected = MinimalStep(threat, step_size=0.3)(model, x, y)
    assert float((projected - x).abs().max()) <= 0.1 + 1e-6
    with pytest.raises(AttackError, match="outside"):
        SignedStep(threat, step_size=0.3)(model, x, y)
