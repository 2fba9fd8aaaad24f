"""robustreg.models: architectures, Normalize, checkpoints, build_model, devices, the digits zoo entry."""

from __future__ import annotations

import sys
import textwrap
import warnings
from collections import OrderedDict

import pytest
import torch
from torch import nn

from robustreg import UnknownNameError, embed
from robustreg.data import load_data
from robustreg.models import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    Normalize,
    build_model,
    builtin_model_specs,
    cifar_marabou_large,
    digits_cnn,
    digits_cnn_cache,
    lenet5_mnist,
    load_checkpoint,
    parse_normalize,
    preact_resnet18,
    pretrained_digits_cnn,
    resnet4b,
    resnet4b_net,
    resnet18,
    resnet20,
    resnet110,
    resolve_device,
    wide_resnet,
    wrn_28_10,
    wrn_34_10,
)

REGISTERED = {
    "lenet5-mnist", "resnet4b", "cifar-marabou-large", "digits-cnn", "digits-cnn-pretrained", "resnet20",
    "resnet110", "preact-resnet18", "resnet18", "wrn-34-10", "wrn-28-10",
}

ARCHS = [
    (lenet5_mnist, (1, 28, 28)),
    (resnet4b, (3, 32, 32)),
    (cifar_marabou_large, (3, 32, 32)),
    (digits_cnn, (1, 8, 8)),
    (digits_cnn, (1, 28, 28)),
    (resnet20, (3, 32, 32)),
    (resnet110, (3, 32, 32)),
    (preact_resnet18, (3, 32, 32)),
    (resnet18, (3, 32, 32)),
    (wrn_34_10, (3, 32, 32)),
    (wrn_28_10, (3, 32, 32)),
]


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 2000) -> float:
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / len(x)


# --- architectures -----------------------------------------------------------------------------

@pytest.mark.parametrize("factory,shape", ARCHS, ids=[f"{f.__name__}-{s[-1]}" for f, s in ARCHS])
def test_architecture_logits_and_embedding(factory, shape):
    torch.manual_seed(0)
    model = factory().eval()
    x = torch.rand(2, *shape)
    with torch.no_grad():
        logits = model(x)
        emb = embed(model, x)
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    assert emb.logits.shape == (2, 10)
    assert emb.weight.shape[0] == 10 and emb.features.shape == (2, emb.weight.shape[1])
    assert isinstance(dict(model.named_modules())[emb.head_name], nn.Linear)


@pytest.mark.parametrize("factory", [resnet20, preact_resnet18, resnet18, resnet4b, cifar_marabou_large])
def test_cifar_num_classes(factory):
    with torch.no_grad():
        assert factory(num_classes=100).eval()(torch.rand(1, 3, 32, 32)).shape == (1, 100)


