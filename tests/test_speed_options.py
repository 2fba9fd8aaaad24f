"""Evaluation speed options (amp, channels_last, compile, cudnn_benchmark): each reaches the attacks, is
recorded in the report and the run's identity, and never touches the verdicts (always float32).

torch.compile is tested with the "aot_eager" backend (dynamo traces the model and AOTAutograd builds its
backward, in seconds); the default "inductor" backend generates C++ on the CPU, which takes over a minute
on a cold cache here, so it runs in benchmarks/speed_options.py and benchmarks/gpu_check.py instead.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import robustreg
from robustreg import Attack, AttackInfo, Registry, UserError
from robustreg.cli import main
from robustreg.evaluation import evaluate
from robustreg.evaluation.state import report_identity, run_identity
from robustreg.runtime import FastModel, SpeedOptions
from robustreg.testing import separable_batch, trained_tiny_model

# the automatic checks' warnings about the tiny model are not what these tests look at
pytestmark = pytest.mark.filterwarnings("ignore::robustreg.checks.CheckWarning")

SEEN: list[dict[str, object]] = []  # what the recording attacks saw, one entry per batch


def _record(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, object]:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        logits = model(x)
    return {"model": model, "autocast": torch.is_autocast_enabled(x.device.type), "logits": logits.dtype,
            "wrong": int((logits.argmax(1) != y).sum()),
            "weight_channels_last": bool(convs) and convs[0].weight.is_contiguous(memory_format=torch.channels_last)
            and not convs[0].weight.is_contiguous()}


class NativeRecorder(Attack):
    """Returns x; records how it saw the model (a native attack: run under the autocast as a whole)."""

    info = AttackInfo(norms=("linf",), summary="records the model it is given")
    name = "t-record"

    def perturb(self, model, x, y, generator, target=None):
        SEEN.append({"toolkit": "native", **_record(model, x, y)})
        return x


class ToolkitRecorder(NativeRecorder):
    """The same, declared a toolkit's attack: only the model's forward is under autocast."""

    info = AttackInfo(norms=("linf",), toolkit="t-kit", summary="records the model it is given")
    name = "t-kit:record"

    def perturb(self, model, x, y, generator, target=None):
        SEEN.append({"toolkit": "t-kit", **_record(model, x, y)})
        return x


class _Plugin:
    @robustreg.hookimpl
    def robustreg_register_attacks(self, registrar):
        registrar.add_attack("t-record", NativeRecorder)
        registrar.add_attack("t-kit:record", ToolkitRecorder)


@pytest.fixture(scope="module")
def speed_registry() -> Registry:
    return Registry.create(plugins=[("speed-test", _Plugin())])


@pytest.fixture()
def tiny():
    """Three input channels, so that a channels_last weight differs from a contiguous one."""
    x, y = separable_batch(24, (3, 8, 8))
    return trained_tiny_model(in_shape=(3, 8, 8)), x, y


OPTIONS = [
    pytest.param({"amp": "bf16"}, id="amp"),
    pytest.param({"channels_last": True}, id="channels_last"),
    pytest.param({"cudnn_benchmark": True}, id="cudnn_benchmark"),
    pytest.param({"compile": "aot_eager"}, id="compile"),
]


@pytest.mark.parametrize("option", OPTIONS)
def test_each_option_reaches_the_attacks_and_the_report(option, tiny, speed_registry, tmp_path):
    model, x, y = tiny
    weight = model[0].weight
    SEEN.clear()
    report = evaluate(model, (x, y), ["t-record", "t-kit:record", ("pgd", {"steps": 2})], 0.1, out=tmp_path,
                      registry=speed_registry, progress=False, batch_size=16, mode="independent", **option)
    saved = json.loads((tmp_path / "report.json").read_text())
    expected = {**SpeedOptions().to_dict(), **option}
    assert {k: saved["speed"][k] for k in expected} == expected
    assert saved["speed"].get("no_effect", []) == (["cudnn_benchmark"] if "cudnn_benchmark" in option else [])
    assert "speed options on:" in (tmp_path / "report.md").read_text()
    assert report["results"][2]["attacked"] == int(report["clean_accuracy"] * len(x))  # pgd ran on every point

    assert len(SEEN) == 4  # two batches for each recorder
    for seen in SEEN:
        assert isinstance(seen["model"], FastModel)
        assert seen["logits"] == torch.float32  # float32 logits out, also under bf16
        bf16 = option.get("amp") == "bf16"
        assert seen["autocast"] is (bf16 and seen["toolkit"] == "native")
        assert seen["weight_channels_last"] is bool(option.get("channels_last"))
    if "compile" in option:
        fast = SEEN[0]["model"]
        assert isinstance(fast, FastModel) and isinstance(fast._forward, torch._dynamo.eval_frame.OptimizedModule)
    assert model[0].weight is weight and weight.is_contiguous()  # the layout is put back after the run


def test_all_off_gives_the_plain_model_and_the_default_speed_entry(tiny, speed_registry):
    model, x, y = tiny
    SEEN.clear()
    report = evaluate(model, (x, y), ["t-record"], 0.1, registry=speed_registry, progress=False)
    assert SEEN[0]["model"] is model
    assert report["speed"] == {"amp": "off", "channels_last": False, "compile": False, "cudnn_benchmark": False}


class AutocastFlips(nn.Module):
    """A linear classifier that is right in float32 and, under autocast, returns its logits rolled by one
    class: a stand-in for a bf16 rounding that flips every decision."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(w.shape[0], w.shape[1], bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(w.T)

    def forward(self, x):
        logits = self.linear(x.flatten(1))
        return logits.roll(1, dims=1) if torch.is_autocast_enabled(x.device.type) else logits


