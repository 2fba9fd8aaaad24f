"""The registry: entry points from fake distributions, duplicates, failures, blocking, lookup."""

from __future__ import annotations

import inspect
import textwrap
import types
from pathlib import Path

import pytest

import robustreg
from robustreg.registry import (
    DISABLE_ENV,
    DuplicateNameError,
    PluginLoadError,
    Registry,
    UnknownNameError,
    hookspecs,
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


def test_a_misspelt_hook_is_reported_by_plugin_name_and_the_rest_load(fake_site):
    (fake_site / "fake_good.py").write_text(GOOD.format(tag="good"))
    (fake_site / "fake_typo.py").write_text(GOOD.format(tag="typo").replace(
        "def robustreg_register_attacks", "def robustreg_register_attack"))
    _fake_distribution(fake_site, "robustreg-fakes", {"fakegood": "fake_good", "faketypo": "fake_typo"})
    reg = Registry.create()
    assert reg.attack("fake-good").plugin == "fakegood"
    errors = dict(reg.load_errors)
    assert "did you mean robustreg_register_attacks" in errors["faketypo"]
    with pytest.raises(UnknownNameError):
        reg.attack("fake-typo")
    with pytest.raises(PluginLoadError, match="faketypo.*robustreg_register_attack"):
        Registry.create(strict=True)


def test_a_hook_without_the_marker_warns_naming_the_plugin(fake_site):
    (fake_site / "fake_bare.py").write_text(GOOD.format(tag="bare").replace("@robustreg.hookimpl\n", ""))
    _fake_distribution(fake_site, "robustreg-fakebare", {"fakebare": "fake_bare"})
    with pytest.warns(UserWarning, match="plugin 'fakebare': robustreg_register_attacks has no @robustreg.hookimpl"):
        reg = Registry.create()
    with pytest.raises(UnknownNameError):
        reg.attack("fake-bare")


def test_unknown_disabled_names_warn_with_the_plugins_that_exist(monkeypatch):
    monkeypatch.setenv(DISABLE_ENV, "scale-invariant")
    with pytest.warns(UserWarning, match=r"names no installed plugin: scale-invariant \(plugins: .*scale_invariant"):
        Registry.create()


def test_a_plugin_failing_mid_registration_leaves_nothing_behind():
    mod = types.ModuleType("half")

    @robustreg.hookimpl
    def robustreg_register_attacks(registrar):
        registrar.add_attack("half-first", Noise)
        raise RuntimeError("second entry broke")

    @robustreg.hookimpl
    def robustreg_register_defenses(registrar):
        registrar.add_defense("half-defense", robustreg.Defense)

    mod.robustreg_register_attacks = robustreg_register_attacks
    mod.robustreg_register_defenses = robustreg_register_defenses
    reg = Registry.create(entry_points=False, plugins=[("half", mod)])
    assert dict(reg.load_errors)["half"] == "RuntimeError: second entry broke"
    assert "half-first" not in reg.entries("attacks") and "half-defense" not in reg.entries("defenses")


def test_duplicate_advice_names_the_third_party_plugin():
    reg = Registry.create()
    builtin = reg.attack("pgd").plugin
    with pytest.raises(DuplicateNameError, match=f"{DISABLE_ENV}=thirdparty") as info:
        Registry.create(plugins=[("thirdparty", _module("x", attack_name="pgd"))])
    assert builtin in str(info.value)


def test_a_plugin_registering_a_name_twice_gets_its_own_message():
    mod = types.ModuleType("twice")

    @robustreg.hookimpl
    def robustreg_register_attacks(registrar):
        registrar.add_attack("fake-twice", Noise)
        registrar.add_attack("fake-twice", Noise)

    mod.robustreg_register_attacks = robustreg_register_attacks
    reg = Registry.create(entry_points=False, plugins=[("twice", mod)])
    assert "plugin 'twice' registers attack 'fake-twice' twice" in dict(reg.load_errors)["twice"]


def test_factories_of_the_wrong_type_are_refused():
    mod = types.ModuleType("wrong")

    @robustreg.hookimpl
    def robustreg_register_defenses(registrar):
        registrar.add_defense("wrong-class", object)

    mod.robustreg_register_defenses = robustreg_register_defenses
    reg = Registry.create(entry_points=False, plugins=[("wrong", mod)])
    assert "is not a subclass of robustreg.Defense" in dict(reg.load_errors)["wrong"]

    fn = types.ModuleType("fn")

    @robustreg.hookimpl
    def robustreg_register_attacks(registrar):
        registrar.add_attack("fake-fn", lambda threat, **kw: object(), info=Noise.info,
                             params=robustreg.ParamSet())

    fn.robustreg_register_attacks = robustreg_register_attacks
    reg = Registry.create(entry_points=False, plugins=[("fn", fn)])
    with pytest.raises(TypeError, match="factory of attack 'fake-fn' .*returned object, not a robustreg.Attack"):
        reg.build_attack("fake-fn", robustreg.ThreatModel("linf", 0.1))


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
