"""Targeted evaluation (``targeted=`` / ``--targeted``): the targets each mode aims at, the targeted verdict,
the refusals, the report's ``targeted`` entry and the run's identity."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from robustreg import Attack, AttackInfo, AttackResult, Registry, UserError, hookimpl
from robustreg.cli import main
from robustreg.evaluation import evaluate
from robustreg.evaluation.report_check import check_report
from robustreg.evaluation.state import report_identity, run_identity
from robustreg.evaluation.targets import random_targets
from robustreg.readback import Damage
from robustreg.testing.models import tiny_batch, tiny_model
from robustreg.threat import ThreatModel
from robustreg.verdict import judge

K, N = 5, 40
PGD = ("pgd", {"steps": 10, "random_start": False})  # no random start: each point's result is its own


class RecordTarget(Attack):
    """Returns x (reaches no target) and records what it was asked: the target, and per point one run and a
    bit per targeted class (both summed over the runs of all-classes), so the state shows every target."""

    info = AttackInfo(norms=("linf",), targeted=True, summary="test: records its targets")
    name = "t-record"

    def perturb(self, model, x, y, generator, target=None):
        ones = torch.ones(x.shape[0], dtype=torch.float64)
        return AttackResult(x, extras={"target": target.double(), "runs": ones, "bits": 2.0 ** target.double()},
                            reductions={"runs": "sum", "bits": "sum"})


class _Plugin:
    @hookimpl
    def robustreg_register_attacks(self, registrar):
        registrar.add_attack("t-record", RecordTarget)


@pytest.fixture(scope="module")
def registry():
    return Registry.create(plugins=[("test-targeted", _Plugin())], entry_points=False)


@pytest.fixture(scope="module")
def model_and_data():
    """A tiny K-class model and N points labelled as it predicts them (all clean-correct: every point is attacked)."""
    model = tiny_model(K).eval()
    x, _ = tiny_batch(N, num_classes=K)
    with torch.no_grad():
        logits = model(x)
    return model, x, logits.argmax(dim=1), logits


def _state(tmp_path, model, x, y, attack, targeted, registry, batch_size=64, eps=0.1, **options):
    """The cells of a finished run (kept state) and its report."""
    path = tmp_path / f"{targeted}-{batch_size}-{eps}.pt"
    report = evaluate(model, (x, y), [attack], eps, targeted=targeted, seed=3, batch_size=batch_size,
                      state_path=path, keep_state=True, progress=False, registry=registry, **options)
    return torch.load(path, weights_only=True)["cells"], report


def test_random_targets_depend_on_seed_and_index_only():
    y = torch.arange(1000) % K
    full = random_targets(torch.arange(1000), y, K, seed=7)
    parts = torch.cat([random_targets(torch.arange(i, min(i + 13, 1000)), y[i:i + 13], K, seed=7)
                       for i in range(0, 1000, 13)])
    assert torch.equal(full, parts)  # batches of 13 draw what one batch draws
    assert bool((full != y).all()) and int(full.min()) >= 0 and int(full.max()) < K
    counts = torch.bincount((full - y) % K, minlength=K)[1:]  # offsets 1..K-1, each expected 250 times
    assert int(counts.min()) > 180 and int(counts.max()) < 320  # 250 +- 4.6 standard deviations
    assert not torch.equal(full, random_targets(torch.arange(1000), y, K, seed=8))


def test_random_mode_targets_are_the_same_for_any_batch_size(tmp_path, model_and_data, registry):
    model, x, y, _ = model_and_data
    seen = []
    for batch_size in (7, 64):
        cells, _ = _state(tmp_path, model, x, y, "t-record", "random", registry, batch_size)
        seen.append(cells["0:0"]["extras"]["target"].long())
    assert torch.equal(seen[0], seen[1])
    assert torch.equal(seen[0], random_targets(torch.arange(N), y, K, seed=3))
    assert bool((seen[0] != y).all())


def test_least_likely_mode_aims_at_the_clean_argmin(tmp_path, model_and_data, registry):
    model, x, y, logits = model_and_data
    cells, report = _state(tmp_path, model, x, y, "t-record", "least-likely", registry)
    assert torch.equal(cells["0:0"]["extras"]["target"].long(), logits.argmin(dim=1))
    assert report["worst_case"][0]["robust_accuracy"] == 1.0  # x itself reaches no target


def test_all_classes_mode_aims_at_every_other_class_once(tmp_path, model_and_data, registry):
    model, x, y, _ = model_and_data
    cells, report = _state(tmp_path, model, x, y, "t-record", "all-classes", registry)
    extras = cells["0:0"]["extras"]
    assert torch.equal(extras["runs"], torch.full((N,), K - 1.0, dtype=torch.float64))
    every_other = (2.0 ** K - 1) - 2.0 ** y.double()  # one bit per class but the label
    assert torch.equal(extras["bits"], every_other)
    assert torch.equal(extras["target"].long(), (y + K - 1) % K)  # a per-sample extra: the last run's
    assert report["results"][0]["extras"]["runs"] == (K - 1) * N  # summed over the runs and the points


def test_targeted_pgd_verdicts_and_all_classes_covers_each_single_target(tmp_path, model_and_data):
    model, x, y, _ = model_and_data
    broken = {}
    for mode in ("random", "least-likely", "all-classes", None):
        cells, report = _state(tmp_path, model, x, y, PGD, mode, None, eps=0.15)
        broken[mode] = cells["0:0"]["broken"]
        assert report["results"][0]["robust_accuracy"] == pytest.approx(1 - float(broken[mode].double().mean()))
    for single in ("random", "least-likely"):
        assert 0 < int(broken[single].sum()) < N  # the fixture leaves something on both sides
        assert bool((broken["all-classes"] >= broken[single]).all())  # any target reached covers each one


def test_targeted_verdict_is_the_model_predicting_the_target(tmp_path, model_and_data):
    """A toolkit's targeted PGD through the engine gives exactly the points the model classifies as the target."""
    model, x, y, _ = model_and_data
    params = {"steps": 10}
    cells, report = _state(tmp_path, model, x, y, ("torchattacks:pgd", params), "random", None, eps=0.15)
    registry = Registry.create()
    attack = registry.build_attack("torchattacks:pgd", ThreatModel("linf", 0.15), seed=3, **params)
    target = random_targets(torch.arange(N), y, K, seed=3)
    with torch.no_grad():
        reached = model(attack(model, x, y, target=target)).argmax(dim=1) == target
    assert torch.equal(cells["0:0"]["broken"], reached)
    assert 0 < int(reached.sum()) < N
    assert report["results"][0]["toolkit"] == "torchattacks"


