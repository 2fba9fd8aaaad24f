"""The ``robustreg`` command: list formats, evaluate / autoattack end to end, one-line user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import robustreg
from robustreg import Attack, AttackInfo, AttackResult, Registry
from robustreg.cli import main
from robustreg.commands.evaluate import DEFAULT_EPS
from robustreg.params import parse_assignment, parse_value
from robustreg_plugins.autoattack_adapter import command as autoattack_command


class _Noise(Attack):
    info = AttackInfo(norms=("linf", "l2"), kind="score", randomized=True, source="tests", summary="test noise")
    name = "t-noise"
    params = robustreg.ParamSet([robustreg.Param("tries", "int", 1, "reported as the queries per sample", low=1)])

    def perturb(self, model, x, y, generator, target=None):
        d = torch.rand(x.shape, generator=generator, device=x.device) * 2 - 1
        x_adv = self.threat.project(x + d.sign() * self.threat.eps, x)
        return AttackResult(x_adv, queries=torch.full((x.shape[0],), float(self.tries)))


class _LinfOnly(_Noise):
    info = AttackInfo(norms=("linf",), kind="white-box", paper="004", summary="linf only | with a pipe")
    name = "t-linf"


class _Plugin:
    def __init__(self) -> None:
        self.ran: list[str] = []

    @robustreg.hookimpl
    def robustreg_register_attacks(self, registrar):
        registrar.add_attack("t-noise", _Noise)
        registrar.add_attack("t-linf", _LinfOnly)

    @robustreg.hookimpl
    def robustreg_register_commands(self, registrar):
        def configure(parser):
            parser.add_argument("--name", required=True)

        def run(args):
            self.ran.append(args.name)
            return 3

        registrar.add_command("t-hello", configure, run, help="say hello")


@pytest.fixture()
def plugin():
    return _Plugin()


@pytest.fixture()
def test_registry(plugin):
    """Core models/data plus the test plugin, no entry points: deterministic listings."""
    return Registry.create(plugins=[("test-plugin", plugin)], entry_points=False)


def _error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("robustreg: warning:")]
    assert len(err) == 1, err
    assert err[0].startswith("robustreg: error: ")
    return err[0]


# --- list ------------------------------------------------------------------------------------
def test_list_text_markdown_json(test_registry, capsys):
    assert main(["list"], registry=test_registry) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "norms", "kind", "toolkit", "paper/source", "targeted", "needs-embedding",
                              "randomized", "summary", "params"]
    assert [line.split()[0] for line in out[2:]] == ["t-linf", "t-noise"]

    assert main(["list", "attacks", "--markdown"], registry=test_registry) == 0
    md = capsys.readouterr().out.splitlines()
    assert md[0] == ("| name | norms | kind | toolkit | paper/source | targeted | needs-embedding | randomized "
                     "| summary | params |")
    assert md[1].startswith("|---|")
    assert md[2].startswith("| t-linf | linf | white-box | native | paper 004 | no | no | no | linf only \\| with")

    assert main(["list", "--json"], registry=test_registry) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["t-linf", "t-noise"]
    assert rows[1]["norms"] == ["linf", "l2"] and rows[1]["kind"] == "score" and rows[1]["plugin"] == "test-plugin"


def test_list_filters_and_other_kinds(test_registry, capsys):
    assert main(["list", "--norm", "l2", "--json"], registry=test_registry) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["t-noise"]
    assert main(["list", "--paper", "004", "--json"], registry=test_registry) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["t-linf"]
    assert main(["list", "--kind", "score", "--json"], registry=test_registry) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["t-noise"]
    assert main(["list", "t-n*", "--json"], registry=test_registry) == 0  # a pattern alone filters attacks
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["t-noise"]
    assert main(["list", "commands", "--json"], registry=test_registry) == 0
    assert [r for r in json.loads(capsys.readouterr().out) if r["plugin"] == "test-plugin"] == [
        {"name": "t-hello", "plugin": "test-plugin", "summary": "say hello"}]
    assert main(["list", "plugins", "--json"], registry=test_registry) == 0
    assert "test-plugin" in [r["name"] for r in json.loads(capsys.readouterr().out)]
    for kind in ("models", "datasets", "defenses"):
        assert main(["list", kind], registry=test_registry) == 0
        assert capsys.readouterr().out.startswith("name")
    assert main(["list", "models", "--norm", "l2"], registry=test_registry) == 2
    assert "attacks only" in _error_line(capsys)
    assert main(["list", "modles", "x"], registry=test_registry) == 2
    assert "unknown kind 'modles'" in _error_line(capsys)


def test_list_reports_failed_plugins_by_name(capsys):
    registry = Registry.create(plugins=[("test-plugin", _Plugin())], entry_points=False)
    registry.load_errors.append(("broken-plugin", "ImportError: no module named nope"))
    assert main(["list"], registry=registry) == 0
    assert "plugin 'broken-plugin' failed to load" in capsys.readouterr().err


def test_list_does_not_import_toolkits():
    code = ("import sys; from robustreg.cli import main; rc = main(['list']); "
            "bad = [m for m in ('art', 'torchattacks', 'autoattack') if m in sys.modules]; "
            "print('IMPORTED', bad); sys.exit(rc or (1 if bad else 0))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "IMPORTED []" in proc.stdout


def test_plugin_command(test_registry, plugin):
    assert main(["t-hello", "--name", "ada"], registry=test_registry) == 3
    assert plugin.ran == ["ada"]


# --- parsing ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("pgd.steps=40", ("pgd", "steps", 40)),
    ("pgd.step_size=1/255", ("pgd", "step_size", 1 / 255)),
    ("pgd.step_size=0.01", ("pgd", "step_size", 0.01)),
    ("pgd.random_start=false", ("pgd", "random_start", False)),
    ("art:pgd.eps_step=none", ("art:pgd", "eps_step", None)),
    ("pgd.loss=cw", ("pgd", "loss", "cw")),
])
def test_parse_param(text, expected):
    owner, key, value = parse_assignment(text)
    assert (owner, key, parse_value(value)) == expected


# --- evaluate --------------------------------------------------------------------------------
def _eval_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["evaluate", "--model", "digits-cnn", "--data", "digits", "--n", "24", "--out", str(tmp_path / "out"),
            "--quiet", *extra]


def test_evaluate_in_process(test_registry, tmp_path, capsys):
    rc = main(_eval_args(tmp_path, "--attacks", "t-noise,t-linf", "--eps", "8/255,16", "--eps-scale", "255",
                         "--param", "t-noise.tries=3", "--no-early-exit", "--batch-size", "10"),
              registry=test_registry)
    out = capsys.readouterr().out
    assert rc == 0, out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["mode"] == "independent" and report["n"] == 24
    assert report["eps"] == pytest.approx([8 / 255, 16 / 255])  # --eps-scale divides plain numbers only
    assert [r["attack"] for r in report["results"]] == ["t-noise", "t-linf"] * 2
    assert report["results"][0]["queries"] == pytest.approx(3.0) and report["results"][0]["params"]["tries"] == 3
    assert report["model"]["spec"] == "digits-cnn" and report["data"]["spec"] == "digits"
    assert "clean accuracy" in out and "report.json" in out


def test_evaluate_real_attack(registry, tmp_path):
    rc = main(_eval_args(tmp_path, "--attacks", "fgsm", "--eps", "0.1"), registry=registry)
    assert rc == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["results"][0]["attack"] == "fgsm" and report["results"][0]["max_perturbation"] <= 0.1 + 1e-6


@pytest.mark.parametrize("extra, needle", [
    (["--attacks", "t-nosie", "--eps", "0.1"], "'t-noise'"),
    (["--attacks", "t-noise", "--eps", "8"], "8/255"),
    (["--attacks", "t-noise", "--eps", "abc"], "--eps 'abc'"),
    (["--attacks", "t-noise", "--eps", "0.1", "--weights", "/nonexistent/w.pt"], "--weights '/nonexistent/w.pt'"),
    (["--attacks", "t-noise", "--eps", "0.1", "--param", "t-noise-tries-3"], "--param must be"),
    (["--attacks", "t-noise", "--eps", "0.1", "--param", "t-noise.bogus=1"], "bogus"),
    (["--attacks", "t-noise", "--eps", "0.1", "--param", "t-linf.tries=2"], "not in --attacks"),
    (["--attacks", "t-noise", "--eps", "0.1", "--n", "100000"], "--n 100000"),
    (["--attacks", "t-linf", "--eps", "0.5", "--norm", "l2"], "supports norm"),
    (["--attacks", "t-noise", "--eps", "0.1", "--norm", "l3"], "--norm"),
    (["--attacks", "t-noise", "--eps", "0.1", "--batch-size", "0"], "--batch-size"),
    (["--attacks", "t-noise", "--eps", "0.1", "--device", "tpu"], "--device"),
])
def test_evaluate_user_errors(test_registry, tmp_path, capsys, extra, needle):
    assert main(_eval_args(tmp_path, *extra), registry=test_registry) == 2
    assert needle in _error_line(capsys)
    assert not (tmp_path / "out" / "report.json").exists()


def test_evaluate_model_and_data_errors(test_registry, tmp_path, capsys):
    assert main(["evaluate", "--model", "digits-cnn", "--attacks", "t-noise", "--eps", "0.1"],
                registry=test_registry) == 2
    assert "--data required" in _error_line(capsys)
    assert main(["evaluate", "--model", "digits-cnx", "--data", "digits", "--attacks", "t-noise", "--eps", "0.1",
                 "--out", str(tmp_path)], registry=test_registry) == 2
    line = _error_line(capsys)
    assert "--model 'digits-cnx'" in line and "digits-cnn" in line
    assert main(["evaluate", "--model", "digits-cnn", "--data", "nodata", "--attacks", "t-noise", "--eps", "0.1",
                 "--out", str(tmp_path)], registry=test_registry) == 2
    assert "--data 'nodata'" in _error_line(capsys)


def test_debug_shows_the_traceback(test_registry, tmp_path):
    with pytest.raises(ValueError, match="8/255"):
        main(_eval_args(tmp_path, "--attacks", "t-noise", "--eps", "8", "--debug"), registry=test_registry)


def test_evaluate_without_arguments_end_to_end(tmp_path):
    """The demo: digits-cnn-pretrained (trained into a tmp cache), the default attacks and eps."""
    env = {**os.environ, "ROBUSTREG_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "robustreg.cli", "evaluate", "--quiet"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "robustreg-out" / "report.json").read_text())
    assert report["eps"] == list(DEFAULT_EPS)
    names = [a["name"] for a in report["attacks"]]
    demo = {name for name, spec in Registry.create().entries("attacks").items() if spec.demo}
    assert names and set(names) <= demo
    assert report["clean_accuracy"] > 0.9  # the pretrained digits model
    worst = [w["robust_accuracy"] for w in report["worst_case"]]
    assert worst == sorted(worst, reverse=True) and worst[-1] < report["clean_accuracy"]
    assert "worst-case robust acc" in proc.stdout


# --- autoattack ------------------------------------------------------------------------------
def test_autoattack_missing_is_one_line(plugin, capsys):
    test_registry = Registry.create(plugins=[("test-plugin", plugin), ("autoattack", autoattack_command)],
                                    entry_points=False)
    rc = main(["autoattack", "--model", "digits-cnn", "--data", "digits", "--eps", "0.1"], registry=test_registry)
    assert rc == 2
    line = _error_line(capsys)
    assert "autoattack:standard" in line and "pip install pyautoattack" in line
    assert main(["autoattack", "--model", "digits-cnn", "--data", "digits"], registry=test_registry) == 2
    assert "--eps" in _error_line(capsys)


def test_autoattack_end_to_end(registry, tmp_path, capsys):
    rc = main(["autoattack", "--model", "digits-cnn", "--data", "digits", "--eps", "0.5", "--n", "12",
               "--out", str(tmp_path), "--quiet"], registry=registry)
    out = capsys.readouterr().out
    assert rc == 0, out
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["attack"] for r in report["results"]] == ["autoattack:standard"]
    assert "robust accuracy:" in out and "clean accuracy:" in out and "max perturbation:" in out


def test_interrupted_evaluate_resumes(tmp_path, capsys):
    calls: list[int] = []

    class Flaky(_Noise):
        info = AttackInfo(norms=("linf",), summary="interrupts on its 2nd batch, once")
        name = "t-flaky"

        def perturb(self, model, x, y, generator, target=None):
            calls.append(x.shape[0])
            if len(calls) == 2:
                raise KeyboardInterrupt
            return super().perturb(model, x, y, generator, target)

    class P:
        @robustreg.hookimpl
        def robustreg_register_attacks(self, registrar):
            registrar.add_attack("t-flaky", Flaky)

    registry = Registry.create(plugins=[("p", P())], entry_points=False)
    weights = tmp_path / "w.pt"  # digits-cnn is randomly initialised: fix its weights so both runs match
    torch.manual_seed(0)  # and so that enough points are clean-correct for several batches, whatever ran before
    torch.save(registry.model("digits-cnn").build().state_dict(), weights)
    args = ["evaluate", "--model", "digits-cnn", "--weights", str(weights), "--data", "digits", "--n", "200",
            "--attacks", "t-flaky",
            "--eps", "0.5", "--batch-size", "8", "--out", str(tmp_path), "--quiet", "--no-early-exit"]
    assert main(args, registry=registry) == 130
    assert "resume from" in capsys.readouterr().err
    assert (tmp_path / "state.pt").exists()
    first = len(calls)
    assert main(args, registry=registry) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["resumed"] is True
    assert len(calls) - first == sum(1 for _ in range(0, report["results"][0]["attacked"], 8)) - 1


def test_autoattack_summary_from_sub_attack_extras(tmp_path, capsys):
    """A stand-in for the adapter's contract: extras robust_after:<sub> (bool per sample), seconds:<sub>."""

    class FakeSuite(Attack):
        info = AttackInfo(norms=("linf",), toolkit="autoattack", summary="stand-in")
        name = "autoattack:standard"

        def perturb(self, model, x, y, generator, target=None):
            k = torch.arange(x.shape[0])
            after_a = k % 2 == 1  # the suite's own record: "a" broke every other point, "b" half of the rest
            after_b = k % 4 == 1
            return AttackResult(x.clone(), extras={"robust_after:a": after_a, "robust_after:b": after_b,
                                               "seconds:a": 1.0, "seconds:b": 2.0})

    class P:
        @robustreg.hookimpl
        def robustreg_register_attacks(self, registrar):
            registrar.add_attack("autoattack:standard", FakeSuite)

    registry = Registry.create(plugins=[("p", P()), ("autoattack", autoattack_command)], entry_points=False)
    weights = tmp_path / "w.pt"
    torch.save(registry.model("digits-cnn").build().state_dict(), weights)
    rc = main(["autoattack", "--model", "digits-cnn", "--weights", str(weights), "--data", "digits", "--eps", "0.1",
               "--n", "200", "--batch-size", "1000", "--out", str(tmp_path / "o"), "--quiet"], registry=registry)
    out = capsys.readouterr().out
    assert rc == 0, out
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    attacked = report["results"][0]["attacked"]
    assert attacked > 0
    # one basis, the attacked points (as the table's robust_after columns), said in the header line
    expect_a = 100 * sum(1 for i in range(attacked) if i % 2 == 1) / attacked
    expect_b = 100 * sum(1 for i in range(attacked) if i % 4 == 1) / attacked
    lines = dict(line.split(":", 1) for line in out.splitlines()[-7:])
    assert f"of the {attacked} attacked" in lines["robust after each sub-attack"]
    assert lines["robust after a"].split()[0] == f"{expect_a:.2f}%" and "(1.0 s)" in lines["robust after a"]
    assert lines["robust after b"].split()[0] == f"{expect_b:.2f}%" and "(2.0 s)" in lines["robust after b"]
    assert f"{report['results'][0]['extras']['robust_after:a']:.4g}" in out  # the table's column, same number
    assert lines["clean accuracy"].split()[0] == f"{100 * report['clean_accuracy']:.2f}%"


