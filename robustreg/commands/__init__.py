"""The core's own ``robustreg`` subcommands, registered as a plugin like any other.

This module is a core plugin (``robustreg.registry.CORE_PLUGINS``): its
``robustreg_register_commands`` adds ``list``, ``evaluate``, ``compare`` and ``train`` through the
same hook a plugin uses, so ``robustreg.cli`` only builds the parser from the registered commands.
The kit every command is built with is :mod:`robustreg.cli_kit`, a public module for plugins'
commands as much as for these (re-exported here and in ``robustreg.commands.common`` for plugins written
before it moved).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..cli_kit import (
    DEFAULT_OUT,
    UsageError,
    add_adaptive_args,
    add_model_data_args,
    add_run_args,
    check_run_args,
    eps_list,
    param_values,
    run_evaluation,
)
from ..registry.hookspecs import hookimpl
from . import analyze, compare, evaluate, listing
from . import train as train_command

if TYPE_CHECKING:
    from ..registry import Registrar

__all__ = [
    "DEFAULT_OUT",
    "UsageError",
    "add_model_data_args",
    "add_adaptive_args",
    "add_run_args",
    "check_run_args",
    "eps_list",
    "param_values",
    "robustreg_register_commands",
    "run_evaluation",
]


def _configure_train(p: argparse.ArgumentParser) -> None:
    p.description = train_command.DESCRIPTION
    train_command.configure(p)


@hookimpl
def robustreg_register_commands(registrar: Registrar) -> None:
    registrar.add_command("list", listing.configure, listing.run,
                          help="list registered attacks, defenses, models, datasets, plugins, commands")
    registrar.add_command("evaluate", evaluate.configure, evaluate.run,
                          help="robust accuracy of a model under attacks x eps (no arguments: a demo)")
    registrar.add_command("compare", compare.configure, compare.run, help=compare.HELP)
    registrar.add_command("train", _configure_train, train_command.run, help=train_command.HELP)
    registrar.add_command("analyze", analyze.configure, analyze.run, help=analyze.HELP)