def test_refusals_name_the_attack_before_any_work(model_and_data):
    model, x, y, _ = model_and_data
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(ValueError, match=r"attack 'autoattack:apgd-t' runs its own targeted protocol .*run it "
                                             r"in an untargeted evaluation \(no --targeted, targeted=None\)"):
            evaluate(model, (x, y), ["autoattack:apgd-t"], 0.1, targeted="random", progress=False)
        with pytest.raises(ValueError, match=r"attack 'autoattack:standard' runs its own targeted protocol"):
            evaluate(model, (x, y), ["pgd", "autoattack:standard"], 0.1, targeted="all-classes", progress=False)
        for name in ("torchattacks:apgdt", "advlib:apgd-t"):  # the other toolkits' APGD-T pick their targets too
            with pytest.raises(ValueError, match=rf"attack '{name}' runs its own targeted protocol"):
                evaluate(model, (x, y), [name], 0.1, targeted="random", progress=False)
        with pytest.raises(ValueError, match=r"attack 'spsa' does not take a target class; attacks that do \(linf\): "
                                             r".*\bpgd\b.*torchattacks:pgd"):
            evaluate(model, (x, y), ["pgd", "spsa"], 0.1, targeted="least-likely", progress=False)
        with pytest.raises(ValueError, match=r"targeted must be None \(untargeted\) or one of 'random', "
                                             r"'least-likely', 'all-classes', got 'least_likely'"):
            evaluate(model, (x, y), ["pgd"], 0.1, targeted="least_likely", progress=False)
    finally:
        handle.remove()
    assert not calls


