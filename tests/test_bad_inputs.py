"""Every class of bad input gets one clear line on stderr, exit status 2, never a traceback.

Through the CLI (``main()`` in-process for most, a few as a real subprocess) and through the Python
API (the same checks raise ValueError / TypeError with the same messages).  An internal error (a bug)
is one line saying so, exit status 1, and shows its traceback only with ``ROBUSTREG_DEBUG=1``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robustreg import UserError, build_model, evaluate
from robustreg.cli import main, user_error_message
from robustreg.commands.train import load_config
from robustreg.data import load_data
from robustreg.evaluation.probe import probe_model
from robustreg.models import load_checkpoint

MODELS = textwrap.dedent('''\
    import torch
    from torch import nn

    class Linear(nn.Module):
        def __init__(self, k=10, mode="ok"):
            super().__init__()
            self.fc = nn.Linear(64, k)
            self.mode = mode
        def forward(self, x):
            if self.mode == "raise":
                raise RuntimeError("boom in forward")
            out = self.fc(x.flatten(1))
            if self.mode == "const":
                return self.fc.bias.expand(x.shape[0], -1) + 0 * out.sum()
            if self.mode == "onerow":
                return out.mean(0, keepdim=True)
            if self.mode == "nan":
                return out * float("nan")
            if self.mode == "tuple":
                return out, out
            return out

    class NoParams(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :10] * 3

    def ok(): return Linear()
    def const(): return Linear(mode="const")
    def onerow(): return Linear(mode="onerow")
    def nan(): return Linear(mode="nan")
    def tuple_out(): return Linear(mode="tuple")
    def raising(): return Linear(mode="raise")
    def five(): return Linear(k=5)
    def noparams(): return NoParams()
    def frozen():
        m = Linear()
        m.requires_grad_(False)
        return m
    def notmodule(): return 3
    def factory_raises():
        raise RuntimeError("factory boom")
    ''')
FORWARD_RAISE_LINE = 1 + next(i for i, line in enumerate(MODELS.splitlines()) if "boom in forward" in line)
FACTORY_RAISE_LINE = 1 + next(i for i, line in enumerate(MODELS.splitlines()) if "factory boom" in line)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    (d / "models.py").write_text(MODELS)
    (d / "syntax.py").write_text("import torch\ndef f(:\n    pass\n")
    (d / "import_raises.py").write_text("import torch\nraise ImportError('no such thing here')\ndef f(): pass\n")
    (d / "bad.yaml").write_text("x: [1, 2\ny: {\n")
    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "text.npz").write_text("hello, I am text\n")
    (d / "empty.pt").write_bytes(b"")
    (d / "garbage.pt").write_bytes(b"\x80\x02not really a pickle at all" * 4)
    (d / "outfile").write_text("")
    data = load_data("digits", "test")
    x, y = data.tensors(64)
    np.save(d / "array.npy", x.numpy())
    (d / "single.npz").write_bytes((d / "array.npy").read_bytes())
    rgb = x.repeat(1, 3, 1, 1).numpy()
    np.savez(d / "rgb.npz", x_train=rgb, y_train=y.numpy(), x_test=rgb, y_test=y.numpy())
    np.savez(d / "empty.npz", x=np.zeros((0, 1, 8, 8), np.float32), y=np.zeros((0,), np.int64))
    labels = y.numpy().copy()
    labels[0] = 12
    np.savez(d / "biglabel.npz", x=x.numpy(), y=labels)
    torch.save(build_model("digits-cnn").state_dict(), d / "good.pt")
    good = (d / "good.pt").read_bytes()
    (d / "trunc.pt").write_bytes(good[: len(good) // 2])
    torch.save(nn.Linear(3, 4).state_dict(), d / "other.pt")
    return d


def _check(rc: int, err: str, needles: tuple[str, ...]) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith("robustreg: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _evaluate(tmp: Path, *extra: str) -> list[str]:
    return ["evaluate", "--attacks", "fgsm", "--eps", "0.1", "--n", "4", "--quiet", "--out", str(tmp / "o"), *extra]


def _train(tmp: Path, *extra: str) -> list[str]:
    return ["train", "--defense", "standard", "--iterations", "2", "--batch-size", "16", "--quiet", "--device",
            "cpu", "--out", str(tmp / "t"), *extra]


M = "{d}/models.py"
# (case id, command maker, arguments ({d}: the fixture folder), strings the one line must hold)
CASES = [
    # the model spec and the user's model code
    ("pkg-module-missing", _evaluate, ["--model", "nosuchpkg.mod:f", "--data", "digits"], ("--model", "nosuchpkg.mod")),
    ("pkg-submodule-missing", _evaluate, ["--model", "json.nosuchsub:f", "--data", "digits"],
     ("--model", "json.nosuchsub")),
    ("pkg-no-factory", _evaluate, ["--model", "json:nosuch", "--data", "digits"], ("--model", "nosuch")),
    ("file-missing", _evaluate, ["--model", "{d}/nope.py:f", "--data", "digits"], ("--model", "nope.py")),
    ("file-syntax-error", _evaluate, ["--model", "{d}/syntax.py:f", "--data", "digits"],
     ("--model", "SyntaxError", "syntax.py:2")),
    ("file-import-raises", _evaluate, ["--model", "{d}/import_raises.py:f", "--data", "digits"],
     ("--model", "importing the model file", "ImportError", "import_raises.py:2")),
    ("factory-raises", _evaluate, ["--model", M + ":factory_raises", "--data", "digits"],
     ("--model", "the model factory", "factory boom", f"models.py:{FACTORY_RAISE_LINE}")),
    ("factory-no-callable", _evaluate, ["--model", M + ":nosuch", "--data", "digits"], ("--model", "nosuch")),
    ("factory-not-module", _evaluate, ["--model", M + ":notmodule", "--data", "digits"],
     ("--model", "not an nn.Module")),
    ("unknown-model-name", _evaluate, ["--model", "digits-cnnn", "--data", "digits"], ("digits-cnnn",)),
    ("bad-normalize", _evaluate, ["--model", "digits-cnn", "--normalize", "abc", "--data", "digits"],
     ("--model", "normalize")),
    # the probe: model against data
    ("output-const", _evaluate, ["--model", M + ":const", "--data", "digits"],
     ("--model", "--data", "does not depend on its input")),
    ("no-parameters", _evaluate, ["--model", M + ":noparams", "--data", "digits"], ("--model", "no parameters")),
    ("28x28-model-on-8x8", _evaluate, ["--model", "lenet5-mnist", "--data", "digits"],
     ("--model", "expects input 1x28x28", "--data", "1x8x8")),
    ("3-channel-into-1", _evaluate, ["--model", "digits-cnn", "--data", "npz:{d}/rgb.npz"],
     ("--model", "--data", "3x8x8", "expects input 1x8x8")),  # the registered input_shape, before any forward
    ("fewer-outputs", _evaluate, ["--model", M + ":five", "--data", "digits"], ("--model", "5 outputs", "10 classes")),
    ("label-beyond-outputs", _evaluate, ["--model", "digits-cnn", "--data", "npz:{d}/biglabel.npz"],
     ("--model", "10 outputs", "13 classes")),
    ("one-row-for-a-batch", _evaluate, ["--model", M + ":onerow", "--data", "digits"],
     ("--model", "(1, 10)", "batch of 2")),
    ("forward-raises", _evaluate, ["--model", M + ":raising", "--data", "digits"],
     ("--model", "the model's forward raised", "boom in forward", f"models.py:{FORWARD_RAISE_LINE}")),
    ("output-nan", _evaluate, ["--model", M + ":nan", "--data", "digits"], ("--model", "not finite")),
    ("output-tuple", _evaluate, ["--model", M + ":tuple_out", "--data", "digits"], ("--model", "tensor", "tuple")),
    # data files
    ("empty-dataset", _evaluate, ["--model", "digits-cnn", "--data", "npz:{d}/empty.npz"], ("--data", "no samples")),
    ("text-file-named-npz", _evaluate, ["--model", "digits-cnn", "--data", "npz:{d}/text.npz"],
     ("--data", "text file", "not a .npz")),
    ("npy-named-npz", _evaluate, ["--model", "digits-cnn", "--data", "npz:{d}/single.npz"], ("--data", ".npy")),
    ("npz-missing", _evaluate, ["--model", "digits-cnn", "--data", "npz:{d}/nope.npz"], ("--data", "nope.npz")),
    ("unknown-data", _evaluate, ["--model", "digits-cnn", "--data", "nosuchdata"], ("--data", "nosuchdata")),
    # weights
    ("weights-truncated", _evaluate, ["--model", "digits-cnn", "--weights", "{d}/trunc.pt", "--data", "digits"],
     ("--weights", "trunc.pt", "truncated")),
    ("weights-garbage", _evaluate, ["--model", "digits-cnn", "--weights", "{d}/garbage.pt", "--data", "digits"],
     ("--weights", "garbage.pt", "not a PyTorch checkpoint")),
    ("weights-empty", _evaluate, ["--model", "digits-cnn", "--weights", "{d}/empty.pt", "--data", "digits"],
     ("--weights", "empty.pt", "empty (0 bytes)")),
    ("weights-missing", _evaluate, ["--model", "digits-cnn", "--weights", "{d}/nope.pt", "--data", "digits"],
     ("--weights", "nope.pt")),
    ("weights-of-another-model", _evaluate, ["--model", "digits-cnn", "--weights", "{d}/other.pt", "--data",
                                             "digits"], ("--model", "other.pt")),
    # run arguments
    ("out-is-a-file", _evaluate, ["--model", "digits-cnn", "--data", "digits", "--out", "{d}/outfile"],
     ("--out", "outfile")),
    ("device-cuda-x", _evaluate, ["--model", "digits-cnn", "--data", "digits", "--device", "cuda:x"],
     ("--device", "cuda:x")),
    ("seed-overflow", _evaluate, ["--model", "digits-cnn", "--data", "digits", "--seed", "9" * 25], ("--seed",)),
    ("seed-negative", _evaluate, ["--model", "digits-cnn", "--data", "digits", "--seed", "-1"], ("--seed",)),
    ("batch-size-0", _evaluate, ["--model", "digits-cnn", "--data", "digits", "--batch-size", "0"],
     ("--batch-size",)),
    ("bad-eps", ["evaluate", "--model", "digits-cnn", "--data", "digits", "--attacks", "fgsm", "--eps", "abc"],
     [], ("--eps", "abc")),
    ("unknown-attack", ["evaluate", "--model", "digits-cnn", "--data", "digits", "--attacks", "fgsmm"], [],
     ("--attacks", "fgsmm")),
    ("unknown-attack-param", ["evaluate", "--model", "digits-cnn", "--data", "digits", "--attacks", "pgd", "--eps",
                              "0.1", "--param", "pgd.stepz=3"], [], ("--param", "pgd", "stepz", "steps")),
    # compare
    ("compare-28x28-on-8x8", ["compare", "--model", "lenet5-mnist", "--data", "digits", "--attack", "fgsm", "--eps",
                              "0.1", "--n", "4", "--quiet"], [], ("--model", "1x8x8")),
    ("compare-device", ["compare", "--model", "digits-cnn", "--data", "digits", "--attack", "fgsm", "--eps", "0.1",
                        "--device", "cuda:x"], [], ("--device",)),
    # train
    ("train-28x28-on-8x8", _train, ["--model", "lenet5-mnist", "--data", "digits"], ("--model", "1x8x8")),
    ("train-3-channel-into-1", _train, ["--model", "digits-cnn", "--data", "npz:{d}/rgb.npz"], ("--model", "3x8x8")),
    ("train-frozen-model", _train, ["--model", M + ":frozen", "--data", "digits"], ("no trainable parameters",)),
    ("train-one-row", _train, ["--model", M + ":onerow", "--data", "digits"], ("--model", "batch of 2")),
    ("train-yaml-syntax", ["train", "--config", "{d}/bad.yaml"], [],
     ("--config", "bad.yaml", "not valid YAML", "line 2")),
    ("train-yaml-not-mapping", ["train", "--config", "{d}/list.yaml"], [], ("list.yaml", "mapping")),
    ("train-config-missing", ["train", "--config", "{d}/nope.yaml"], [], ("nope.yaml",)),
    ("train-nan-loss", _train, ["--model", "digits-cnn", "--data", "digits", "--lr", "1e30", "--iterations", "6",
                                "--log-every", "3"], ("diverged", "non-finite", "--lr")),
    ("train-param-typo", _train, ["--model", "digits-cnn", "--data", "digits", "--defense", "trades", "--param",
                                  "trades.betta=3"], ("--param", "trades", "betta")),
    ("train-param-no-name", _train, ["--model", "digits-cnn", "--data", "digits", "--defense", "trades", "--param",
                                     "betta=3"], ("--param", "trades", "betta")),
    ("train-seed-overflow", _train, ["--model", "digits-cnn", "--data", "digits", "--seed", "9" * 25], ("--seed",)),
    ("train-out-is-a-file", _train, ["--model", "digits-cnn", "--data", "digits", "--out", "{d}/outfile"],
     ("--out", "outfile")),
    ("train-unknown-defense", _train, ["--model", "digits-cnn", "--data", "digits", "--defense", "nosuchdef"],
     ("nosuchdef",)),
    ("train-bad-set", _train, ["--model", "digits-cnn", "--data", "digits", "--set", "novalue"], ("--set",)),
    ("train-device", _train, ["--model", "digits-cnn", "--data", "digits", "--device", "cuda:x"], ("device",)),
    ("train-weights-truncated", _train, ["--model", "digits-cnn", "--data", "digits", "--weights",
                                         "{d}/trunc.pt"], ("--weights", "truncated")),
]


def _argv(case: tuple, d: Path, tmp: Path) -> list[str]:
    _, make, extra, _ = case
    args = [a.replace("{d}", str(d)) for a in extra]
    argv = make(tmp, *args) if callable(make) else [a.replace("{d}", str(d)) for a in make] + args
    return argv


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_cli(case, files, registry, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ROBUSTREG_DEBUG", raising=False)
    rc = main(_argv(case, files, tmp_path), registry=registry)
    _check(rc, capsys.readouterr().err, tuple(n.replace("{d}", str(files)) for n in case[3]))


def test_enough_cases():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


def _robustreg(*argv: str, env: dict[str, str] | None = None, code: str | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    full.pop("ROBUSTREG_DEBUG", None) if env is None or "ROBUSTREG_DEBUG" not in env else None
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "robustreg", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, env=full, timeout=300)


@pytest.mark.parametrize("name", ["pkg-module-missing", "28x28-model-on-8x8"])
def test_bad_input_subprocess(name, files, tmp_path):
    case = next(c for c in CASES if c[0] == name)
    proc = _robustreg(*_argv(case, files, tmp_path))
    _check(proc.returncode, proc.stderr, case[3])


BUG = ("import sys\nimport robustreg.commands.evaluate as e\n"
       "def boom(*a, **k):\n    raise TypeError('an internal bug')\n"
       "e.run_evaluation = boom\nfrom robustreg.cli import main\nsys.exit(main(['evaluate']))\n")


def test_internal_error_traceback_only_with_debug():
    plain = _robustreg(code=BUG)
    lines = [line for line in plain.stderr.splitlines() if line.strip()]
    assert plain.returncode == 1, plain.stderr
    assert "Traceback" not in plain.stderr
    assert len(lines) == 1 and "internal error" in lines[0] and "TypeError: an internal bug" in lines[0]
    assert "bug" in lines[0] and "ROBUSTREG_DEBUG=1" in lines[0]
    debug = _robustreg(code=BUG, env={"ROBUSTREG_DEBUG": "1"})
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "TypeError: an internal bug" in debug.stderr


def test_internal_error_in_process(registry, capsys, monkeypatch):
    import robustreg.commands.evaluate as command

    def boom(*args, **kwargs):
        return {}["missing key"]

    monkeypatch.delenv("ROBUSTREG_DEBUG", raising=False)
    monkeypatch.setattr(command, "run_evaluation", boom)
    assert main(["evaluate"], registry=registry) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and "KeyError" in err and "ROBUSTREG_DEBUG=1" in err
    with pytest.raises(KeyError):
        main(["evaluate", "--debug"], registry=registry)
    monkeypatch.setenv("ROBUSTREG_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["evaluate"], registry=registry)


def test_which_exceptions_are_user_errors(tmp_path):
    assert user_error_message(UserError("bad value")) == "bad value"
    try:
        open(tmp_path / "nope")
    except OSError as exc:
        assert "nope" in (user_error_message(exc) or "")
    assert user_error_message(TypeError("a bug")) is None
    assert user_error_message(KeyError("a bug")) is None
    assert user_error_message(RuntimeError("a bug")) is None
    try:
        torch.nn.functional.cross_entropy(torch.zeros(1, 3), torch.zeros(2, dtype=torch.long))
    except ValueError as exc:  # raised inside torch, not by our checks: a bug of ours to let it through
        assert user_error_message(exc) is None


# ---------------------------------------------------------------------------------------------------
# the Python API: the same checks, ValueError / TypeError
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    return load_data("digits", "test").tensors(8)


def _evaluate_api(model, data, tmp_path):
    return evaluate(model, data, [("fgsm", {})], [0.1], out=tmp_path / "o", progress=False)


def _user_model(files: Path, name: str) -> nn.Module:
    return build_model(f"{files}/models.py:{name}")


@pytest.mark.parametrize("make, error, needle", [
    (lambda x, y: (x.double(), y), TypeError, "float64"),
    (lambda x, y: (x[:, 0], y), ValueError, "N x C x H x W"),
    (lambda x, y: (x, torch.full_like(y, 12)), ValueError, "labels go up to 12"),
    (lambda x, y: (x[:0], y[:0]), ValueError, "no samples"),
    (lambda x, y: (x.repeat(1, 3, 1, 1), y), ValueError, "forward raised"),
], ids=["float64", "3-d", "labels-beyond", "empty", "3-channels"])
def test_api_evaluate_bad_data(make, error, needle, digits, tmp_path):
    with pytest.raises(error, match=needle):
        _evaluate_api(build_model("digits-cnn"), make(*digits), tmp_path)


@pytest.mark.parametrize("name, needle", [
    ("onerow", "one row per sample"), ("const", "does not depend"), ("noparams", "no parameters"),
    ("nan", "not finite"), ("raising", f"models.py:{FORWARD_RAISE_LINE}"),
])
def test_api_evaluate_bad_model(name, needle, files, digits, tmp_path):
    with pytest.raises(ValueError, match=needle):
        _evaluate_api(_user_model(files, name), digits, tmp_path)


def test_api_build_model_errors(files):
    with pytest.raises(ModuleNotFoundError, match="nosuchpkg"):
        build_model("nosuchpkg.mod:f")
    with pytest.raises(ValueError, match="nosuchpkg"):
        build_model("nosuchpkg.mod:f")
    with pytest.raises(ValueError, match="syntax.py:2"):
        build_model(f"{files}/syntax.py:f")
    with pytest.raises(ValueError, match=f"models.py:{FACTORY_RAISE_LINE}"):
        build_model(f"{files}/models.py:factory_raises")
    with pytest.raises(TypeError, match="not an nn.Module"):
        build_model(f"{files}/models.py:notmodule")


def test_api_files(files):
    with pytest.raises(ValueError, match="text file"):
        load_data(f"npz:{files}/text.npz")
    with pytest.raises(ValueError, match="no samples"):
        load_data(f"npz:{files}/empty.npz")
    for name, needle in (("trunc.pt", "truncated"), ("empty.pt", "empty"), ("garbage.pt", "not a PyTorch")):
        with pytest.raises(ValueError, match=needle):
            load_checkpoint(build_model("digits-cnn"), files / name)
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(files / "bad.yaml")


def test_probe_restores_modes_and_passes_a_good_model(files, digits):
    model = _user_model(files, "ok")
    model.train()
    probe_model(model, *digits, num_classes=10, trainable=True)
    assert model.training and model.fc.training
    with pytest.raises(ValueError, match="5 outputs"):
        probe_model(_user_model(files, "five"), *digits, num_classes=10)
