"""Model sources: a ``PREFIX:REST`` model spec built by the source a plugin registered for PREFIX."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import robustreg
from robustreg import MissingPackageError, Registry
from robustreg.cli import main
from robustreg.models import build_model


class _Scaled(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.flatten(1))


class _ThirdParty:
    """A third party's source, registered exactly as the built-in ones are."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def build(self, rest: str, **params):
        self.calls.append((rest, params))
        return _Scaled(int(rest))

    @robustreg.hookimpl
    def robustreg_register_model_sources(self, registrar):
        registrar.add_model_source("toy", self.build, summary="Linear(4, REST)")
        registrar.add_model_source("needs", self.build, requires="robustreg-no-such-distribution",
                                   install="pip install robustreg-no-such-distribution")

    @robustreg.hookimpl
    def robustreg_register_models(self, registrar):
        registrar.add_model("toy:7", lambda: _Scaled(3), summary="a registered name wins over the toy source")


@pytest.fixture
def source():
    return _ThirdParty()


@pytest.fixture
def registry(source):
    return Registry.create(entry_points=False, plugins=[("third-party", source)], strict=True)


def test_a_third_party_source_builds_prefixed_specs(source, registry):
    model = build_model("toy:5", registry=registry, weights=None)
    assert isinstance(model, _Scaled) and model.head.out_features == 5
    assert source.calls == [("5", {})]
    assert not model.training  # build_model's contract holds for sources too
    assert registry.model_source("toy").plugin == "third-party"


def test_weights_load_generically_for_a_source_that_does_not_read_them(registry, tmp_path):
    trained = _Scaled(5)
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    model = build_model("toy:5", registry=registry, weights=str(tmp_path / "w.pt"))
    assert torch.equal(model.head.weight, trained.head.weight)


def test_a_registered_name_wins_over_a_source_prefix(source, registry):
    assert build_model("toy:7", registry=registry).head.out_features == 3
    assert source.calls == []


def test_a_missing_package_is_one_line_with_the_install_hint(registry):
    with pytest.raises(MissingPackageError, match=r"model source 'needs' needs robustreg-no-such-distribution, "
                                                   r"which is not installed: pip install robustreg-no-such"):
        build_model("needs:x", registry=registry)


def test_an_empty_name_after_the_prefix_is_refused(registry):
    with pytest.raises(ValueError, match=r"model spec 'toy:' names no model after 'toy:'"):
        build_model("toy:", registry=registry)


def test_unknown_prefix_falls_through_to_module_specs(registry):
    with pytest.raises(robustreg.UserError, match="no module 'nosuchsource' to import"):
        build_model("nosuchsource:abc", registry=registry)


def test_prefix_must_not_hold_a_colon():
    class Bad:
        @robustreg.hookimpl
        def robustreg_register_model_sources(self, registrar):
            registrar.add_model_source("a:b", lambda rest: None)

    with pytest.raises(robustreg.PluginLoadError, match=r"prefix must be a name without ':', got 'a:b'"):
        Registry.create(entry_points=False, plugins=[("bad", Bad())], strict=True)


def test_list_model_sources(registry, capsys):
    assert main(["list", "model_sources", "--json"], registry=registry) == 0
    rows = {row["name"]: row for row in __import__("json").loads(capsys.readouterr().out)}
    assert rows["toy"]["summary"] == "Linear(4, REST)"
    assert rows["needs"]["missing"] == ["robustreg-no-such-distribution"]
