"""--adaptive composes: an interrupted adaptive run resumes to the uninterrupted report, torchrun sharding
gives the one-process report, compare re-runs the checks after its remedies, and a randomised model is
judged by one stated majority rule.

What "resume" means for the adaptive phase: the evaluation's cells resume from the state file batch by
batch as in any run; the remedies are not saved, they run again from the finished cells, seeded by the
run's seed (the model's own randomness in that phase too), so a resumed run reports what an uninterrupted
one reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from test_distributed_evaluation import _free_port, rank_records
from torch import nn

import robustreg
from robustreg import Attack, AttackInfo, Registry
from robustreg.evaluation import evaluate
from robustreg.remedies import ARGMAX, VOTES, correct_under, majority, rule_for
from robustreg.testing.breaks import Noisy, Scaled

N, BATCH, EPS = 24, 8, [0.1]
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


@pytest.fixture(scope="module")
def digits():
    model = robustreg.build_model("digits-cnn-pretrained")
    test = robustreg.load_data("digits", "test")
    return model, (test.x[:N], test.y[:N])


class _Stop(Attack):
    """One signed-gradient step that raises KeyboardInterrupt (a kill) on its call ``stop_at`` (0: never)."""

    info = AttackInfo(norms=("linf",), summary="test step that can stop the run")
    name = "t-stop"
    calls, stop_at = 0, 0

    def perturb(self, model, x, y, generator, target=None):
        _Stop.calls += 1
        if _Stop.calls == _Stop.stop_at:
            raise KeyboardInterrupt
        x = x.requires_grad_(True)
        (grad,) = torch.autograd.grad(nn.functional.cross_entropy(model(x), y, reduction="sum"), x)
        return (x + self.threat.eps * grad.sign()).clamp(0, 1)


class _Interrupting:
    """t-stop, and a remedy for zero-gradients that is killed on its first run while ``kill`` is set."""

    kill = False

    @robustreg.hookimpl
    def robustreg_register_attacks(self, registrar):
        registrar.add_attack("t-stop", _Stop)

    @robustreg.hookimpl
    def robustreg_register_remedies(self, registrar):
        def pgd_then_maybe_killed(ctx):
            ctx.attack("pgd", {"steps": 5}, label="pgd-5")
            if _Interrupting.kill:
                _Interrupting.kill = False
                raise KeyboardInterrupt  # not an Exception: a remedy's error is recorded, a kill stops the run

        registrar.add_remedy("t-killed", pgd_then_maybe_killed, answers=("zero-gradients",), cost=10)


ATTACKS = [("pgd", {"steps": 3}), ("t-stop", {})]
QUIET = ["logit-scale", "unbounded-attack", "incomplete-optimization"]


def _adaptive(model: nn.Module, data, out: Path) -> dict[str, Any]:
    registry = Registry.create(plugins=[("t-interrupting", _Interrupting())])
    # a budget for t-killed, temperature and bpda; the checks that run attacks of their own left out (time)
    return evaluate(model, data, ATTACKS, EPS, n=N, batch_size=BATCH, out=out, progress=False, registry=registry,
                    adaptive=True, adaptive_budget=600, no_check=QUIET)


def _numbers(report: dict[str, Any]) -> dict[str, Any]:
    """The report without what differs from run to run (wall times, creation time, resumed, ranks)."""
    out = {k: v for k, v in report.items() if k not in ("seconds", "created", "resumed", "distributed", "environment")}
    out["results"] = [{k: v for k, v in r.items() if k != "seconds"} for r in report["results"]]
    return out


@pytest.mark.parametrize("where", ["cells", "remedies"])
def test_an_interrupted_adaptive_run_resumes_to_the_uninterrupted_report(digits, tmp_path, where):
    base, data = digits
    model = Scaled(base, 1e4)  # saturated logits: zero-gradients warns, so remedies run (t-killed first)
    _Stop.calls, _Stop.stop_at, _Interrupting.kill = 0, 0, False
    want = _adaptive(model, data, tmp_path / "want")
    assert "t-killed" in {r["remedy"] for r in want["adaptive"]["runs"]}
    assert want["worst_case"][0]["robust_accuracy"] < want["worst_case"][0]["robust_accuracy_before_adaptive"]

    out = tmp_path / "out"
    # cells: t-stop's second batch (of 3) is killed; remedies: the cells finished, a remedy is killed
    _Stop.calls, _Stop.stop_at, _Interrupting.kill = 0, (2 if where == "cells" else 0), where == "remedies"
    with pytest.raises(KeyboardInterrupt):
        _adaptive(model, data, out)
    state = torch.load(out / "state.pt", weights_only=True)
    done = [key for key, cell in state["cells"].items() if cell["done"]]
    assert done == (["0:0"] if where == "cells" else ["0:0", "0:1"]) and not (out / "report.json").exists()

    _Stop.calls, _Stop.stop_at = 0, 0
    again = _adaptive(model, data, out)
    assert again["resumed"] is True
    if where == "cells":
        assert _Stop.calls == 2  # only t-stop's two batches not yet saved ran again
    assert _numbers(again) == _numbers(want)
    assert json.loads((out / "report.json").read_text())["adaptive"] == want["adaptive"]


SCRIPT = textwrap.dedent('''
    import json, os, sys
    import torch
    from robustreg.data import load_data
    from robustreg.evaluation import evaluate
    from robustreg.models import build_model
    from robustreg.testing.breaks import Scaled

    torch.set_num_threads(1)
    data = load_data("digits", "test")
    report = evaluate(Scaled(build_model("digits-cnn-pretrained"), 1e4), (data.x[:24], data.y[:24]),
                      [("pgd", {"steps": 3})], [0.1], batch_size=8, out=sys.argv[1], progress=False,
                      adaptive=True, adaptive_budget=600, no_check=json.loads(sys.argv[2]), distributed=True,
                      targeted=json.loads(sys.argv[3]))
    print(json.dumps({"rank": int(os.environ["RANK"]), "worst": report["worst_case"][0]["robust_accuracy"],
                      "runs": len(report["adaptive"]["runs"])}), flush=True)
''')


@pytest.mark.parametrize("targeted", [None, "random"])
def test_adaptive_under_torchrun_gives_the_one_process_report(digits, tmp_path, targeted):
    base, (x, y) = digits
    want = evaluate(Scaled(base, 1e4), (x, y), [("pgd", {"steps": 3})], EPS, batch_size=BATCH, out=tmp_path / "one",
                    progress=False, adaptive=True, adaptive_budget=600, no_check=QUIET, targeted=targeted)
    entry = want["worst_case"][0]
    assert want["adaptive"]["runs"]  # remedies ran (aimed at the targets in a targeted run)
    if targeted is None:
        assert entry["robust_accuracy"] < entry["robust_accuracy_before_adaptive"]  # the remedies broke points
    script = tmp_path / "adaptive_sharded.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    cmd = [TORCHRUN, "--nproc_per_node", "2", "--nnodes", "1", "--master_addr", "127.0.0.1", "--master_port",
           str(_free_port()), str(script), str(tmp_path / "two"), json.dumps(QUIET), json.dumps(targeted)]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    got = json.loads((tmp_path / "two" / "report.json").read_text())
    assert got["distributed"]["world_size"] == 2
    assert _numbers(got) == _numbers(want)
    ranks = rank_records(done.stdout)  # the ranks print at once: two records can share a line
    # every rank returns rank 0's report, remedies included
    assert sorted(r["rank"] for r in ranks) == [0, 1]
    assert {(r["worst"], r["runs"]) for r in ranks} == {(want["worst_case"][0]["robust_accuracy"],
                                                         len(want["adaptive"]["runs"]))}


# --- compare: the checks again after the remedies ---------------------------------------------------
class _Standing:
    """A check that warns while a single attack was run (it names the cells it saw), and its remedy (PGD-20)."""

    @robustreg.hookimpl
    def robustreg_register_checks(self, registrar):
        def single(ctx):
            names = ",".join(sorted(c.attack for c in ctx.cells))
            return ("warn", f"only {names}") if len(ctx.cells) < 2 else ("ok", f"cells {names}")

        registrar.add_check("t-standing", single, doc="https://example.org/t-standing")

    @robustreg.hookimpl
    def robustreg_register_remedies(self, registrar):
        registrar.add_remedy("t-pgd", lambda ctx: ctx.attack("pgd", {"steps": 20}, label="pgd-20"),
                             answers=("t-standing",), cost=40)


def test_compare_runs_the_checks_again_after_its_remedies(digits, tmp_path, capsys):
    base, data = digits
    registry = Registry.create(plugins=[("t-standing", _Standing())])
    report = robustreg.compare.compare(base, data, "fgsm", 0.1, toolkits=["native"], noise=False, progress=False,
                                          registry=registry, no_check=QUIET, adaptive=True, out=tmp_path / "out")
    before = next(c for c in report["checks"] if c["name"] == "t-standing")
    after = next(c for c in report["adaptive"]["checks_after"] if c["name"] == "t-standing")
    assert before["status"] == "warn" and before["message"] == "only fgsm"
    # the re-run saw the remedy's attack as a cell of its own
    assert after["status"] == "ok" and after["message"] == "cells fgsm,remedy:t-pgd:pgd-20"
    entry = report["adaptive"]["robust_accuracy"][0]
    assert entry["after"] < entry["before"]  # PGD-20 breaks points FGSM left at eps 0.1
    assert report["adaptive"]["verdict"] == ARGMAX and report["adaptive"]["clean_accuracy"] is None
    md = (tmp_path / "out" / "report.md").read_text().splitlines()
    assert "t-standing warn -> ok" in next(line for line in md if line.startswith("Checks before -> after the"))
    from robustreg.compare.render import render_table

    terminal = render_table(report).splitlines()
    assert "t-standing warn -> ok" in next(line for line in terminal if "checks before -> after:" in line)


# --- a randomised model: one stated majority rule ---------------------------------------------------
def test_the_rule_is_the_argmax_for_a_deterministic_model_and_a_majority_for_a_randomised_one(digits):
    base, (x, y) = digits
    device = torch.device("cpu")
    assert rule_for(base.eval(), x, device).text == ARGMAX
    torch.manual_seed(0)
    noisy = Noisy(base, 0.3).eval()
    rule = rule_for(noisy, x, device)
    assert rule.randomised and rule.text == majority(VOTES)[1]
    # clean correctness by the same majority: against 9 forwards counted here (the same draws, seeded)
    torch.manual_seed(1)
    got = correct_under(rule, noisy, x, y, device, batch_size=N)
    torch.manual_seed(1)
    with torch.no_grad():
        right = torch.stack([noisy(x).argmax(1) == y for _ in range(VOTES)]).sum(0)
    assert torch.equal(got, right * 2 > VOTES)


def test_a_randomised_model_is_judged_by_the_stated_majority_from_the_clean_points_on(digits):
    base, (x, y) = digits
    data = (x[:12], y[:12])
    only = [c.name for c in Registry.create().checks() if c.name != "randomized-model"]  # eot alone runs
    kw = {"adaptive": True, "no_check": only, "adaptive_budget": 1600}  # eot's cost: its APGD-CE, not -DLR
    torch.manual_seed(0)
    first = evaluate(Noisy(base, 0.1), data, [("pgd", {"steps": 3})], EPS, progress=False, **kw)
    adaptive = first["adaptive"]
    assert adaptive["verdict"] == majority(VOTES)[1] and adaptive["clean_accuracy"] is not None
    eot = [r for r in adaptive["runs"] if r["remedy"] == "eot"]
    assert eot and {r["remedy"] for r in adaptive["runs"]} == {"eot"}
    assert all(r["verdict"] == adaptive["verdict"] for r in adaptive["runs"])
    # the remedies start from every point correct by the majority rule, not from what the cells left
    assert eot[0]["before"] == adaptive["clean_accuracy"]
    torch.manual_seed(1)  # another global draw before the run: the seeded adaptive phase repeats itself
    second = evaluate(Noisy(base, 0.1), data, [("pgd", {"steps": 3})], EPS, progress=False, **kw)
    assert second["adaptive"]["runs"] == adaptive["runs"]
    assert second["worst_case"][0]["robust_accuracy"] == first["worst_case"][0]["robust_accuracy"]
