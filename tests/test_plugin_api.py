"""The plugin API version and its deprecation path, on a plugin written against the old contract.

``tests/example_plugin_legacy`` registers its attack and defense with ``defaults=`` and no declared
``params`` (plugin API 1.0).  Each test installs it as a temporary distribution (a dist-info with its
entry point in ``tmp_path``, the module's folder on ``sys.path``), so no install step is needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import robustreg
from robustreg import (
    PLUGIN_API,
    Param,
    ParamSet,
    ParamTypeError,
    PluginContractError,
    Registry,
    RobustregDeprecationWarning,
    ThreatModel,
    UnknownParamError,
)
from robustreg.cli import main
from robustreg.plugin_api import UNDECLARED_DEFAULTS, api_version
from robustreg.registry import DISABLE_ENV, KINDS, PluginLoadError, Registrar

LEGACY_DIR = Path(__file__).resolve().parent / "example_plugin_legacy"


def _distribution(root: Path, dist: str, plugins: dict[str, str]) -> None:
    """An installed-looking distribution: a dist-info with the entry points (as pip writes it)."""
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = ["[robustreg]"] + [f"{ep} = {module}" for ep, module in plugins.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def legacy_site(tmp_path, monkeypatch):
    """The legacy example plugin installed as ``robustreg-example-legacy``, entry point ``legacy``."""
    monkeypatch.syspath_prepend(str(LEGACY_DIR))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    _distribution(tmp_path, "robustreg-example-legacy", {"legacy": "robustreg_example_legacy"})
    return tmp_path


@pytest.fixture
def legacy():
    """The legacy plugin's module (its folder on sys.path only while imported)."""
    sys.path.insert(0, str(LEGACY_DIR))
    try:
        import robustreg_example_legacy
    finally:
        sys.path.remove(str(LEGACY_DIR))
    return robustreg_example_legacy


def _deprecations(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, RobustregDeprecationWarning)]


# --- the old contract still loads, with one warning per entry ---------------------------------------
def test_the_legacy_plugin_loads_with_one_warning_per_entry(legacy_site):
    with pytest.warns(RobustregDeprecationWarning) as record:
        reg = Registry.create()
    messages = _deprecations(record)
    assert len(messages) == 2, messages
    attack = next(m for m in messages if "attack 'legacy-bim'" in m)
    defense = next(m for m in messages if "defense 'legacy-noise'" in m)
    assert attack.startswith("plugin 'legacy', attack 'legacy-bim': defaults={'steps': 10, 'step_size': 0.01} "
                             "without declared params is deprecated since plugin API 1.1 and stops working in 1.2")
    assert ("class SignSteps: params = robustreg.ParamSet([robustreg.Param('steps', 'int', 10, 'what it does'), "
            "robustreg.Param('step_size', 'float', 0.01, 'what it does')])") in attack
    assert "class NoisyTraining: params = robustreg.ParamSet([robustreg.Param('sigma', 'float', 0.1" in defense
    # attributed to the plugin's own registering line, as pytest's deprecations are
    plugin_file = str(LEGACY_DIR / "robustreg_example_legacy" / "__init__.py")
    assert {w.filename for w in record if issubclass(w.category, RobustregDeprecationWarning)} == {plugin_file}
    # nothing of the plugin went missing: attack, defense, model, command; and it is listed as loaded
    assert reg.load_errors == []
    assert reg.attack("legacy-bim").plugin == "legacy" and reg.defense("legacy-noise").plugin == "legacy"
    assert "legacy-linear" in reg.entries("models") and "legacy-hello" in reg.entries("commands")
    state = next(p for p in reg.plugin_states() if p.name == "legacy")
    assert (state.source, state.status) == ("robustreg-example-legacy 1.0", "ok")


def test_undeclared_defaults_become_parameters_typed_by_their_values(legacy_site):
    with pytest.warns(RobustregDeprecationWarning):
        reg = Registry.create()
    spec = reg.attack("legacy-bim")
    declared = [(p.name, p.type, p.default) for p in spec.params]
    assert declared[:2] == [("steps", "int", 10), ("step_size", "float", 0.01)]
    assert {"seed", "eval_mode", "eot"} <= set(spec.params.names())  # the base's own stay declared
    threat = ThreatModel("linf", 0.1)
    assert reg.build_attack("legacy-bim", threat).steps == 10  # the registered default reaches __init__
    attack = reg.build_attack("legacy-bim", threat, steps=3, step_size=0.05, seed=0)
    assert (attack.steps, attack.step_size) == (3, 0.05)
    with pytest.raises(ParamTypeError, match=r"legacy-bim: steps must be an int, got 2.5"):
        reg.build_attack("legacy-bim", threat, steps=2.5)
    with pytest.raises(UnknownParamError, match="unknown parameter 'stepz'; did you mean steps"):
        reg.build_attack("legacy-bim", threat, stepz=3)
    assert spec.params.parse("legacy-bim", {"step_size": "1/255"}) == {"step_size": pytest.approx(1 / 255)}
    assert reg.defense("legacy-noise").build(sigma=0.2).sigma == 0.2


