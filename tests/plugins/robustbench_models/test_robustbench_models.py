"""robustbench:NAME — the real robustbench 1.1.1 architectures, checkpoints in each of the zoo's layouts
(state dicts made from random weights), and logits equal to robustbench's own ``load_model`` on the same file."""

from __future__ import annotations

import base64
import hashlib
import importlib
import sys
import types
from collections import OrderedDict
from importlib import metadata

import pytest
import torch

from robustreg import Registry, UserError
from robustreg.models import build_model
from robustreg_plugins import robustbench_models
from robustreg_plugins.robustbench_models.package import _verified_root, real_robustbench

try:
    metadata.distribution("robustbench")
except metadata.PackageNotFoundError:  # an optional extra: skipped only where it is not installed
    pytest.skip("robustbench is not installed (pip install 'robustreg[robustbench]')", allow_module_level=True)


def _registry() -> Registry:
    installed = {ep.name for ep in metadata.entry_points(group="robustreg")}
    extra = [] if "robustbench_models" in installed else [("robustbench_models", robustbench_models)]
    return Registry.create(plugins=extra)


def _random_state(model: torch.nn.Module, seed: int) -> OrderedDict:
    """Every parameter and BatchNorm statistic drawn at random (not the init's), the normalisation kept."""
    gen = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for key, value in model.state_dict().items():
        if not value.is_floating_point() or key.rsplit(".", 1)[-1] in ("mu", "sigma"):
            state[key] = value.clone()
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(value.shape, generator=gen)
        else:
            state[key] = 0.1 * torch.randn(value.shape, generator=gen)
    return state


# (entry, threat model, how the checkpoint stores it): the layouts robustbench's load_model reads
LAYOUTS = [
    ("Standard", "Linf", "plain"),
    ("Carmon2019Unlabeled", "Linf", "state_dict+module"),  # the WideResNet with sub_block1
    ("Wong2020Fast", "Linf", "no-mu-sigma"),
    ("Rice2020Overfitting", "L2", "no-mu-sigma+module"),
    ("Wong2020Fast", "Linf", "module"),
]


def _checkpoint(state: OrderedDict, layout: str) -> object:
    if "no-mu-sigma" in layout:
        state = OrderedDict((k, v) for k, v in state.items() if k not in ("mu", "sigma"))
    if "module" in layout:
        state = OrderedDict(("module." + k, v) for k, v in state.items())
    return {"state_dict": state, "epoch": 3} if "state_dict" in layout else state


@pytest.mark.parametrize("name,threat,layout", LAYOUTS, ids=[f"{n}-{lay}" for n, _, lay in LAYOUTS])
def test_logits_equal_robustbench_load_model(name, threat, layout, tmp_path):
    architecture = robustbench_models.build(name, threat_model=threat)
    if name == "Carmon2019Unlabeled":
        assert any(k.startswith("sub_block1.") for k in architecture.state_dict())
    state = _random_state(architecture, seed=len(name))
    folder = tmp_path / "cifar10" / threat
    folder.mkdir(parents=True)
    torch.save(_checkpoint(state, layout), folder / f"{name}.pt")  # where robustbench looks: it downloads nothing

    ours = build_model(f"robustbench:{name}", weights=str(folder / f"{name}.pt"), registry=_registry(),
                       threat_model=threat)
    with real_robustbench():
        theirs = importlib.import_module("robustbench.utils").load_model(
            name, model_dir=str(tmp_path), dataset="cifar10", threat_model=threat)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got, expected, untrained = ours(x), theirs(x), architecture.eval()(x)
    # the same class, weights, ops and input in one process: equal up to float32 rounding of a reordered sum
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, untrained, atol=1e-3)  # the checkpoint's weights, not the random init's


def test_another_robustbench_already_imported_stays_and_is_not_used(monkeypatch):
    # what a process that imported torchattacks' bundled copy first holds: a 'robustbench' without the zoo
    other = types.ModuleType("robustbench")
    other.__path__ = []
    monkeypatch.setitem(sys.modules, "robustbench", other)
    model = robustbench_models.build("Wong2020Fast")
    assert type(model).__module__ == "robustbench.model_zoo.cifar10"
    assert sys.modules["robustbench"] is other
    assert not [k for k in sys.modules if k.startswith("robustbench.")]


def test_unknown_entry_and_bad_table_are_one_line():
    with pytest.raises(UserError, match=r"no entry 'Wong2020Fat' for cifar10 / Linf; did you mean Wong2020Fast"):
        robustbench_models.build("Wong2020Fat")
    with pytest.raises(UserError, match=r"threat_model must be one of Linf, L2, .*got 'linf2'"):
        robustbench_models.build("Wong2020Fast", threat_model="linf2")


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    state = robustbench_models.build("Wong2020Fast").state_dict()
    del state["linear.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(UserError, match=r"does not fit the entry's architecture; missing: linear.weight \(1\); "
                                        r"unexpected: extra.weight \(1\)"):
        robustbench_models.build("Wong2020Fast", weights=str(tmp_path / "w.pt"))


def test_files_overwritten_by_torchattacks_copy_are_refused(tmp_path):
    # a distribution whose RECORD does not match its file: what torchattacks' older robustbench/ leaves
    package = tmp_path / "robustbench" / "model_zoo"
    package.mkdir(parents=True)
    (package / "cifar10.py").write_text("# torchattacks' older copy\n")
    digest = base64.urlsafe_b64encode(hashlib.sha256(b"robustbench 1.1.1's file\n").digest()).rstrip(b"=").decode()
    info = tmp_path / "robustbench-1.1.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: robustbench\nVersion: 1.1.1\n")
    (info / "RECORD").write_text(f"robustbench/model_zoo/cifar10.py,sha256={digest},26\n")
    with pytest.raises(UserError, match=r"1 of robustbench 1.1.1's files .* are not the ones it installed "
                                        r"\(e.g. robustbench/model_zoo/cifar10.py; torchattacks .*pip install "
                                        r"--force-reinstall --no-deps robustbench==1.1.1"):
        _verified_root(metadata.PathDistribution(info))