def test_wide_resnet_validates_and_sizes():
    assert wide_resnet(10, 1)(torch.rand(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(ValueError, match="depth must be"):
        wide_resnet(depth=30)
    with pytest.raises(ValueError, match="num_classes"):
        resnet20(num_classes=1)
    with pytest.raises(ValueError, match="shortcut"):
        resnet20(shortcut="C")


def test_resnet_shortcut_options_differ_in_parameters():
    a = sum(p.numel() for p in resnet20(shortcut="A").parameters())
    b = sum(p.numel() for p in resnet20(shortcut="B").parameters())
    assert 0.26e6 < a < 0.28e6  # He et al.: 0.27M
    assert b > a
    assert 1.7e6 < sum(p.numel() for p in resnet110().parameters()) < 1.75e6


def test_registered_models(registry):
    assert REGISTERED <= set(registry.entries("models"))
    assert set(builtin_model_specs()) == REGISTERED
    spec = registry.model("lenet5-mnist")
    assert spec.num_classes == 10 and spec.input_shape == (1, 28, 28) and spec.summary
    assert registry.model("resnet4b").input_shape == (3, 32, 32)


# --- Normalize ---------------------------------------------------------------------------------

def test_normalize_values_buffers_and_channels():
    norm = Normalize([0.5, 0.25, 0.0], [0.5, 0.25, 1.0])
    x = torch.rand(2, 3, 4, 4)
    expected = torch.stack([(x[:, 0] - 0.5) / 0.5, (x[:, 1] - 0.25) / 0.25, x[:, 2]], 1)
    torch.testing.assert_close(norm(x), expected)
    assert norm.state_dict() == {}  # not persistent: checkpoints of the inner net load
    assert {n for n, _ in norm.named_buffers()} == {"mean", "std"}
    one = Normalize([0.1307], [0.3081])
    torch.testing.assert_close(one(torch.ones(1, 1, 2, 2)), torch.full((1, 1, 2, 2), (1 - 0.1307) / 0.3081))
    assert Normalize([0.0] * 5, [1.0] * 5)(torch.rand(1, 5, 2, 2)).shape == (1, 5, 2, 2)
    with pytest.raises(ValueError, match="3 channels but the input has 1"):
        norm(torch.rand(1, 1, 4, 4))


@pytest.mark.parametrize(
    "mean,std,match",
    [([0.5, 0.5], [0.5], "one value per channel"), ([0.5], [0.0], "std must be"), ([], [], "must not be empty")],
)
def test_normalize_rejects(mean, std, match):
    with pytest.raises(ValueError, match=match):
        Normalize(mean, std)


def test_parse_normalize():
    assert parse_normalize("0.5,0.5,0.5:0.2,0.2,0.2") == ([0.5] * 3, [0.2] * 3)
    assert parse_normalize("cifar10") == (list(CIFAR10_MEAN), list(CIFAR10_STD))
    for bad, match in [("0.5,0.5", "mean:std"), ("a:b", "numbers"), ("0.5,0.5:0.2", "as many"),
                       ("0.5:-1", "> 0"), (":0.2", "empty"), ("1:2:3", "mean:std")]:
        with pytest.raises(ValueError, match=match):
            parse_normalize(bad)


# --- load_checkpoint ---------------------------------------------------------------------------

def _small() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))


@pytest.mark.parametrize("layout", ["plain", "state_dict", "model", "net", "list", "tuple", "module", "nested-module"])
def test_load_checkpoint_layouts(tmp_path, layout):
    torch.manual_seed(1)
    src = _small()
    sd = src.state_dict()
    obj = {
        "plain": sd,
        "state_dict": {"state_dict": sd, "epoch": 3, "test_acc": 0.5},
        "model": {"model": sd, "optimizer": {"lr": 0.1}},
        "net": {"net": sd},
        "list": [sd],
        "tuple": (sd,),
        "module": OrderedDict((f"module.{k}", v) for k, v in sd.items()),
        "nested-module": {"state_dict": OrderedDict((f"module.{k}", v) for k, v in sd.items())},
    }[layout]
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    dst = _small()
    assert load_checkpoint(dst, path) is dst
    for k, v in sd.items():
        torch.testing.assert_close(dst.state_dict()[k], v)


def test_load_checkpoint_errors(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(_small(), missing)
    path = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(4, 4), "fc.bias": torch.zeros(4)}, path)
    with pytest.raises(ValueError) as info:
        load_checkpoint(_small(), path)
    msg = str(info.value)
    assert "missing keys: 0.weight, 0.bias, 2.weight" in msg and "unexpected keys: fc.weight" in msg
    assert "other.pt" in msg
    bad_shape = tmp_path / "shape.pt"
    sd = _small().state_dict()
    sd["2.weight"] = torch.zeros(5, 72)
    sd["2.bias"] = torch.zeros(5)
    torch.save(sd, bad_shape)
    with pytest.raises(ValueError, match="shape mismatches: 2.weight"):
        load_checkpoint(_small(), bad_shape)
    with pytest.raises(ValueError, match="shape"):
        load_checkpoint(_small(), bad_shape, strict=False)
    junk = tmp_path / "junk.pt"
    torch.save({"epoch": 3, "acc": 0.5}, junk)
    with pytest.raises(ValueError, match="no state dict found"):
        load_checkpoint(_small(), junk)


