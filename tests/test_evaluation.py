"""robustreg.evaluation: semantics of the numbers, per-sample decisions, aggregation, resume."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from torch import nn

import robustreg
from robustreg import Attack, AttackInfo, AttackResult, Param, ParamSet, Registry, UnknownNameError
from robustreg.checks import CheckWarning
from robustreg.evaluation import data_fingerprint, evaluate, model_fingerprint

N = 96


class GradSign(Attack):
    """One signed-gradient step of eps (deterministic, per-sample independent of the batch)."""

    info = AttackInfo(norms=("linf",), summary="test FGSM")
    name = "t-fgsm"

    def perturb(self, model, x, y, generator, target=None):
        x = x.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        return (x + self.threat.eps * grad.sign()).clamp(0, 1)  # the base verifies, it does not project


class SignNoise(Attack):
    """Random corners of the ball; reports queries, a per-sample extra and a summed scalar."""

    info = AttackInfo(norms=("linf", "l2"), kind="score", randomized=True, summary="test noise")
    name = "t-noise"

    params = ParamSet([Param("tries", "int", 1, "reported queries per sample", low=1)])

    def perturb(self, model, x, y, generator, target=None):
        d = torch.rand(x.shape, generator=generator, device=x.device) * 2 - 1
        x_adv = self.threat.project(x + d.sign() * self.threat.eps, x)
        marker = x.flatten(1)[:, 0].double()  # a per-sample value whose mean we can check
        return AttackResult(x_adv, queries=torch.full((x.shape[0],), float(self.tries)),
                            extras={"marker": marker, "seconds:inner": 0.5, "flag": torch.ones(x.shape[0]) > 0},
                            reductions={"seconds:inner": "sum"})


class Identity(Attack):
    """Returns x: nothing may count as broken except what the model already gets wrong."""

    info = AttackInfo(norms=("linf",), summary="test identity")
    name = "t-identity"

    def perturb(self, model, x, y, generator, target=None):
        return x


class _Plugin:
    """A temporary plugin; ``calls`` counts batches, ``interrupt_on`` raises KeyboardInterrupt on that call."""

    def __init__(self, interrupt_on: int | None = None) -> None:
        self.calls: list[int] = []
        self.interrupt_on = interrupt_on
        plugin = self

        class Counting(GradSign):
            name = "t-count"

            def perturb(self, model, x, y, generator, target=None):
                plugin.calls.append(x.shape[0])
                if plugin.interrupt_on is not None and len(plugin.calls) == plugin.interrupt_on:
                    raise KeyboardInterrupt
                return super().perturb(model, x, y, generator, target)

        self.counting = Counting

    @robustreg.hookimpl
    def robustreg_register_attacks(self, registrar):
        registrar.add_attack("t-fgsm", GradSign)
        registrar.add_attack("t-noise", SignNoise)
        registrar.add_attack("t-identity", Identity)
        registrar.add_attack("t-count", self.counting)


def _registry(plugin: _Plugin | None = None) -> Registry:
    return Registry.create(plugins=[("test-plugin", plugin or _Plugin())], entry_points=False)


def _problem(noise: float = 0.1):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(N, 1, 8, 8, generator=g)
    w = torch.randn(64, 10, generator=g)
    y = (x.flatten(1) @ w).argmax(1)
    flip = torch.rand(N, generator=g) < noise  # some clean mistakes
    y = torch.where(flip, (y + 1) % 10, y)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():
        model[1].weight.copy_(w.T)
        model[1].bias.zero_()
    return model, x, y


@pytest.fixture()
def problem():
    return _problem()


def test_report_schema_and_files(problem, tmp_path):
    model, x, y = problem
    report = evaluate(model, (x, y), ["t-fgsm", ("t-noise", {"tries": 2})], [0.05, 0.02], registry=_registry(),
                      out=tmp_path, batch_size=40, progress=False)
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(report))
    for name in ("report.md", "results.csv", "robust_accuracy.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert not (tmp_path / "state.pt").exists()  # removed once the run finished
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    for key in ("clean_accuracy", "n", "norm", "mode", "results", "worst_case", "model", "data", "created",
                "robustreg_version", "eps", "attacks", "seed"):
        assert key in report
    assert report["n"] == N and report["norm"] == "linf" and report["mode"] == "cascade"
    assert report["eps"] == [0.02, 0.05]  # ascending
    assert 0 <= report["clean_accuracy"] <= 1
    assert [(r["eps"], r["attack"]) for r in report["results"]] == [
        (0.02, "t-fgsm"), (0.02, "t-noise"), (0.05, "t-fgsm"), (0.05, "t-noise")]
    for r in report["results"]:
        assert 0 <= r["robust_accuracy"] <= report["clean_accuracy"]
        assert r["max_perturbation"] <= r["eps"] + 1e-6
        assert isinstance(r["seconds"], float) and r["seconds"] >= 0
        assert r["params"]["seed"] == 0 and r["toolkit"] == "native" and r["plugin"] == "test-plugin"
        assert r["nan_detected"] is False
    assert report["results"][1]["params"]["tries"] == 2
    assert [w["eps"] for w in report["worst_case"]] == [0.02, 0.05]
    assert report["model"]["fingerprint"] == model_fingerprint(model)
    assert report["data"]["fingerprint"] == data_fingerprint(x, y)


def test_clean_accuracy_and_identity_attack(problem):
    model, x, y = problem
    report = evaluate(model, (x, y), ["t-identity"], 0.1, registry=_registry(), progress=False)
    clean = float((model(x).argmax(1) == y).float().mean())
    assert report["clean_accuracy"] == pytest.approx(clean)
    assert report["clean_accuracy"] < 1  # the flipped labels are clean mistakes
    assert report["results"][0]["robust_accuracy"] == pytest.approx(clean)
    assert report["results"][0]["broken"] == 0
    assert report["results"][0]["attacked"] == round(clean * N)  # only clean-correct points are attacked


def test_worst_case_and_modes(problem):
    model, x, y = problem
    reg = _registry()
    attacks = ["t-noise", "t-fgsm", "t-identity"]
    cas = evaluate(model, (x, y), attacks, [0.03, 0.1], registry=reg, progress=False, batch_size=32)
    ind = evaluate(model, (x, y), attacks, [0.03, 0.1], registry=reg, progress=False, batch_size=32,
                   mode="independent")
    assert cas["mode"] == "cascade" and ind["mode"] == "independent"
    correct = round(cas["clean_accuracy"] * N)
    for e in range(2):
        c = cas["results"][3 * e:3 * e + 3]
        i = ind["results"][3 * e:3 * e + 3]
        # independent: every attack on all clean-correct points; worst case <= each attack
        assert all(r["attacked"] == correct for r in i)
        assert all(ind["worst_case"][e]["robust_accuracy"] <= r["robust_accuracy"] + 1e-12 for r in i)
        # cascade: cumulative, non-increasing, the last equals the worst case; later attacks see fewer points
        accs = [r["robust_accuracy"] for r in c]
        assert accs == sorted(accs, reverse=True)
        assert accs[-1] == pytest.approx(cas["worst_case"][e]["robust_accuracy"])
        assert c[1]["attacked"] == correct - c[0]["broken"]
        # per-sample decisions do not depend on the mode (deterministic attacks, same seed per batch)
        assert cas["worst_case"][e]["robust_accuracy"] == pytest.approx(ind["worst_case"][e]["robust_accuracy"])
        assert cas["worst_case"][e]["broken_only_by"] == ind["worst_case"][e]["broken_only_by"]
        assert sum(cas["worst_case"][e]["broken_only_by"].values()) == round(
            (cas["clean_accuracy"] - cas["worst_case"][e]["robust_accuracy"]) * N)
        assert "broken_uniquely_by" in ind["worst_case"][e]
    # at the larger eps the gradient step breaks points noise left standing
    assert cas["worst_case"][1]["broken_only_by"]["t-fgsm"] > 0
    assert cas["worst_case"][1]["robust_accuracy"] < cas["clean_accuracy"]


def test_broken_is_decided_by_the_model(problem):
    model, x, y = problem
    report = evaluate(model, (x, y), ["t-fgsm"], 0.1, registry=_registry(), progress=False, mode="independent")
    x_adv = x.clone()
    correct = model(x).argmax(1) == y
    # redo the attack by hand on the clean-correct points and count with the model
    xs = x[correct].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(xs), y[correct], reduction="sum"), xs)
    x_adv[correct] = (xs + 0.1 * g.sign()).clamp(0, 1).detach()
    still = (model(x_adv).argmax(1) == y) & correct
    assert report["results"][0]["robust_accuracy"] == pytest.approx(float(still.float().mean()))


def test_queries_and_extras_are_aggregated(problem):
    model, x, y = problem
    report = evaluate(model, (x, y), [("t-noise", {"tries": 3})], 0.01, registry=_registry(), progress=False,
                      batch_size=25)
    r = report["results"][0]
    correct = model(x).argmax(1) == y
    assert r["queries"] == pytest.approx(3.0)
    assert r["extras"]["marker"] == pytest.approx(float(x[correct].flatten(1)[:, 0].double().mean()))
    assert r["extras"]["flag"] == pytest.approx(1.0)
    batches = math.ceil(int(correct.sum()) / 25)
    assert r["extras"]["seconds:inner"] == pytest.approx(0.5 * batches)  # declared "sum": summed
    assert r["seconds:inner"] == r["extras"]["seconds:inner"]  # scalar summaries also at the top level
    assert "marker" not in r  # per-sample extras stay under "extras"


def test_params_argument_and_bad_parameters(problem):
    model, x, y = problem
    reg = _registry()
    report = evaluate(model, (x, y), ["t-noise"], 0.01, registry=reg, progress=False, params={"t-noise": {"tries": 4}})
    assert report["results"][0]["queries"] == pytest.approx(4.0)
    with pytest.raises(TypeError, match="t-noise"):
        evaluate(model, (x, y), [("t-noise", {"bogus": 1})], 0.01, registry=reg, progress=False)
    with pytest.raises(ValueError, match="tries"):
        evaluate(model, (x, y), [("t-noise", {"tries": 0})], 0.01, registry=reg, progress=False)
    with pytest.raises(UnknownNameError, match="t-fgsm"):
        evaluate(model, (x, y), ["t-fgsn"], 0.01, registry=reg, progress=False)
    with pytest.raises(ValueError, match="not in the list"):
        evaluate(model, (x, y), ["t-noise"], 0.01, registry=reg, progress=False, params={"t-fgsm": {"a": 1}})
    with pytest.raises(ValueError, match="larger than the dataset"):
        evaluate(model, (x, y), ["t-noise"], 0.01, registry=reg, progress=False, n=N + 1)
    with pytest.raises(ValueError, match="8/255"):
        evaluate(model, (x, y), ["t-noise"], 8, registry=reg, progress=False)
    with pytest.raises(ValueError, match="supports norm"):
        evaluate(model, (x, y), ["t-fgsm"], 0.5, norm="l2", registry=reg, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(model, (x, y), ["t-fgsm"], 0.5, registry=reg, progress=False, batch_size=0)


def test_n_takes_the_first_samples(problem):
    model, x, y = problem
    report = evaluate(model, (x, y), ["t-identity"], 0.1, registry=_registry(), progress=False, n=10)
    assert report["n"] == 10
    assert report["clean_accuracy"] == pytest.approx(float((model(x[:10]).argmax(1) == y[:10]).float().mean()))


def test_model_state_is_restored(problem):
    model, x, y = problem
    model.train()
    model[1].weight.requires_grad_(False)
    evaluate(model, (x, y), ["t-fgsm"], 0.1, registry=_registry(), progress=False)
    assert model.training and model[1].training
    assert not model[1].weight.requires_grad and model[1].bias.requires_grad
    assert model[1].weight.grad is None and model[1].bias.grad is None


@pytest.mark.numerics  # bit-exact reruns: .ci/run repeats them on other kernels and threads
def test_resume_reproduces_and_skips_finished_work(problem, tmp_path):
    model, x, y = problem
    kwargs = dict(batch_size=20, progress=False, mode="cascade")
    attacks = ["t-noise", "t-count"]
    full_plugin = _Plugin()
    full = evaluate(model, (x, y), attacks, [0.02, 0.08], registry=_registry(full_plugin), **kwargs)
    total_calls = len(full_plugin.calls)
    assert total_calls >= 4

    interrupted = _Plugin(interrupt_on=3)  # dies on the 3rd batch of t-count
    with pytest.raises(KeyboardInterrupt):
        evaluate(model, (x, y), attacks, [0.02, 0.08], registry=_registry(interrupted), out=tmp_path, **kwargs)
    assert (tmp_path / "state.pt").exists() and not (tmp_path / "report.json").exists()
    state = torch.load(tmp_path / "state.pt", weights_only=True)  # plain tensors and containers only
    assert state["fingerprint"]["attacks"][0].startswith("t-noise")

    resumed_plugin = _Plugin()
    resumed = evaluate(model, (x, y), attacks, [0.02, 0.08], registry=_registry(resumed_plugin), out=tmp_path,
                       **kwargs)
    assert resumed["resumed"] is True
    # the two batches finished before the interrupt are not redone
    assert len(resumed_plugin.calls) == total_calls - 2
    assert sum(resumed_plugin.calls) + sum(interrupted.calls[:2]) == sum(full_plugin.calls)

    def strip(report):
        drop = {"seconds", "created", "resumed", "distributed"}
        out = {k: v for k, v in report.items() if k not in drop}
        out["results"] = [{k: v for k, v in r.items() if k != "seconds"} for r in report["results"]]
        return out

    assert strip(resumed) == strip(full)


def test_resume_refuses_another_configuration(problem, tmp_path):
    model, x, y = problem
    plugin = _Plugin(interrupt_on=2)
    kwargs = dict(batch_size=20, progress=False)
    with pytest.raises(KeyboardInterrupt):
        evaluate(model, (x, y), ["t-count"], [0.02], registry=_registry(plugin), out=tmp_path, **kwargs)
    reg = _registry()
    with pytest.raises(ValueError, match=r"eps differs.*delete"):
        evaluate(model, (x, y), ["t-count"], [0.03], registry=reg, out=tmp_path, **kwargs)
    with pytest.raises(ValueError, match="attacks differs"):
        evaluate(model, (x, y), ["t-fgsm"], [0.02], registry=reg, out=tmp_path, **kwargs)
    other, _, _ = _problem()
    with torch.no_grad():
        other[1].bias.add_(0.01)
    with pytest.raises(ValueError, match="model differs"):
        evaluate(other, (x, y), ["t-count"], [0.02], registry=reg, out=tmp_path, **kwargs)
    with pytest.raises(ValueError, match="data differs"):
        evaluate(model, (x.flip(0), y.flip(0)), ["t-count"], [0.02], registry=reg, out=tmp_path, **kwargs)
    with pytest.raises(ValueError, match="seed differs"):
        evaluate(model, (x, y), ["t-count"], [0.02], registry=reg, out=tmp_path, seed=1, **kwargs)
    # the refused runs left the state untouched: the original configuration still resumes
    report = evaluate(model, (x, y), ["t-count"], [0.02], registry=reg, out=tmp_path, **kwargs)
    assert report["resumed"] is True


def test_keep_state_and_explicit_state_path(problem, tmp_path):
    model, x, y = problem
    state = tmp_path / "elsewhere" / "run.pt"
    evaluate(model, (x, y), ["t-fgsm"], 0.05, registry=_registry(), progress=False, state_path=state,
             keep_state=True)
    assert state.exists()
    again = evaluate(model, (x, y), ["t-fgsm"], 0.05, registry=_registry(), progress=False, state_path=state)
    assert again["resumed"] is True and not state.exists()


def test_warning_checks_are_python_warnings_too():
    """The API emits a CheckWarning per warning check of the report (the CLI prints the checks block instead)."""
    model, x, y = _problem()
    reg = _registry()
    probs = nn.Sequential(model, nn.Softmax(dim=1))
    with pytest.warns(CheckWarning, match=r"^softmax-output: .*docs/checks.md#softmax-output"):
        evaluate(probs, (x, y), ["t-identity"], 0.01, registry=reg, progress=False)

    class Masked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, x):
            return self.inner(torch.round(x * 4) / 4)  # piecewise constant: zero input gradient

    with pytest.warns(CheckWarning, match="^zero-gradients: "):
        evaluate(Masked(), (x, y), ["t-identity"], 0.01, registry=reg, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # the identity "attack" would rightly trip unbounded-attack (the registry has no plugin: no logit-scale)
        report = evaluate(model, (x, y), ["t-identity"], 0.01, registry=reg, progress=False,
                          no_check=["unbounded-attack"])
    assert "warn" not in {c["status"] for c in report["checks"]}


def test_nan_logits_are_flagged_and_counted_as_broken():
    model, x, y = _problem(noise=0.0)

    class NanOnChange(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model
            self.register_buffer("x0", x.clone())

        def forward(self, z):
            out = self.inner(z)
            changed = (z.flatten(1) - self.x0[: z.shape[0]].flatten(1)).abs().amax(1) > 0.5
            return torch.where(changed[:, None], torch.full_like(out, float("nan")), out)

    class Jump(Attack):
        info = AttackInfo(norms=("linf",))
        name = "t-jump"

        def perturb(self, model, x, y, generator, target=None):
            return torch.where(x > 0.5, x - self.threat.eps, x + self.threat.eps).clamp(0, 1)

    class P:
        @robustreg.hookimpl
        def robustreg_register_attacks(self, registrar):
            registrar.add_attack("t-jump", Jump)

    reg = Registry.create(plugins=[("p", P())], entry_points=False)
    with pytest.warns(UserWarning, match="NaN"):
        report = evaluate(NanOnChange(), (x, y), ["t-jump"], 0.6, registry=reg, progress=False, batch_size=N)
    assert report["results"][0]["nan_detected"] is True
    assert report["results"][0]["robust_accuracy"] == 0.0


def test_labeled_data_input():
    from robustreg.data import load_data

    data = load_data("digits", "test")
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    report = evaluate(model, data, ["t-identity"], 0.1, registry=_registry(), progress=False, n=50)
    assert report["n"] == 50 and report["data"]["size"] == len(data)


def test_progress_bar_goes_to_stderr(problem, capsys):
    model, x, y = problem
    evaluate(model, (x, y), ["t-fgsm", "t-identity"], [0.01, 0.02], registry=_registry(), progress=True)
    captured = capsys.readouterr()
    assert "pt" in captured.err and captured.out == ""


def test_config_object_and_keyword_options_agree(problem):
    from robustreg.evaluation import EvalConfig, Mode

    model, x, y = problem
    reg = _registry()
    attacks = ["t-noise", "t-fgsm"]
    with pytest.warns(robustreg.RobustregDeprecationWarning, match=r"evaluate\(\): early_exit=False is deprecated; "
                      r"pass mode=Mode.INDEPENDENT"):  # the old keyword still works, saying what replaces it
        by_keywords = evaluate(model, (x, y), attacks, 0.05, registry=reg, progress=False, batch_size=32,
                               early_exit=False)
    config = EvalConfig(batch_size=32, mode=Mode.INDEPENDENT, progress=False, registry=reg)
    by_config = evaluate(model, (x, y), attacks, 0.05, config)
    by_text = evaluate(model, (x, y), attacks, 0.05, EvalConfig(registry=reg, progress=False), batch_size=32,
                       mode="independent")
    for report in (by_config, by_text):
        assert report["mode"] == "independent"
        assert report["results"] == [{**r, "seconds": s["seconds"]} for r, s in
                                     zip(by_keywords["results"], report["results"])]
    assert EvalConfig(mode="cascade").mode is Mode.CASCADE
    with pytest.raises(ValueError, match="mode"):
        EvalConfig(mode="parallel")
    with pytest.raises(ValueError, match="disagree"), pytest.warns(robustreg.RobustregDeprecationWarning):
        EvalConfig.from_options(early_exit=True, mode=Mode.INDEPENDENT)
    with pytest.raises(TypeError, match="bogus"):
        evaluate(model, (x, y), attacks, 0.05, registry=reg, bogus=1)
    with pytest.raises(ValueError, match="batch_size"):
        EvalConfig(batch_size=0)


def test_declared_reductions_of_extras(problem):
    class Summing(Attack):
        info = AttackInfo(norms=("linf",), summary="reports summed and averaged extras")
        name = "t-sum"

        def perturb(self, model, x, y, generator, target=None):
            ones = torch.ones(x.shape[0])
            return AttackResult(x.clone(), extras={"count": ones, "mean_one": ones, "calls": 1.0, "level": 2.0},
                                reductions={"count": "sum", "calls": "sum"})

    class P:
        @robustreg.hookimpl
        def robustreg_register_attacks(self, registrar):
            registrar.add_attack("t-sum", Summing)

    model, x, y = problem
    reg = Registry.create(plugins=[("p", P())], entry_points=False)
    r = evaluate(model, (x, y), ["t-sum"], 0.01, registry=reg, progress=False, batch_size=25)["results"][0]
    batches = math.ceil(r["attacked"] / 25)
    assert r["extras"] == {"count": float(r["attacked"]), "mean_one": 1.0, "calls": float(batches), "level": 2.0}
    with pytest.raises(ValueError, match="reductions"):
        AttackResult(x, reductions={"count": "max"})