def test_the_legacy_attack_still_attacks(legacy_site):
    """Built by name it runs under the 1.1 base: in the ball and the box, and it raises the model's loss."""
    with pytest.warns(RobustregDeprecationWarning):
        reg = Registry.create()
    torch.manual_seed(0)
    model = reg.model("legacy-linear").build()
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(32) % 10
    x_adv = reg.build_attack("legacy-bim", ThreatModel("linf", 0.1), steps=5, step_size=0.03, seed=0)(model, x, y)
    # 1e-6: float32 rounding of x + steps (|x| <= 1, eps 0.1)
    assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6 and 0 <= float(x_adv.min()) and float(x_adv.max()) <= 1
    with torch.no_grad():
        clean, adv = (float(nn.functional.cross_entropy(model(v), y)) for v in (x, x_adv))
    assert adv > clean  # a convex loss and ascent steps: the loss grows by about eps * |grad|_1


def test_the_printed_fix_loads_without_a_warning(legacy):
    """The declaration the warning asks for, written out: the same entry with no deprecation."""

    class Migrated(robustreg.Attack):  # no __init__: declared parameters become attributes
        info = legacy.SignSteps.info
        params = ParamSet([Param("steps", "int", 10, "iterations", low=0),
                           Param("step_size", "float", 0.01, "step per iteration", low=0)])
        perturb = legacy.SignSteps.perturb

    class Plugin:
        @robustreg.hookimpl
        def robustreg_register_attacks(self, registrar):
            registrar.add_attack("migrated-bim", Migrated)

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        reg = Registry.create(entry_points=False, plugins=[("migrated", Plugin())])
    assert _deprecations(record) == [] and reg.load_errors == []
    assert reg.build_attack("migrated-bim", ThreatModel("linf", 0.1), steps=4).steps == 4


# --- from 1.2 on the old form fails, naming the entry and the fix -----------------------------------
def test_the_old_form_fails_once_the_api_drops_it(legacy):
    assert not UNDECLARED_DEFAULTS.expired(PLUGIN_API) and UNDECLARED_DEFAULTS.expired("1.2")
    assert api_version(PLUGIN_API) == (1, 1)
    registrar = Registrar("legacy", {kind: {} for kind in KINDS}, api="1.2")
    with pytest.raises(PluginContractError) as info:
        registrar.add_attack("legacy-bim", legacy.SignSteps, defaults={"steps": 10, "step_size": 0.01})
    message = str(info.value)
    assert message.startswith("plugin 'legacy', attack 'legacy-bim': defaults={'steps': 10, 'step_size': 0.01} "
                              "without declared params is no longer accepted since plugin API 1.2")
    assert "declare them: class SignSteps: params = robustreg.ParamSet([robustreg.Param('steps', 'int', 10" in message
    with pytest.raises(ValueError, match="plugin API version must be MAJOR.MINOR, got '1'"):
        api_version("1")


def _plugin(register) -> object:
    class Plugin:
        @robustreg.hookimpl
        def robustreg_register_attacks(self, registrar):
            register(registrar)

    return Plugin()


def test_what_cannot_be_deprecated_fails_naming_the_entry_and_the_fix(legacy):
    def typo(registrar):  # an entry that declares parameters: an undeclared default is a mistake
        class Declared(legacy.SignSteps):
            params = ParamSet([Param("steps", "int", 10, "iterations")])

        registrar.add_attack("typo-bim", Declared, defaults={"stepz": 3})

    def untyped(registrar):  # None has no type to declare
        registrar.add_attack("none-bim", legacy.SignSteps, defaults={"steps": 10, "step_size": None})

    reg = Registry.create(entry_points=False, plugins=[("typo", _plugin(typo)), ("untyped", _plugin(untyped))])
    errors = dict(reg.load_errors)
    assert ("plugin 'typo', attack 'typo-bim': unknown parameter 'stepz'; did you mean steps? (allowed: steps, "
            "seed, eval_mode, eot); declare 'stepz' in Declared.params or drop it from defaults=") in errors["typo"]
    assert ("plugin 'untyped', attack 'none-bim': defaults={'step_size': None} cannot be declared from its value"
            in errors["untyped"])
    assert "Param('step_size', TYPE, None, 'what it does', optional=True)" in errors["untyped"]
    with pytest.raises(PluginLoadError, match="plugin 'typo', attack 'typo-bim': unknown parameter 'stepz'"):
        Registry.create(entry_points=False, plugins=[("typo", _plugin(typo))], strict=True)