def test_load_checkpoint_non_strict_tolerates_extra_keys(tmp_path):
    sd = _small().state_dict()
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "extra.pt"
    torch.save(sd, path)
    with pytest.raises(ValueError, match="unexpected keys: extra.weight"):
        load_checkpoint(_small(), path)
    load_checkpoint(_small(), path, strict=False)


def test_load_checkpoint_into_wrapper_inner_and_outer(tmp_path):
    torch.manual_seed(2)
    inner = resnet4b_net()
    path = tmp_path / "inner.pt"
    torch.save({"state_dict": inner.state_dict()}, path)
    wrapped = resnet4b()
    load_checkpoint(wrapped, path)
    torch.testing.assert_close(wrapped[1].linear2.weight, inner.linear2.weight)
    # a checkpoint of the whole wrapper loads too
    outer = tmp_path / "outer.pt"
    torch.save(wrapped.state_dict(), outer)
    again = build_model("resnet4b", weights=outer)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x), wrapped.eval()(x))


# --- build_model -------------------------------------------------------------------------------

def test_build_model_registered_name_eval_and_weights(tmp_path):
    torch.manual_seed(3)
    src = lenet5_mnist()
    path = tmp_path / "lenet.pt"
    torch.save(src.state_dict(), path)
    model = build_model("lenet5-mnist", weights=path)
    assert not model.training
    assert next(model.parameters()).device.type == "cpu"
    torch.testing.assert_close(model.conv1.weight, src.conv1.weight)
    assert build_model("resnet20", num_classes=100)(torch.rand(1, 3, 32, 32)).shape == (1, 100)


def test_build_model_normalize_wraps(tmp_path):
    model = build_model("resnet20", normalize=([0.5, 0.5, 0.5], [0.25, 0.25, 0.25]))
    assert isinstance(model, nn.Sequential) and isinstance(model[0], Normalize)
    assert isinstance(build_model("resnet20", normalize="cifar10")[0], Normalize)
    # weights of the bare net load into the wrapped model
    torch.manual_seed(4)
    bare = resnet20()
    path = tmp_path / "r20.pt"
    torch.save(bare.state_dict(), path)
    wrapped = build_model("resnet20", weights=path, normalize="0.5,0.5,0.5:0.25,0.25,0.25")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), bare.eval()((x - 0.5) / 0.25))


def test_build_model_from_file(tmp_path):
    src = tmp_path / "my_net.py"
    src.write_text(textwrap.dedent("""
        from torch import nn

        def make(width=4):
            return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, width), nn.ReLU(), nn.Linear(width, 5))

        not_callable = 3
    """))
    model = build_model(f"{src}:make", width=7)
    assert model(torch.rand(2, 3, 4, 4)).shape == (2, 5)
    assert model[1].out_features == 7 and not model.training
    with pytest.raises(ValueError, match="no callable 'missing'"):
        build_model(f"{src}:missing")
    with pytest.raises(ValueError, match="no callable 'not_callable'"):
        build_model(f"{src}:not_callable")
    with pytest.raises(FileNotFoundError, match="absent.py"):
        build_model(f"{tmp_path / 'absent.py'}:make")