def test_report_and_identity_say_the_mode(tmp_path, model_and_data):
    model, x, y, _ = model_and_data
    out = tmp_path / "out"
    returned = evaluate(model, (x, y), [PGD], 0.1, targeted="least-likely", out=out, progress=False)
    assert "cascade, targeted least-likely, clean" in repr(returned)
    report = json.loads((out / "report.json").read_text())
    assert report["targeted"]["mode"] == "least-likely"
    assert "lowest clean logit" in report["targeted"]["rule"]
    check_report(report)
    md = (out / "report.md").read_text()
    assert "- targeted (least-likely): targets: the class of the lowest clean logit" in md
    assert "robust accuracy = clean-correct and target not reached" in md
    from robustreg.evaluation.config import plan_attacks

    plans = plan_attacks([PGD], None)
    same = run_identity(plans, [0.1], "linf", "cascade", 0, x, y, model, targeted="least-likely")
    assert report_identity(report) == same
    assert report_identity(report) != {**same, "targeted": "untargeted"}
    with pytest.raises(Damage, match=r"targeted: mode is 'sideways', expected one of 'random'"):
        check_report({**report, "targeted": {"mode": "sideways", "rule": "?"}})


@pytest.mark.parametrize(("first", "second"), [(None, "random"), ("random", "all-classes"), ("least-likely", None)])
def test_resume_is_refused_across_modes(tmp_path, model_and_data, first, second):
    model, x, y, _ = model_and_data
    path = tmp_path / "state.pt"
    evaluate(model, (x, y), [PGD], 0.1, targeted=first, state_path=path, keep_state=True, progress=False)
    with pytest.raises(UserError, match=rf"targeted differs \(saved '{first or 'untargeted'}', now "
                                        rf"'{second or 'untargeted'}'\)"):
        evaluate(model, (x, y), [PGD], 0.1, targeted=second, state_path=path, progress=False)


def test_resumed_targeted_run_gives_the_same_report(tmp_path, model_and_data):
    model, x, y, _ = model_and_data
    path = tmp_path / "state.pt"
    options = {"targeted": "random", "state_path": path, "progress": False, "batch_size": 16, "seed": 1}
    first = evaluate(model, (x, y), [PGD, "fgsm"], 0.1, keep_state=True, **options)
    again = evaluate(model, (x, y), [PGD, "fgsm"], 0.1, **options)
    assert again["resumed"] is True
    assert [r["robust_accuracy"] for r in again["results"]] == [r["robust_accuracy"] for r in first["results"]]


def _cli(out, attack="pgd", *more):
    return ["evaluate", "--model", "digits-cnn-pretrained", "--data", "digits", "--n", "8", "--attacks", attack,
            "--eps", "0.1", "--param", f"{attack}.steps=2", "--out", str(out), "--quiet", *more]


def test_cli_targeted_run_and_its_identity(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_cli(out, "pgd", "--targeted", "random")) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["targeted"]["mode"] == "random" and "targeted = random" in capsys.readouterr().out
    assert main(_cli(out, "pgd", "--targeted", "all-classes")) == 2  # another configuration's report is there
    assert "targeted (report random, now all-classes)" in capsys.readouterr().err


