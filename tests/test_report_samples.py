"""Per-sample verdicts in report.json (robustreg.evaluation.samples): what each cell and the worst case broke."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from robustreg import Registry, ThreatModel
from robustreg.evaluation import evaluate
from robustreg.evaluation.report_check import check_report
from robustreg.evaluation.samples import bits, read_samples, unbits
from robustreg.readback import Damage

N = 80
EPS = [0.03, 0.1]


def _setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small random linear classifier and data it gets about half right (so every bit string holds both)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).eval()
    x = torch.rand(N, 3, 4, 4)
    with torch.no_grad():
        pred = model(x).argmax(1)
    y = torch.where(torch.arange(N) % 2 == 0, pred, (pred + 1) % 5)  # even: correct, odd: wrong
    return model, x, y


@pytest.mark.parametrize("mode", ["cascade", "independent"])
def test_samples_are_the_models_verdicts(mode):
    model, x, y = _setup()
    report = evaluate(model, (x, y), ["fgsm", ("pgd", {"steps": 5})], EPS, mode=mode, progress=False,
                      batch_size=32, no_check=["zero-gradients", "randomized-model"])
    clean = model(x).argmax(1) == y
    assert report["clean_correct_samples"] == "".join("1" if c else "0" for c in clean.tolist())
    samples = report.samples()
    assert samples.broken.shape == (2, 2, N) and samples.broken_any.shape == (2, N)
    for e, eps in enumerate(EPS):
        # fgsm is deterministic and per sample: its verdict computed here, apart from the engine
        x_adv = Registry.create().build_attack("fgsm", ThreatModel("linf", eps))(model, x, y)
        with torch.no_grad():
            fgsm_broken = clean & (model(x_adv).argmax(1) != y)
        assert torch.equal(samples.cell("fgsm", eps), fgsm_broken)
        pgd = samples.cell("pgd", eps)
        if mode == "cascade":  # pgd ran only where fgsm left the point standing
            assert not bool((pgd & fgsm_broken).any())
        assert torch.equal(samples.broken_any[e], fgsm_broken | pgd)
        assert int(samples.robust[e].sum()) == round(report["worst_case"][e]["robust_accuracy"] * N)
        row = report["results"][2 * e]
        assert row["broken"] == int(fgsm_broken.sum())
    assert 0 < int(samples.broken_any[-1].sum()) < int(clean.sum())  # the fixture says something
    read_back = json.loads(json.dumps(report))
    check_report(read_back)
    again = read_samples(read_back)
    assert torch.equal(again.broken, samples.broken) and torch.equal(again.clean_correct, clean)


def test_damaged_samples_are_refused():
    model, x, y = _setup()
    report = json.loads(json.dumps(evaluate(model, (x, y), ["fgsm"], 0.1, progress=False, no_check=["zero-gradients"])))
    check_report(report)
    short = copy.deepcopy(report)
    short["results"][0]["broken_samples"] = short["results"][0]["broken_samples"][:-1]
    with pytest.raises(Damage, match=r"results\[0\].broken_samples holds 79 per-sample values, expected n = 80"):
        check_report(short)
    flipped = copy.deepcopy(report)
    text = flipped["worst_case"][0]["broken_samples"]
    flipped["worst_case"][0]["broken_samples"] = ("0" if text[0] == "1" else "1") + text[1:]
    with pytest.raises(Damage, match=r"worst_case\[0\].broken_samples"):
        check_report(flipped)
    old = {k: v for k, v in report.items() if k != "clean_correct_samples"}
    check_report(old)  # a report from before the per-sample verdicts is still read
    with pytest.raises(ValueError, match="older robustreg"):
        read_samples(old)


def test_bits_round_trip():
    flags = torch.tensor([True, False, False, True])
    assert bits(flags) == "1001"
    assert torch.equal(unbits("1001", "x", 4), flags)
    with pytest.raises(Damage, match="characters other than 0 and 1"):
        unbits("10a1", "x", 4)


def test_report_size_for_10000_samples():
    """n = 10,000: each verdict string costs n bytes, so 4 cells + 2 worst cases + clean stay near 70 kB."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    x = torch.rand(10_000, 1, 2, 2)
    y = model(x).argmax(1)
    report = evaluate(model, (x, y), ["fgsm", "fgsm"], [0.05, 0.2], progress=False, batch_size=5000,
                      no_check=["zero-gradients"])
    size = len(json.dumps(report))
    assert 7 * 10_000 < size < 7 * 10_000 + 40_000