def test_build_model_from_package_module(tmp_path, monkeypatch):
    pkg = tmp_path / "rr_test_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text("from torch import nn\n\ndef tiny():\n    return nn.Sequential(nn.Flatten(), "
                                 "nn.Linear(4, 3))\n\ndef not_a_model():\n    return 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        model = build_model("rr_test_pkg.nets:tiny")
        assert model(torch.rand(2, 1, 2, 2)).shape == (2, 3)
        with pytest.raises(TypeError, match="not an nn.Module"):
            build_model("rr_test_pkg.nets:not_a_model")
        with pytest.raises(ModuleNotFoundError):
            build_model("rr_test_pkg.absent:tiny")
    finally:
        for name in [m for m in sys.modules if m.startswith("rr_test_pkg")]:
            del sys.modules[name]
    assert isinstance(build_model("robustreg.models:digits_cnn"), nn.Module)


def test_build_model_unknown_name_lists_close_matches(registry):
    with pytest.raises(UnknownNameError, match="resnet20"):
        build_model("resnet-20")
    with pytest.raises(UnknownNameError, match="resnet18"):
        build_model("resnet19", registry=registry)
    for bad in ("", "   "):
        with pytest.raises(ValueError, match="non-empty"):
            build_model(bad)
    with pytest.raises(ValueError, match="FACTORY"):
        build_model("robustreg.models:")


# --- devices -----------------------------------------------------------------------------------

def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cuda:x", "tpu", "", "cuda:"):
        with pytest.raises(ValueError, match="auto"):
            resolve_device(bad)
    if torch.cuda.is_available():
        assert resolve_device("cuda:0") == torch.device("cuda:0")
        with pytest.raises(ValueError, match="visible"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


# --- the shared checkpoints --------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist_test(mnist_dir):
    return load_data(f"mnist:{mnist_dir}").tensors()


@pytest.mark.parametrize("fname,expected", [
    ("mnist_lenet5_advtrained.pt", 0.9864),
    ("mnist_lenet5_clntrained.pt", 0.9889),
])
def test_mnist_lenet5_checkpoints(models_dir, mnist_test, fname, expected):
    model = build_model("lenet5-mnist", weights=models_dir / fname)
    x, y = mnist_test
    assert len(x) == 10000
    assert _accuracy(model, x, y) == pytest.approx(expected, abs=0.0005)


@pytest.mark.parametrize("name,fname,expected,tol", [
    ("resnet4b", "resnet4b.pth", 0.768, 0.005),
    ("cifar-marabou-large", "cifar_marabou_large.pth", 0.753, 0.01),
])
def test_cifar_checkpoints_on_exact_images(models_dir, cifar_npz, name, fname, expected, tol):
    model = build_model(name, weights=models_dir / fname)
    x, y = load_data(f"npz:{cifar_npz}").tensors()
    assert len(x) == 932
    assert _accuracy(model, x, y) == pytest.approx(expected, abs=tol)


# --- the pretrained digits CNN -----------------------------------------------------------------

def test_pretrained_digits_cnn_trains_caches_and_reloads(tmp_path):
    cache = tmp_path / "cache"
    model = pretrained_digits_cnn(cache)
    path = digits_cnn_cache(cache)
    assert path.name.startswith("digits_cnn_seed0_torch") and torch.__version__ in path.name
    assert path.is_file() and not list(cache.glob("*.tmp"))
    assert not model.training
    x, y = load_data("digits").tensors()
    assert _accuracy(model, x, y) >= 0.95
    first = {k: v.clone() for k, v in model.state_dict().items()}

    # a second call loads the cached file: change it and see the change come back
    state = torch.load(path, weights_only=True)
    state["fc2.bias"] = state["fc2.bias"] + 1.0
    torch.save(state, path)
    cached = pretrained_digits_cnn(cache)
    torch.testing.assert_close(cached.fc2.bias, first["fc2.bias"] + 1.0)

    # an unreadable cache file is retrained (deterministically: the same weights) and replaced
    path.write_bytes(b"not a checkpoint")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = pretrained_digits_cnn(cache)
    assert any("retraining" in str(w.message) for w in caught)
    for k, v in again.state_dict().items():
        torch.testing.assert_close(v, first[k])
    torch.load(path, weights_only=True)


def test_pretrained_digits_cnn_uses_env_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTREG_CACHE", str(tmp_path))
    model = digits_cnn()
    torch.save(model.state_dict(), digits_cnn_cache(tmp_path, seed=7))  # pre-seeded cache: no training
    loaded = build_model("digits-cnn-pretrained", seed=7)
    torch.testing.assert_close(loaded.fc1.weight, model.fc1.weight)


def test_build_model_prefixed_registered_name():
    from robustreg import Registry, hookimpl

    class ZooPlugin:
        @hookimpl
        def robustreg_register_models(self, registrar):
            registrar.add_model("zoo:tiny", lambda: nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), summary="tiny")

    reg = Registry.create(entry_points=False, plugins=[("zoo", ZooPlugin())])
    assert build_model("zoo:tiny", registry=reg)(torch.rand(1, 1, 2, 2)).shape == (1, 2)
    with pytest.raises(ModuleNotFoundError, match="no registered model"):
        build_model("zoo:absent", registry=reg)