# --- declared parameters: list NAME, --param coercion, the registry's defaults ------------------
class _Stepped(_Noise):
    info = AttackInfo(norms=("linf",), summary="declares its parameters")
    name = "t-steps"
    tries = 1
    params = robustreg.ParamSet([
        robustreg.Param("steps", "int", 20, "iterations", low=1),
        robustreg.Param("step_size", "float", None, "step per iteration", low=0, optional=True,
                        unit="pixels [0, 1]", toolkit="alpha"),
    ])


class _Declared:
    @robustreg.hookimpl
    def robustreg_register_attacks(self, registrar):
        registrar.add_attack("t-steps", _Stepped, demo=True)
        registrar.add_attack("t-noise", _Noise)

    @robustreg.hookimpl
    def robustreg_register_commands(self, registrar):
        registrar.add_command("autoattack", autoattack_command.configure, autoattack_command.run)


@pytest.fixture()
def declared_registry():
    return Registry.create(plugins=[("declared", _Declared())], entry_points=False)


def test_list_one_attack_shows_its_declared_parameters(declared_registry, capsys):
    assert main(["list", "attacks", "t-steps"], registry=declared_registry) == 0
    out = capsys.readouterr().out.splitlines()
    header = [line for line in out if line.startswith("name")][0]
    assert header.split() == ["name", "type", "default", "allowed", "unit", "doc", "toolkit", "name"]
    rows = {line.split()[0]: line for line in out if line.split() and line.split()[0] in ("steps", "step_size")}
    assert "an int >= 1" in rows["steps"] and "alpha" in rows["step_size"] and "pixels [0, 1]" in rows["step_size"]
    assert main(["list", "attacks", "--json"], registry=declared_registry) == 0
    row = {r["name"]: r for r in json.loads(capsys.readouterr().out)}["t-steps"]
    assert [p["name"] for p in row["params"]] == ["steps", "step_size", "seed", "eval_mode", "eot"]
    assert row["params"][0]["default"] == 20 and row["demo"] is True
    assert main(["list"], registry=declared_registry) == 0
    assert "steps=20, step_size=None" in capsys.readouterr().out