def test_cli_targeted_refusals(tmp_path, capsys):
    assert main(_cli(tmp_path / "a", "pgd", "--targeted", "up")) == 2
    assert "argument --targeted: invalid choice: 'up'" in capsys.readouterr().err
    assert main(["evaluate", "--model", "digits-cnn-pretrained", "--data", "digits", "--n", "8", "--attacks",
                 "autoattack:fab-t", "--eps", "0.1", "--out", str(tmp_path / "b"), "--quiet", "--targeted",
                 "random"]) == 2
    err = capsys.readouterr().err
    assert "attack 'autoattack:fab-t' runs its own targeted protocol" in err and len(err.strip().splitlines()) == 1


def test_judge_counts_the_target_reached_and_nonfinite_rows():
    logits = torch.tensor([[0.0, 2.0, 1.0], [0.0, 2.0, 1.0], [3.0, 0.0, 0.0], [float("nan"), 0.0, 0.0]])
    y, target = torch.tensor([0, 0, 0, 0]), torch.tensor([1, 2, 1, 2])
    broken, bad = judge(torch.nn.Identity(), logits, y, target)
    # row 0 predicts its target; row 1 is misclassified but not as its target; row 2 is right; row 3 is NaN
    assert broken.tolist() == [True, False, False, True] and bad.tolist() == [False, False, False, True]
    assert judge(torch.nn.Identity(), logits, y)[0].tolist() == [True, True, False, True]  # untargeted as before


@pytest.mark.parametrize("mode", ["all-classes", "random"])
def test_cell_checks_hold_in_targeted_mode(model_and_data, mode):
    """The checks that compare cells and read traces look (ok, not skipped) and do not warn on a sound run."""
    model, x, y, _ = model_and_data
    report = evaluate(model, (x, y), ["fgsm", ("pgd", {"steps": 20})], [0.05, 0.15], targeted=mode, seed=0,
                      mode="independent", progress=False)
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert "warn" not in status.values(), report["checks"]
    for name in ("iterative-beats-single-step", "eps-monotonic", "incomplete-optimization", "silent-success"):
        assert status[name] == "ok"


SHARDED = textwrap.dedent('''
    import json, sys
    import torch
    from robustreg.evaluation import evaluate
    from robustreg.testing.models import tiny_batch, tiny_model

    torch.set_num_threads(1)
    model = tiny_model(5).eval()
    x, _ = tiny_batch(40, num_classes=5)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    evaluate(model, (x, y), json.loads(sys.argv[2]), 0.1, targeted=sys.argv[3], seed=3, batch_size=6,
             out=sys.argv[1], keep_state=True, progress=False, distributed=True)
''')


@pytest.mark.slow  # two torchrun processes: their start dominates
def test_sharded_targeted_run_is_the_one_process_run(tmp_path, model_and_data):
    """Two torchrun ranks (gloo, CPU) give the per-sample verdicts of one process: the random targets and the
    pgd random start depend on the sample, not on the rank or the batch a point falls in."""
    model, x, y, _ = model_and_data
    attacks = [["pgd", {"steps": 3}], ["fgsm", {}]]
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    done = subprocess.run([torchrun, "--nproc_per_node", "2", "--nnodes", "1", "--master_addr", "127.0.0.1",
                           "--master_port", str(port), str(script), str(tmp_path / "two"), json.dumps(attacks),
                           "random"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    one = tmp_path / "one"
    evaluate(model, (x, y), [tuple(a) for a in attacks], 0.1, targeted="random", seed=3, batch_size=6, out=one,
             keep_state=True, progress=False)
    two_report = json.loads((tmp_path / "two" / "report.json").read_text())
    assert two_report["distributed"]["world_size"] == 2 and two_report["targeted"]["mode"] == "random"
    cells = [torch.load(folder / "state.pt", weights_only=True)["cells"] for folder in (one, tmp_path / "two")]
    for key in ("0:0", "0:1"):
        assert torch.equal(cells[0][key]["broken"], cells[1][key]["broken"])
        assert torch.equal(cells[0][key]["ran"], cells[1][key]["ran"])
