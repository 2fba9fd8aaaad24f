"""Hook specifications of robustreg (pluggy project name ``"robustreg"``).

A plugin is a module (or object) with functions decorated by :data:`robustreg.hookimpl` whose
names match the specs below, found through the ``robustreg`` entry-point group::

    [options.entry_points]
    robustreg =
        myplugin = robustreg_myplugin

Every hook receives a :class:`robustreg.Registrar` and registers entries on it; none returns
anything (``-> None``).  The hooks
run once, when a :class:`robustreg.Registry` is built (``Registry.create()``), in pluggy's order
(last registered first).  Each plugin gets its own registrar, so a duplicate name is reported with
the names of both plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .registrar import Registrar

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("robustreg")
hookimpl = pluggy.HookimplMarker("robustreg")


@hookspec
def robustreg_register_attacks(registrar: Registrar) -> None:
    """Register attacks with ``registrar.add_attack(name, factory, ...)``.

    ``factory(threat, **params)`` must return a :class:`robustreg.Attack`.  Called once per
    registry build; the return value is ignored.
    """


@hookspec
def robustreg_register_defenses(registrar: Registrar) -> None:
    """Register defenses with ``registrar.add_defense(name, factory, ...)``.

    ``factory(**params)`` must return a :class:`robustreg.Defense`.  Called once per registry
    build; the return value is ignored.
    """


@hookspec
def robustreg_register_models(registrar: Registrar) -> None:
    """Register architectures and zoo entries with ``registrar.add_model(name, factory, ...)``.

    ``factory(**params)`` must return an ``nn.Module`` taking [0, 1] images and returning logits.
    Called once per registry build; the return value is ignored.
    """


@hookspec
def robustreg_register_model_sources(registrar: Registrar) -> None:
    """Register model sources with ``registrar.add_model_source(prefix, builder, requires=..., install=...)``.

    A model spec ``PREFIX:REST`` (``timm:resnet18``, ``hf:./my-vit``) is then built by
    ``builder(REST, **params)``, which returns an ``nn.Module``; a source registered with
    ``loads_weights=True`` also receives ``weights=`` (a path or None) and loads it itself.  A name
    registered with :meth:`add_model <robustreg.Registrar.add_model>` wins over a source of its prefix.
    Called once per registry build; the return value is ignored.
    """


@hookspec
def robustreg_register_datasets(registrar: Registrar) -> None:
    """Register datasets with ``registrar.add_dataset(name, loader, ...)``.

    ``loader(split, root)`` must return a :class:`robustreg.data.LabeledData` for ``split`` in
    ("train", "test"); ``root`` is the text after ``name:`` in a data SPEC, or None.  Called once
    per registry build; the return value is ignored.
    """


@hookspec
def robustreg_register_commands(registrar: Registrar) -> None:
    """Add ``robustreg`` subcommands with ``registrar.add_command(name, configure, run, help=...)``.

    ``configure(parser)`` adds the command's arguments to its ``argparse`` parser; ``run(args)``
    executes it and returns the exit status.  Every ``robustreg`` subcommand comes from here: the
    core's own (``list``, ``evaluate``, ``compare``, ``train``, from :mod:`robustreg.commands`) and
    a plugin's (``autoattack``, ``cascade-store``) alike, so the core imports no plugin.  Called once
    per registry build.
    """


@hookspec
def robustreg_register_analyses(registrar: Registrar) -> None:
    """Add ``robustreg analyze`` subcommands with ``registrar.add_analysis(name, configure, run, summary=...)``.

    ``configure(parser)`` adds the analysis's arguments (the shared model, data, attack and run arguments
    with :func:`robustreg.analysis.add_analysis_args`); ``run(args)`` computes it and returns a
    :class:`robustreg.analysis.AnalysisOutput` (report.json, report.md, PNGs), which ``robustreg analyze``
    writes atomically to ``--out``.  The core registers none: every analysis is a plugin's.  Called once
    per registry build; the return value is ignored.
    """


@hookspec
def robustreg_register_checks(registrar: Registrar) -> None:
    """Register automatic checks of an evaluation with ``registrar.add_check(name, check, doc=...)``.

    ``check(ctx)`` receives a :class:`robustreg.checks.CheckContext` (the model, the points, the clean
    logits, one view per evaluated cell) and returns ``(status, message)`` with status ``"ok"``,
    ``"warn"`` or ``"skipped"``.  Checks run in registration order (the core's first), once at the end
    of every evaluation; one that raises is reported as skipped.  Called once per registry build.
    """


@hookspec
def robustreg_register_remedies(registrar: Registrar) -> None:
    """Register remedies with ``registrar.add_remedy(name, run, answers=("check-name", ...))``.

    A remedy answers the warnings of the checks it names: with ``--adaptive`` (``adaptive=True``) the
    evaluation calls ``run(ctx)`` with a :class:`robustreg.remedies.RemedyContext` for each warning
    check it answers; ``run`` attacks the points still standing through ``ctx.attack(...)`` and
    returns nothing (what it broke is recorded by the context).  Called once per registry build.
    """