def test_a_factory_function_without_a_declaration_is_deprecated_too(legacy):
    def make(threat, steps=10, **kwargs):
        return legacy.SignSteps(threat, steps=steps, **kwargs)

    def register(registrar):
        registrar.add_attack("fn-bim", make, info=legacy.SignSteps.info, defaults={"steps": 2})

    with pytest.warns(RobustregDeprecationWarning, match=r"plugin 'fn', attack 'fn-bim': defaults=\{'steps': 2\} "
                      r"without declared params .* registrar.add_attack\('fn-bim', \.\.\., params=robustreg.ParamSet"
                      r"\(\[robustreg.Param\('steps', 'int', 2, 'what it does'\)\]\) \+ robustreg.Attack.declaration"):
        reg = Registry.create(entry_points=False, plugins=[("fn", _plugin(register))])
    assert reg.build_attack("fn-bim", ThreatModel("linf", 0.1), seed=1).steps == 2


# --- what the user sees -----------------------------------------------------------------------------
class _Broken:
    @robustreg.hookimpl
    def robustreg_register_attacks(self, registrar):
        raise ImportError("needs the frobnicate package")


def test_list_plugins_shows_the_api_and_marks_a_failed_plugin(legacy, capsys):
    with pytest.warns(RobustregDeprecationWarning):
        reg = Registry.create(entry_points=False, plugins=[("legacy", legacy), ("mine", _Broken())])
    assert main(["list", "plugins"], registry=reg) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"plugin API {PLUGIN_API} (robustreg {robustreg.__version__}")
    rows = {line.split()[0]: line for line in out.splitlines()[3:]}
    assert rows["legacy"].rstrip().endswith(" ok")
    assert rows["mine"].rstrip().endswith("failed: ImportError: needs the frobnicate package")
    assert main(["list", "plugins", "--json"], registry=reg) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["mine"]["status"] == "failed" and "frobnicate" in listed["mine"]["error"]
    assert listed["legacy"]["status"] == "ok" and listed["legacy"]["error"] is None


def test_compare_refuses_a_toolkit_that_is_not_available(legacy, capsys):
    with pytest.warns(RobustregDeprecationWarning):
        reg = Registry.create(entry_points=False, plugins=[("legacy", legacy), ("mine", _Broken())])
    argv = ["compare", "--model", "legacy-linear", "--data", "digits", "--attack", "bim", "--eps", "0.1",
            "--toolkits", "legacy,mine"]
    assert main(argv, registry=reg) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert err[-1].startswith("robustreg: error: --toolkits: 'mine' not available: no registered attack belongs to it "
                              "(registered toolkits: legacy); plugin(s) that failed to load: mine")
    assert captured.out == ""


def test_the_command_line_shows_each_deprecation_once(legacy_site):
    """A real ``robustreg`` process: Python hides DeprecationWarnings by default; robustreg shows these."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = os.pathsep.join([str(legacy_site), str(LEGACY_DIR), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "robustreg.cli", "legacy-hello", "--who", "tests"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello tests from a plugin API 1.0 plugin\n"
    assert proc.stderr.count("plugin 'legacy', attack 'legacy-bim': defaults=") == 1, proc.stderr
    assert proc.stderr.count("plugin 'legacy', defense 'legacy-noise': defaults=") == 1, proc.stderr
    assert "failed to load" not in proc.stderr


def test_the_legacy_entries_pass_the_conformance_kit(legacy):
    """Loaded through the deprecation path, they meet the 1.1 contract the built-ins are held to."""
    from robustreg.testing import check_attack, check_defense

    with pytest.warns(RobustregDeprecationWarning):
        reg = Registry.create(entry_points=False, plugins=[("legacy", legacy)])
    check_attack(reg.attack("legacy-bim"))
    check_defense(reg.defense("legacy-noise"))
