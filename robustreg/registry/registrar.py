"""What a plugin's register hooks are handed: the :class:`Registrar`, and the registry's errors.

Each plugin gets its own Registrar; it collects that plugin's entries (validated: names, factory
types, declared parameters) into a staging area that the :class:`robustreg.Registry` merges only
when all of the plugin's hooks succeeded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ..attack import Attack, AttackInfo
from ..declare import declared
from ..defense import Defense, DefenseInfo
from ..params import ParamSet
from ..plugin_api import PLUGIN_API
from .specs import (
    AnalysisSpec,
    AttackSpec,
    CheckSpec,
    CommandSpec,
    DatasetSpec,
    DefenseSpec,
    ModelSourceSpec,
    ModelSpec,
    RemedySpec,
    summary_of,
    validated,
)

__all__ = ["DuplicateNameError", "PluginLoadError", "Registrar", "RegistryError", "UnknownNameError"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*(:[a-z0-9][a-z0-9_.-]*)?$")


def singular(kind: str) -> str:
    """``"attacks"`` -> ``"attack"``, ``"analyses"`` -> ``"analysis"`` (for messages)."""
    return kind[:-2] + "is" if kind.endswith("ses") else kind[:-1]


class RegistryError(Exception):
    """Base class of registry errors."""


class UnknownNameError(RegistryError, LookupError):
    """No entry of that name; the message lists close matches."""


class DuplicateNameError(RegistryError):
    """Two plugins registered the same name; the message names both."""


class PluginLoadError(RegistryError):
    """A plugin failed to import or to register (raised only in strict mode)."""


class Registrar:
    """Passed to every register hook; collects one plugin's entries.

    Built-in plugins use it exactly as a third party would::

        @robustreg.hookimpl
        def robustreg_register_attacks(registrar):
            registrar.add_attack("my-attack", MyAttack)
    """

    def __init__(self, plugin: str, sink: dict[str, dict[str, Any]], *,
                 deferred: list[Callable[[Registrar], None]] | None = None,
                 lookup: Callable[[str, str], Any] | None = None, api: str = PLUGIN_API) -> None:
        self.plugin = plugin
        #: the plugin API version whose rules this registrar applies (:mod:`robustreg.plugin_api`)
        self.api = api
        self._sink = sink
        self._deferred = deferred if deferred is not None else []
        self._lookup = lookup

    def defer(self, callback: Callable[[Registrar], None]) -> None:
        """Run ``callback(registrar)`` once every plugin has registered everything, with a registrar whose
        :meth:`defense` sees all their entries (to compose onto another plugin's defense); what the
        callback adds is this plugin's.  A callback that raises leaves none of its entries behind."""
        self._deferred.append(callback)

    def defense(self, name: str) -> DefenseSpec:
        """The registered defense ``name``, of any plugin; only inside a :meth:`defer` callback
        (UnknownNameError when no plugin registered it)."""
        if self._lookup is None:
            raise RuntimeError(f"plugin {self.plugin!r}: registrar.defense() looks entries up only inside a "
                               "registrar.defer(callback), once every plugin has registered")
        spec: DefenseSpec = self._lookup("defenses", name)
        return spec

    def _add(self, kind: str, spec: Any) -> None:
        if not isinstance(spec.name, str) or not _NAME.match(spec.name):
            raise ValueError(
                f"{singular(kind)} name must be lower-case letters, digits, '-', '_' or '.', optionally "
                f"prefixed 'toolkit:', got {spec.name!r} (plugin {self.plugin!r})"
            )
        if spec.name in self._sink[kind]:
            raise DuplicateNameError(f"plugin {self.plugin!r} registers {singular(kind)} {spec.name!r} twice")
        self._sink[kind][spec.name] = spec

    def _check_class(self, kind: str, name: str, factory: Any, base: type) -> None:
        if isinstance(factory, type) and not issubclass(factory, base):
            raise TypeError(f"{kind} {name!r} of plugin {self.plugin!r}: factory {factory.__name__} is not a "
                            f"subclass of robustreg.{base.__name__}")
        if not callable(factory):
            raise TypeError(f"{kind} {name!r} of plugin {self.plugin!r}: factory must be callable, got {factory!r}")

    def add_attack(
        self,
        name: str,
        factory: Callable[..., Attack],
        *,
        info: AttackInfo | None = None,
        summary: str | None = None,
        defaults: Mapping[str, Any] | None = None,
        same_as: Mapping[str, Mapping[str, Any]] | None = None,
        params: ParamSet | None = None,
        demo: bool = False,
    ) -> None:
        """Register ``factory(threat, **params) -> Attack``; ``info`` defaults to ``factory.info``.

        ``params``: the declaration; defaults to ``factory.declaration()`` (an Attack subclass's
        ``params`` plus ``seed``, ``eval_mode`` and ``eot``).  ``defaults``: other default values of
        declared parameters, applied whenever the attack is built by name (and shown by ``robustreg
        list``); a caller's parameters override them.  (Deprecated since plugin API 1.1: ``defaults``
        for an entry that declares no parameters declare them, typed by their values, with a warning;
        see :mod:`robustreg.declare`.)  ``demo``: run by ``robustreg evaluate`` when no attacks are given.
        ``same_as``: the common names
        this entry implements under a name of its own, each with the parameters that select it,
        for ``robustreg compare`` -- e.g. a toolkit's generic APGD registered as
        ``same_as={"apgd-ce": {"loss": "ce"}, "apgd-dlr": {"loss": "dlr"}}``.
        """
        self._check_class("attack", name, factory, Attack)
        info = info if info is not None else getattr(factory, "info", None)
        if not isinstance(info, AttackInfo):
            raise TypeError(f"attack {name!r} of plugin {self.plugin!r} needs an AttackInfo (info=...)")
        same_as = {key: dict(value) for key, value in (same_as or {}).items()}
        bad = [key for key in same_as if not isinstance(key, str) or not _NAME.match(key)]
        if bad:
            raise ValueError(f"same_as of attack {name!r} (plugin {self.plugin!r}) must map attack names to "
                             f"parameter dicts, got keys {bad!r}")
        decl = declared("attack", name, self.plugin, factory, params, defaults, api=self.api)
        for key, value in same_as.items():
            validated(f"same_as[{key!r}] of attack {name!r}", decl, value)
        self._add("attacks", AttackSpec(name, factory, info, self.plugin, summary_of(factory, summary or info.summary),
                                        dict(defaults or {}), same_as, decl, bool(demo)))

    def add_defense(
        self,
        name: str,
        factory: Callable[..., Defense],
        *,
        info: DefenseInfo | None = None,
        summary: str | None = None,
        defaults: Mapping[str, Any] | None = None,
        params: ParamSet | None = None,
    ) -> None:
        """Register ``factory(**params) -> Defense``; ``info`` defaults to ``factory.info``.

        ``params`` / ``defaults`` as for :meth:`add_attack` (the declaration defaults to ``factory.params``).
        """
        self._check_class("defense", name, factory, Defense)
        info = info if info is not None else getattr(factory, "info", DefenseInfo())
        decl = declared("defense", name, self.plugin, factory, params, defaults, api=self.api)
        text = summary_of(factory, summary or info.summary)
        self._add("defenses", DefenseSpec(name, factory, info, self.plugin, text, dict(defaults or {}), decl))

    def add_model(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        summary: str | None = None,
        num_classes: int | None = None,
        input_shape: tuple[int, ...] | None = None,
    ) -> None:
        """Register ``factory(**params) -> nn.Module`` (an architecture or a zoo entry)."""
        text = summary_of(factory, summary)
        self._add("models", ModelSpec(name, factory, self.plugin, text, num_classes, input_shape))

    def add_model_source(
        self, prefix: str, builder: Callable[..., Any], *, summary: str | None = None,
        requires: str | tuple[str, ...] | list[str] = (), install: str = "", loads_weights: bool = False,
    ) -> None:
        """Register ``builder(rest, **params) -> nn.Module`` for the model specs ``PREFIX:REST`` (see the hook).

        ``requires``: the distributions the builder imports (``"timm"``); when one is missing, building says so
        in one line ending with ``install`` (``"pip install 'robustreg[timm]'"``).  ``loads_weights``: the
        builder takes ``weights=`` and loads the checkpoint itself."""
        if not callable(builder):
            raise TypeError(f"model source {prefix!r} of plugin {self.plugin!r}: builder must be callable, "
                            f"got {builder!r}")
        if not isinstance(prefix, str) or ":" in prefix:
            raise ValueError(f"model source prefix must be a name without ':', got {prefix!r} "
                             f"(plugin {self.plugin!r})")
        names = (requires,) if isinstance(requires, str) else tuple(requires)
        self._add("model_sources", ModelSourceSpec(prefix, builder, self.plugin, summary_of(builder, summary),
                                                   names, str(install), bool(loads_weights)))

    def add_dataset(
        self, name: str, loader: Callable[..., Any], *, summary: str | None = None, needs_root: bool = False,
        flippable: bool = False, augment: bool = True,
    ) -> None:
        """Register ``loader(split, root) -> LabeledData``; ``needs_root``: the SPEC must be ``name:DIR``;
        ``flippable``: random horizontal flips are a valid training augmentation for it; ``augment``: the
        trainer augments it unless told otherwise (``augment: null``; False for MNIST)."""
        self._add("datasets", DatasetSpec(name, loader, self.plugin, summary_of(loader, summary), needs_root,
                                          bool(flippable), bool(augment)))


    def add_command(
        self, name: str, configure: Callable[[Any], None], run: Callable[[Any], int], *, help: str = ""
    ) -> None:
        """Register a ``robustreg NAME`` subcommand: ``configure(parser)`` then ``run(args) -> int``."""
        self._add("commands", CommandSpec(name, configure, run, self.plugin, help))

    def add_analysis(self, name: str, configure: Callable[[Any], None], run: Callable[[Any], Any], *,
                     summary: str = "", distributed: bool = False) -> None:
        """Register ``robustreg analyze NAME``: ``configure(parser)`` adds its arguments (the shared ones with
        :func:`robustreg.analysis.add_analysis_args`), ``run(args)`` returns a
        :class:`robustreg.analysis.AnalysisOutput`, which the command writes to ``--out``.  ``distributed``:
        ``run`` shares its work over torchrun's ranks itself (otherwise several ranks are refused)."""
        for what, value in (("configure", configure), ("run", run)):
            if not callable(value):
                raise TypeError(f"analysis {name!r} of plugin {self.plugin!r}: {what} must be callable, got {value!r}")
        self._add("analyses", AnalysisSpec(name, configure, run, self.plugin, summary_of(run, summary or None),
                                           bool(distributed)))

    def add_check(self, name: str, check: Callable[[Any], tuple[str, str]], *, doc: str = "",
                  summary: str | None = None) -> None:
        """Register an automatic check ``check(ctx) -> (status, message)`` (see the hook's docstring);
        ``doc``: where a user reads what a warning means and what to do (a URL or ``path#anchor``)."""
        if not callable(check):
            raise TypeError(f"check {name!r} of plugin {self.plugin!r}: check must be callable, got {check!r}")
        self._add("checks", CheckSpec(name, check, self.plugin, summary_of(check, summary), str(doc)))

    def add_remedy(self, name: str, run: Callable[[Any], None], *, answers: tuple[str, ...] | list[str],
                   summary: str | None = None, cost: float = 0.0) -> None:
        """Register a remedy ``run(ctx)`` for the warnings of the checks named in ``answers`` (see the
        hook's docstring); a check of another plugin may be named (it is looked up when evaluating).
        ``cost``: about how many forward + backward passes per sample its first attack spends at each eps;
        the cheaper remedies run first, and one whose cost exceeds what is left of the budget is skipped."""
        if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not 0 <= cost < float("inf"):
            raise ValueError(f"remedy {name!r} of plugin {self.plugin!r}: cost must be a finite number >= 0 of "
                             f"passes per sample, got {cost!r}")
        if not callable(run):
            raise TypeError(f"remedy {name!r} of plugin {self.plugin!r}: run must be callable, got {run!r}")
        names = (answers,) if isinstance(answers, str) else tuple(answers)
        if not names or not all(isinstance(a, str) and _NAME.match(a) for a in names):
            raise ValueError(f"remedy {name!r} of plugin {self.plugin!r}: answers must name one or more checks, "
                             f"got {answers!r}")
        self._add("remedies", RemedySpec(name, run, names, self.plugin, summary_of(run, summary), float(cost)))