def test_bf16_cannot_fake_a_success(speed_registry):
    """An identity attack under bf16 sees every point misclassified by the model's autocast forward; the
    verdict (and the clean pass) use the float32 model, so nothing is counted broken and clean accuracy is
    the float32 model's."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, 4, 4, generator=g)
    w = torch.randn(16, 5, generator=g)
    y = (x.flatten(1) @ w).argmax(1)
    model = AutocastFlips(w)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert bool((model(x).argmax(1) != y).all())  # under autocast every point looks adversarial
    SEEN.clear()
    report = evaluate(model, (x, y), ["t-record"], 0.1, registry=speed_registry, progress=False, amp="bf16")
    assert SEEN[0]["wrong"] == len(x)  # the attack saw every point misclassified (and returned it unchanged)
    assert report["clean_accuracy"] == 1.0
    assert report["results"][0]["broken"] == 0 and report["results"][0]["robust_accuracy"] == 1.0


def test_bf16_verdicts_agree_with_fp32_on_the_real_lenet(models_dir, mnist_dir, tmp_path):
    """PGD-10 at eps 0.3 on the PGD-trained LeNet-5, first 100 MNIST test images: bf16 autocast changes the
    attack's arithmetic, not the float32 verdict.  Tolerance: robust accuracy within 3 points and the
    per-sample broken flags agree on >= 95% of the images (measured: see benchmarks/results/speed_options_cpu.md)."""
    from robustreg.data import load_data
    from robustreg.models import build_model

    model = build_model("lenet5-mnist", weights=models_dir / "mnist_lenet5_advtrained.pt").eval()
    data = load_data(f"mnist:{mnist_dir}")
    flags, robust = {}, {}
    for amp in ("off", "bf16"):
        state = tmp_path / f"{amp}.pt"
        report = evaluate(model, data, [("pgd", {"steps": 10, "step_size": 0.03})], 0.3, n=100, batch_size=100,
                          progress=False, amp=amp, state_path=state, keep_state=True, no_check=["unbounded-attack"])
        robust[amp] = report["results"][0]["robust_accuracy"]
        flags[amp] = torch.load(state, weights_only=True)["cells"]["0:0"]["broken"]
    assert abs(robust["bf16"] - robust["off"]) <= 0.03, robust
    agreement = float((flags["bf16"] == flags["off"]).float().mean())
    assert agreement >= 0.95, (agreement, robust)


def test_compiled_embedding_attack_runs_eagerly(tiny):
    """SI-PGD finds the head by forward hooks, which a compiled graph would skip: it gets the eager model
    and gives the same numbers as without compile."""
    model, x, y = tiny
    attacks = [("si-pgd", {"steps": 3}), ("pgd", {"steps": 3})]
    plain = evaluate(model, (x, y), attacks, 0.1, progress=False, mode="independent")
    compiled = evaluate(model, (x, y), attacks, 0.1, progress=False, mode="independent", compile="aot_eager")
    assert [r["robust_accuracy"] for r in compiled["results"]] == [r["robust_accuracy"] for r in plain["results"]]


_broken_backend_registered = False


def _broken_backend() -> str:
    """A torch.compile backend that fails on every graph (a stand-in for a machine without a compiler)."""
    global _broken_backend_registered
    name = "robustreg_test_broken"
    if not _broken_backend_registered:
        from torch._dynamo import register_backend

        def broken(gm, example_inputs):
            raise RuntimeError("no C++ compiler found")

        register_backend(broken, name=name)
        _broken_backend_registered = True
    return name


def test_a_failing_compile_is_one_clear_error_before_any_attack(tiny, speed_registry):
    model, x, y = tiny
    torch._dynamo.reset()  # dynamo caches per code object: the other tests' compiled nn.Sequential.forward
    SEEN.clear()
    with pytest.raises(UserError) as info:
        evaluate(model, (x, y), ["t-record"], 0.1, registry=speed_registry, progress=False,
                 compile=_broken_backend())
    message = str(info.value)
    assert message.startswith("compile='robustreg_test_broken': torch.compile could not compile the model")
    assert "no C++ compiler found" in message and "run without compile" in message and "\n" not in message
    assert SEEN == []  # it failed before any attack ran
    assert model[0].weight.is_contiguous()


@pytest.mark.parametrize(("option", "message"), [
    ({"amp": "fp16"}, "amp must be 'off' or 'bf16', got 'fp16'"),
    ({"channels_last": "yes"}, "channels_last must be True or False, got 'yes'"),
    ({"cudnn_benchmark": 1}, "cudnn_benchmark must be True or False, got 1"),
    ({"compile": "nope"}, "compile must be True, False or a torch.compile backend ("),
])
def test_bad_values_are_one_line(option, message, tiny):
    model, x, y = tiny
    with pytest.raises(ValueError) as info:
        evaluate(model, (x, y), ["fgsm"], 0.1, progress=False, **option)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_cli_bad_values_are_one_line(capsys):
    common = ["evaluate", "--model", "digits-cnn-pretrained", "--data", "digits", "--attacks", "fgsm", "--eps",
              "0.1", "--n", "8", "--quiet"]
    assert main([*common, "--compile", "nope"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "--compile 'nope': compile must be True, False or a torch.compile backend" in err[0]
    assert main([*common, "--amp", "fp16"]) == 2
    assert "--amp: invalid choice: 'fp16'" in capsys.readouterr().err


def test_a_report_or_state_of_another_option_set_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    common = ["evaluate", "--model", "digits-cnn-pretrained", "--data", "digits", "--attacks", "fgsm", "--eps",
              "0.1", "--n", "40", "--quiet", "--out", str(out), "--keep-state"]
    assert main(common) == 0
    capsys.readouterr()
    assert main([*common, "--amp", "bf16"]) == 2
    err = capsys.readouterr().err
    assert "another configuration" in err and "speed options" in err
    assert main(common) == 0 and "report already there" in capsys.readouterr().out  # the same options: reused

    # the state (kept) of the default run does not resume a channels_last run
    from robustreg.data import load_data
    from robustreg.models import build_model

    model = build_model("digits-cnn-pretrained")
    with pytest.raises(ValueError, match="was written for a different configuration: speed differs"):
        evaluate(model, load_data("digits"), ["fgsm"], 0.1, n=40, state_path=out / "state.pt", progress=False,
                 channels_last=True)


def test_states_and_reports_from_before_the_options_count_as_all_off(tiny, tmp_path):
    model, x, y = tiny
    state = tmp_path / "state.pt"
    evaluate(model, (x, y), ["fgsm"], 0.1, progress=False, state_path=state, keep_state=True)
    saved = torch.load(state, weights_only=True)
    del saved["fingerprint"]["speed"]  # as robustreg wrote it before the speed options
    torch.save(saved, state)
    again = evaluate(model, (x, y), ["fgsm"], 0.1, progress=False, state_path=state, keep_state=True)
    assert again["resumed"] is True
    with pytest.raises(ValueError, match="speed differs"):
        evaluate(model, (x, y), ["fgsm"], 0.1, progress=False, state_path=state, amp="bf16")

    report = dict(again)
    del report["speed"]
    plans = [robustreg.evaluation.AttackPlan("fgsm", {}, "fgsm")]
    default = run_identity(plans, [0.1], "linf", "cascade", 0, x, y, model)
    assert report_identity(report) == default
    assert report_identity(report) != run_identity(plans, [0.1], "linf", "cascade", 0, x, y, model,
                                                   SpeedOptions(amp="bf16"))
