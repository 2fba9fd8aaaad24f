"""The registry: entry points from fake distributions, duplicates, failures, blocking, lookup."""

from __future__ import annotations

import inspect
import textwrap
import types
from pathlib import Path

import pytest

import robustreg
from robustreg import hookspecs
from robustreg.registry import (
    DISABLE_ENV,
    DuplicateNameError,
    PluginLoadError,
    Registry,
    UnknownNameError,
)


class Noise(robustreg.Attack):
    """Adds nothing: the identity attack, for registry tests."""

    name = "fake-identity"
    info = robustreg.AttackInfo(norms=("linf", "l2"), kind="score", source="tests", toolkit="fake", paper="999")

    def perturb(self, model, x, y, generator, target=None):
        return x


def _module(name: str, attack_name: str = "fake-identity") -> types.ModuleType:
    mod = types.ModuleType(name)

    @robustreg.hookimpl
    def robustreg_register_attacks(registrar):
        registrar.add_attack(attack_name, Noise)

    mod.robustreg_register_attacks = robustreg_register_attacks
    return mod


def _fake_distribution(root: Path, dist: str, plugins: dict[str, str]) -> None:
    """Write an installed-looking distribution: a dist-info with entry points, and its modules."""
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = ["[robustreg]"] + [f"{ep} = {module}" for ep, module in plugins.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


GOOD = textwrap.dedent(
    '''
    import robustreg

    class Fake(robustreg.Attack):
        """A fake attack from a fake distribution."""
        name = "fake-{tag}"
        info = robustreg.AttackInfo(norms=("linf",), toolkit="fake")
        def perturb(self, model, x, y, generator, target=None):
            return x

    @robustreg.hookimpl
    def robustreg_register_attacks(registrar):
        registrar.add_attack("fake-{tag}", Fake)
    '''
)


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    return tmp_path


def test_entry_point_plugin_from_a_distribution_is_loaded(fake_site):
    (fake_site / "fake_good.py").write_text(GOOD.format(tag="good"))
    _fake_distribution(fake_site, "robustreg-fakegood", {"fakegood": "fake_good"})
    reg = Registry.create()
    spec = reg.attack("fake-good")
    assert spec.plugin == "fakegood"
    assert ("fakegood", "robustreg-fakegood 1.0") in reg.plugins()


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_load(fake_site):
    (fake_site / "fake_good.py").write_text(GOOD.format(tag="good"))
    (fake_site / "fake_broken.py").write_text("raise ImportError('needs the frobnicate package')\n")
    _fake_distribution(fake_site, "robustreg-fakes", {"fakegood": "fake_good", "fakebroken": "fake_broken"})
    reg = Registry.create()
    assert reg.attack("fake-good").plugin == "fakegood"
    errors = dict(reg.load_errors)
    assert "fakebroken" in errors and "frobnicate" in errors["fakebroken"]
    with pytest.raises(PluginLoadError, match="fakebroken.*frobnicate"):
        Registry.create(strict=True)


def test_disable_env_blocks_a_plugin(fake_site, monkeypatch):
    (fake_site / "fake_good.py").write_text(GOOD.format(tag="good"))
    _fake_distribution(fake_site, "robustreg-fakegood", {"fakegood": "fake_good"})
    monkeypatch.setenv(DISABLE_ENV, "fakegood, something-else")
    reg = Registry.create()
    with pytest.raises(UnknownNameError):
        reg.attack("fake-good")
    assert "fakegood" not in dict(reg.plugins())


def test_duplicate_name_names_both_plugins():
    with pytest.raises(DuplicateNameError, match="first-plugin.*second-plugin|second-plugin.*first-plugin"):
        Registry.create(entry_points=False, plugins=[("first-plugin", _module("a")), ("second-plugin", _module("b"))])


def test_unknown_name_lists_close_matches():
    reg = Registry.create(entry_points=False, plugins=[("p", _module("a"))])
    with pytest.raises(UnknownNameError, match="did you mean 'fake-identity'"):
        reg.attack("fake-identty")
    with pytest.raises(UnknownNameError, match="robustreg list attacks"):
        reg.attack("nothing-like-it-at-all")


def test_invalid_names_are_refused():
    plugins = [("p", _module("a", attack_name="Bad Name"))]
    reg = Registry.create(entry_points=False, plugins=plugins)
    assert "lower-case" in dict(reg.load_errors)["p"]
    with pytest.raises(PluginLoadError, match="lower-case"):
        Registry.create(entry_points=False, plugins=plugins, strict=True)


def test_a_registration_hook_that_raises_is_reported():
    mod = types.ModuleType("raiser")

    @robustreg.hookimpl
    def robustreg_register_attacks(registrar):
        raise RuntimeError("boom")

    mod.robustreg_register_attacks = robustreg_register_attacks
    reg = Registry.create(entry_points=False, plugins=[("raiser", mod)])
    assert ("raiser", "RuntimeError: boom") in reg.load_errors
    with pytest.raises(PluginLoadError, match="raiser"):
        Registry.create(entry_points=False, plugins=[("raiser", mod)], strict=True)


def test_list_filters():
    reg = Registry.create(entry_points=False, plugins=[("p", _module("a"))])
    assert [s.name for s in reg.list_attacks(norm="l2")] == ["fake-identity"]
    assert reg.list_attacks(norm="l1") == []
    assert [s.name for s in reg.list_attacks(toolkit="fake", paper="999", kind="score")] == ["fake-identity"]
    assert reg.list_attacks("other-*") == []
    assert reg.list("attacks", "fake-*") == reg.list_attacks("fake-*")
    with pytest.raises(ValueError, match="kind must be one of"):
        reg.entries("widgets")


def test_registries_are_independent():
    a = Registry.create(entry_points=False, plugins=[("p", _module("a"))])
    b = Registry.create(entry_points=False)
    assert "fake-identity" in a.entries("attacks")
    assert "fake-identity" not in b.entries("attacks")


def test_every_hookspec_is_documented_and_implemented_somewhere(registry):
    """datasette-style meta-test: each hook has a docstring and at least one built-in implementation."""
    specs = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("robustreg_")]
    assert len(specs) >= 5
    for name in specs:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert "registrar" in doc and "Called once" in doc, f"hook {name} is not documented"
        impls = getattr(registry.plugin_manager.hook, name).get_hookimpls()
        assert impls, f"no built-in plugin implements {name}"


def test_builtin_plugins_load_without_errors(registry):
    assert registry.load_errors == []


def test_example_third_party_plugin_is_listed(registry):
    pytest.importorskip("robustreg_example", reason="install tests/example_plugin (CI does) to run this test")
    spec = registry.attack("example-sign-noise")
    assert spec.plugin == "example"
    assert ("example", "robustreg-example 0.1.0") in registry.plugins()