@pytest.mark.parametrize("param, needle", [
    ("t-steps.stepz=3", "did you mean steps"),
    ("t-steps.steps=abc", "steps must be an int >= 1"),
    ("t-steps.steps=0", "steps must be an int >= 1"),
    ("steps", "--param must be [NAME.]KEY=VALUE"),
])
def test_param_errors_are_one_line(declared_registry, tmp_path, capsys, param, needle):
    args = ["--model", "digits-cnn", "--data", "digits", "--eps", "0.1", "--param", param, "--out", str(tmp_path)]
    assert main(["evaluate", "--attacks", "t-steps", *args], registry=declared_registry) == 2
    assert needle in _error_line(capsys)
    assert main(["compare", "--attack", "t-steps", *args], registry=declared_registry) == 2
    assert needle in _error_line(capsys)
    assert not (tmp_path / "report.json").exists()


def test_param_without_owner_needs_a_single_attack(declared_registry, tmp_path, capsys):
    rc = main(_eval_args(tmp_path, "--attacks", "t-steps,t-noise", "--eps", "0.1", "--param", "steps=2"),
              registry=declared_registry)
    assert rc == 2 and "must name its owner" in _error_line(capsys)
    rc = main(_eval_args(tmp_path, "--attacks", "t-steps", "--eps", "0.1", "--param", "steps=2"),
              registry=declared_registry)
    assert rc == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["results"][0]["params"]["steps"] == 2


