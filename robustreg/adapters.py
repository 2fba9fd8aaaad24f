"""The kit the toolkit adapters share: a table row per entry, the Attack class made from it, its docstring,
and the toolkit imported only when an attack runs.

An adapter plugin describes its toolkit once (:class:`Toolkit`), writes one :class:`AdapterEntry` per
registry entry (which of the toolkit's classes or functions, which of our parameter names map to which of
its keywords, with the toolkit's own defaults), and subclasses :class:`ToolkitAttack` with the one method
that calls the toolkit (:meth:`ToolkitAttack.call_toolkit`).  :func:`make_entry_class` turns a row into
the registered Attack subclass with a docstring rendered by :func:`entry_docstring`.  The toolkit is
imported when an attack runs, never when the plugin registers (``robustreg list`` stays fast and works
without it).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from .ascent import draw_seed, seeded_global_rngs
from .attack import Attack, AttackInfo
from .params import Param, ParamSet

__all__ = ["AdapterEntry", "Toolkit", "ToolkitAttack", "entry_docstring", "make_entry_class"]


@dataclass(frozen=True)
class Toolkit:
    """A third-party toolkit an adapter plugin wraps, as the adapter names, imports and installs it."""

    prefix: str  # the registry prefix, "<prefix>:<attack>", and AttackInfo.toolkit
    distribution: str  # its pip distribution: its version is read from the metadata, without importing it
    module: str  # what is imported when an attack runs
    requires: str = ""  # said after the package in the ImportError, e.g. " (and X, which it imports)"
    install: str = ""  # the install hint; "" = ``pip install <distribution>``
    #: messages of DeprecationWarnings its import raises about its own code: noise for its users
    quiet: tuple[str, ...] = ()

    def version(self) -> str:
        """The installed version, read from the distribution's metadata (does not import it)."""
        try:
            return metadata.version(self.distribution)
        except metadata.PackageNotFoundError:
            return "not installed"

    def load(self, entry: str) -> Any:
        """Import :attr:`module`, or raise a one-line ImportError naming ``entry`` and what to install."""
        try:
            with warnings.catch_warnings():
                for message in self.quiet:
                    warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
                return importlib.import_module(self.module)
        except ImportError as exc:
            missing = getattr(exc, "name", None) or self.module
            # name the module that failed only where it is not the toolkit itself (a dependency of it)
            which = "" if self.module.startswith(missing) else f"; {missing} could not be imported"
            install = self.install or f"pip install {self.distribution}"
            raise ImportError(f"{entry} needs the {self.distribution} package{self.requires}{which}: "
                              f"{install}") from None


@dataclass(frozen=True)
class AdapterEntry:
    """How one registry entry maps onto the toolkit: one row of an adapter's entries table.

    ``call``: the toolkit's class or function that runs the entry, or one per norm (``{"linf": ...}``,
    whose keys are then the norms).  ``params``: our declared parameters; ``Param.toolkit`` is the
    toolkit's keyword where it differs from ours, and the default is the toolkit's own.
    """

    name: str  # the part after "<prefix>:"
    call: str | Mapping[str, str]
    title: str  # one line: what it does
    paper: str  # title, year, arXiv id
    norms: tuple[str, ...] = ()  # () = the keys of a per-norm ``call``
    params: tuple[Param, ...] = ()
    kind: str = "white-box"
    targeted: bool = False
    randomized: bool = False
    minimal_norm: bool = False  # the toolkit minimises the norm, unbounded by eps
    single_step: bool = False  # one gradient step (AttackInfo.single_step)
    picks_targets: bool = False  # a targeted protocol of its own (AttackInfo.picks_targets)
    note: str = ""
    #: for ``robustreg compare``: our parameters the toolkit does not take but runs as (``{"restarts": 1}``);
    #: ``...``: does not apply to what it does (see :mod:`robustreg.compare.params`)
    implied: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.norms:
            if not isinstance(self.call, Mapping):
                raise ValueError(f"entry {self.name!r}: norms must be given when call is one name, got {self.call!r}")
            object.__setattr__(self, "norms", tuple(self.call))

    def calls(self) -> dict[str, str]:
        """Our norm -> the toolkit's class or function for it."""
        if isinstance(self.call, Mapping):
            return dict(self.call)
        return {norm: self.call for norm in self.norms}


