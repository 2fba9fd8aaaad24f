"""save_adv / --save-adv: every cell's adversarial points kept with their indices, resumable, never mixed."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import robustreg
from robustreg import Registry, ThreatModel, UserError
from robustreg.evaluation import evaluate, load_adversarial

N, BATCH = 60, 16


def _problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).eval()
    x = torch.rand(N, 3, 4, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::4] = (y[::4] + 1) % 5  # a quarter wrong: those are not attacked, not kept
    return model, x, y


class _Plugin:
    """``t-step``: a deterministic signed-gradient step; raises KeyboardInterrupt on call ``interrupt_on``."""

    def __init__(self, interrupt_on: int | None = None) -> None:
        plugin, self.calls, self.interrupt_on = self, 0, interrupt_on

        class Step(robustreg.Attack):
            info = robustreg.AttackInfo(norms=("linf",), summary="test step")
            name = "t-step"

            def perturb(self, model, x, y, generator, target=None):
                plugin.calls += 1
                if plugin.calls == plugin.interrupt_on:
                    raise KeyboardInterrupt
                x = x.requires_grad_(True)
                (grad,) = torch.autograd.grad(nn.functional.cross_entropy(model(x), y, reduction="sum"), x)
                return (x + self.threat.eps * grad.sign()).clamp(0, 1)

        self.step = Step

    @robustreg.hookimpl
    def robustreg_register_attacks(self, registrar):
        registrar.add_attack("t-step", self.step)


def _registry(plugin: _Plugin) -> Registry:
    return Registry.create(plugins=[("test-save-adv", plugin)])  # the built-in plugins too (fmn)


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.pt"))


def test_kept_points_are_the_judged_ones(tmp_path):
    model, x, y = _problem()
    eps = [0.05, 0.2]
    report = evaluate(model, (x, y), ["t-step", ("fmn", {"steps": 10})], eps, registry=_registry(_Plugin()),
                      batch_size=BATCH, progress=False, save_adv=tmp_path / "adv", no_check=["zero-gradients"])
    cells = load_adversarial(tmp_path / "adv")
    samples = report.samples()
    assert [(c.label, c.eps) for c in cells] == [(r["label"], r["eps"]) for r in report["results"]]
    for cell, row in zip(cells, report["results"]):
        ran = samples.clean_correct.clone()
        if cell.label == "fmn":
            ran &= ~samples.cell("t-step", cell.eps)
        assert torch.equal(cell.indices, ran.nonzero().flatten())  # cascade: fmn only where t-step failed
        assert cell.x_adv.shape == (cell.indices.numel(), 3, 4, 4)
        # the kept point is the judged one: inside the cell's eps (fmn's read at eps) and the model's verdict on it
        distance = (cell.x_adv - x[cell.indices]).abs().flatten(1).amax(1)
        assert bool((distance <= cell.eps * (1 + 1e-6)).all())  # float32 rounding of the projection only
        with torch.no_grad():
            wrong = model(cell.x_adv).argmax(1) != y[cell.indices]
        assert torch.equal(wrong, samples.cell(cell.label, cell.eps)[cell.indices])
        assert int(wrong.sum()) == row["broken"]
    step = Registry.create(plugins=[("p", _Plugin())]).build_attack("t-step", ThreatModel("linf", 0.2))
    first = cells[2]
    assert torch.equal(first.x_adv, step(model, x[first.indices], y[first.indices]))
    assert any(r["broken"] for r in report["results"]) and not all(c.indices.numel() == 0 for c in cells)
    manifest = json.loads((tmp_path / "adv" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["cells"][0]["folder"] == "t-step/eps=0.05"


def test_interrupted_run_resumes_without_loss_or_duplicates(tmp_path):
    model, x, y = _problem()
    kwargs = dict(batch_size=BATCH, progress=False, mode="independent", no_check=["zero-gradients"])
    full_dir = tmp_path / "full"
    evaluate(model, (x, y), ["t-step"], [0.05, 0.2], registry=_registry(_Plugin()), save_adv=full_dir, **kwargs)

    out, adv = tmp_path / "out", tmp_path / "adv"
    with pytest.raises(KeyboardInterrupt):  # the 5th batch: the second cell's second batch
        evaluate(model, (x, y), ["t-step"], [0.05, 0.2], registry=_registry(_Plugin(interrupt_on=5)),
                 save_adv=adv, out=out, **kwargs)
    assert len(_files(adv)) == 4 and not json.loads((adv / "manifest.json").read_text())["complete"]
    with pytest.raises(UserError, match="has not finished"):
        load_adversarial(adv)
    assert sum(c.indices.numel() for c in load_adversarial(adv, partial=True)) == 45 + BATCH

    resumed = _Plugin()
    evaluate(model, (x, y), ["t-step"], [0.05, 0.2], registry=_registry(resumed), save_adv=adv, out=out, **kwargs)
    assert resumed.calls == 2  # the batches kept before the interrupt are not redone
    assert _files(adv) == _files(full_dir)
    for mine, theirs in zip(load_adversarial(adv), load_adversarial(full_dir)):
        assert torch.equal(mine.indices, theirs.indices) and torch.equal(mine.x_adv, theirs.x_adv)
        assert mine.indices.unique().numel() == mine.indices.numel() == 45  # each clean-correct point once


def test_another_runs_folder_is_refused(tmp_path):
    model, x, y = _problem()
    kwargs = dict(batch_size=BATCH, progress=False, registry=_registry(_Plugin()), no_check=["zero-gradients"])
    evaluate(model, (x, y), ["t-step"], 0.05, save_adv=tmp_path / "adv", **kwargs)
    before = _files(tmp_path / "adv")
    with pytest.raises(UserError, match=r"holds the adversarial examples of another run \(eps differ\)"):
        evaluate(model, (x, y), ["t-step"], 0.1, save_adv=tmp_path / "adv", **kwargs)
    assert _files(tmp_path / "adv") == before
    evaluate(model, (x, y), ["t-step"], 0.05, save_adv=tmp_path / "adv", **kwargs)  # the same run: rewritten
    assert _files(tmp_path / "adv") == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="holds files but no manifest.json"):
        evaluate(model, (x, y), ["t-step"], 0.05, save_adv=tmp_path / "other", **kwargs)


def test_command_line_save_adv(tmp_path, capsys):
    import numpy as np

    from robustreg.cli import main

    torch.manual_seed(0)
    x = torch.rand(24, 1, 8, 8)
    y = torch.randint(0, 10, (24,))
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    out, adv = tmp_path / "out", tmp_path / "adv"
    assert main(["evaluate", "--model", "digits-cnn", "--data", f"npz:{tmp_path / 'd.npz'}", "--attacks", "fgsm",
                 "--eps", "0.1", "--out", str(out), "--save-adv", str(adv), "--quiet", "--batch-size", "8"]) == 0
    report = json.loads((out / "report.json").read_text())
    (cell,) = load_adversarial(adv)
    clean = torch.tensor([c == "1" for c in report["clean_correct_samples"]])
    assert torch.equal(cell.indices, clean.nonzero().flatten()) and cell.x_adv.shape == (int(clean.sum()), 1, 8, 8)
    assert main(["evaluate", "--model", "digits-cnn", "--data", f"npz:{tmp_path / 'd.npz'}", "--attacks", "fgsm",
                 "--eps", "0.2", "--out", str(tmp_path / "out2"), "--save-adv", str(adv), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "holds the adversarial examples of another run (" in err and "eps" in err.split("another run (")[1]