def test_demo_attacks_come_from_the_registry(declared_registry):
    from robustreg.commands.evaluate import DEMO_STEPS, demo_attacks

    assert demo_attacks(declared_registry) == {"t-steps": {"steps": DEMO_STEPS}}


def test_help_without_the_autoattack_plugin(monkeypatch, capsys):
    monkeypatch.setenv("ROBUSTREG_DISABLE_PLUGINS", "autoattack")
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "evaluate" in out and "autoattack" not in out
    monkeypatch.setenv("ROBUSTREG_DISABLE_PLUGINS", "")
    assert main(["--help"]) == 0
    assert "autoattack" in capsys.readouterr().out


def test_demo_without_the_scale_invariant_plugin(tmp_path):
    env = {**os.environ, "ROBUSTREG_CACHE": str(tmp_path / "cache"), "ROBUSTREG_DISABLE_PLUGINS": "scale_invariant"}
    proc = subprocess.run([sys.executable, "-m", "robustreg.cli", "evaluate", "--quiet"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    names = [a["name"] for a in json.loads((tmp_path / "robustreg-out" / "report.json").read_text())["attacks"]]
    demo = {n for n, s in Registry.create(disabled=["scale_invariant"]).entries("attacks").items() if s.demo}
    assert names and set(names) == demo and "si-pgd" not in names


def test_every_attack_and_defense_lists_its_declared_parameters(capsys):
    """Needs every plugin migrated to declared parameters."""
    for kind in ("attacks", "defenses"):
        assert main(["list", kind, "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert rows
        for row in rows:
            assert row["params"], f"{kind[:-1]} {row['name']} declares no parameters"
            for p in row["params"]:
                assert {"name", "type", "default", "doc"} <= set(p) and p["doc"], (row["name"], p)


def test_output_piped_into_head_ends_quietly():
    """`robustreg list attacks --json | head -1`: the reader leaves after one line (the JSON is ~180 kB, more
    than a pipe holds), and robustreg stops with status 0 and nothing on stderr, as under SIGPIPE."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "robustreg", "list", "attacks", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().strip() == b"["
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and err == "", err