class ToolkitAttack(Attack):
    """Base of every generated adapter entry: seeds the toolkit's global RNG draws, checks its result.

    A toolkit's base subclass sets :attr:`toolkit` and implements :meth:`call_toolkit`;
    :func:`make_entry_class` makes one subclass of it per entry.
    """

    toolkit: ClassVar[Toolkit]
    spec: ClassVar[AdapterEntry]
    implied: ClassVar[Mapping[str, Any]] = {}
    minimal_norm: ClassVar[bool] = False
    #: the toolkit bounds a minimal-norm result by eps itself: only its float slop is clamped, never projected
    clips_to_eps: ClassVar[bool] = False

    @classmethod
    def toolkit_versions(cls) -> dict[str, str]:
        """The wrapped toolkit's distribution and version, for the report's ``environment``."""
        return {cls.toolkit.distribution: cls.toolkit.version()}

    def toolkit_call(self) -> str:
        """The toolkit's class or function for the threat model's norm."""
        return self.spec.calls()[self.threat.norm]

    def call_toolkit(
        self, toolkit: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
        seed: int,
    ) -> torch.Tensor:
        """Run the toolkit (the imported :attr:`Toolkit.module`) on the batch; return its adversarial points."""
        raise NotImplementedError

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
        target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        toolkit = self.toolkit.load(self.label())
        # toolkits draw from torch's global RNG (some reseed it): seed it from our generator (or our seed)
        # inside a fork so the caller's global RNG states are left untouched.
        seed = self.seed if self.seed is not None else draw_seed(generator)
        with seeded_global_rngs(seed, x.device):
            x_adv = self.call_toolkit(toolkit, model, x, y, target, seed).detach().to(x.dtype)
        if self.minimal_norm and not self.clips_to_eps:  # unbounded by eps: the adapter projects into the ball
            return self.threat.project(x_adv, x)
        return self.threat.clamp_slop(x_adv, x)


def _fmt(value: Any) -> str:
    """A default as the docstring shows it: k/255 for pixel fractions, else the shortest float form."""
    if isinstance(value, float):
        k = round(value * 255)
        if abs(value * 255 - k) < 1e-9 and value < 1 and k > 0:
            return f"{k}/255"
        return f"{value:g}"
    return repr(value)


def entry_docstring(
    entry: AdapterEntry, toolkit: Toolkit, *, origin: str, eps: str, minimal_norm: str, seed: str, box: str,
) -> str:
    """The generated docstring of an entry: what it does, the paper, norms, parameters, inputs, an example.

    ``origin``: the toolkit's class or function and version, in parentheses after the title; ``eps``: how
    eps reaches the toolkit (after "Norm(s): ...; "); ``minimal_norm``: said of a minimal-norm entry;
    ``seed``: the seed parameter's line; ``box``: the input range.
    """
    lines = [f"{entry.title} ({origin}).", "", f"Paper: {entry.paper}.", f"Norm(s): {', '.join(entry.norms)}; {eps}"]
    if entry.minimal_norm:
        lines.append(minimal_norm)
    if entry.note:
        lines.append(entry.note)
    lines += ["", f"Parameters (keyword-only; robustreg name -> {toolkit.distribution} keyword, default):"]
    for p in entry.params:
        unit = f", {p.unit}" if p.unit else ""
        lines.append(f"    {p.name} -> {p.toolkit or p.name} ({p.allowed()}; default {_fmt(p.default)}{unit}): {p.doc}")
    lines += [
        f"    seed (default None): {seed}",
        "    eval_mode (default True): attack the model in eval mode (its mode is restored afterwards).",
        "",
        f"Inputs: float N x C x H x W in {box}, int64 labels.",
        "",
        "Example::",
        "",
        "    reg = robustreg.Registry.create()",
        f"    attack = reg.build_attack('{toolkit.prefix}:{entry.name}', ThreatModel('{entry.norms[0]}', 0.3), seed=0)",
        "    x_adv = attack(model, x, y)",
    ]
    return "\n".join(lines)


A = TypeVar("A", bound=ToolkitAttack)
E = TypeVar("E", bound=AdapterEntry)


def make_entry_class(entry: E, base: type[A], *, doc: Callable[[E, str], str], module: str,
                     qualname: str = "", namespace: Mapping[str, Any] | None = None) -> type[A]:
    """The Attack subclass of ``base`` registered as ``<prefix>:<entry.name>``.

    ``doc(entry, version)``: its docstring (see :func:`entry_docstring`); ``module``: the adapter module
    the class is shown as defined in; ``qualname``: its class name (default the prefix and the entry name
    in CamelCase); ``namespace``: further class attributes.
    """
    toolkit = base.toolkit
    version = toolkit.version()
    info = AttackInfo(
        norms=entry.norms,
        kind=entry.kind,
        targeted=entry.targeted,
        single_step=entry.single_step,
        picks_targets=entry.picks_targets,
        randomized=entry.randomized,
        source=f"{toolkit.distribution} {version} ({', '.join(dict.fromkeys(entry.calls().values()))}); "
               f"{entry.paper}",
        toolkit=toolkit.prefix,
        summary=entry.title,
    )
    qualname = qualname or "".join(part.capitalize() for part in (toolkit.prefix, *entry.name.replace("-", "_")
                                                                 .split("_")))
    attributes: dict[str, Any] = {
        "__doc__": doc(entry, version),
        "__module__": module,
        "__qualname__": qualname,
        "name": f"{toolkit.prefix}:{entry.name}",
        "info": info,
        "spec": entry,
        "params": ParamSet(entry.params),
        "implied": dict(entry.implied),
        "minimal_norm": entry.minimal_norm,
        **(namespace or {}),
    }
    return type(qualname, (base,), attributes)
