"""The kit a ``robustreg`` command is built with: argument groups, ``--eps`` and ``--param`` parsing,
loading the model and data with one-line errors naming the flag, and running one evaluation.

A public module of its own, beside :mod:`robustreg`'s ``__all__`` rather than in it: a plugin's command
(the AutoAttack adapter's ``autoattack``, the minimal-norm plugin's ``curve``) imports
``robustreg.cli_kit`` exactly as the core's own commands (:mod:`robustreg.commands`) do, and a plugin
that only registers attacks never loads argparse helpers.  Its errors are :class:`robustreg.UsageError`
(``robustreg`` reports them as one line, exit status 2).

Its parts, by idea: :mod:`.args` (argument groups and their checks), :mod:`.values` (``--eps`` and ``--param``),
:mod:`.loading` (the model and data, checked against each other), :mod:`.running` (one evaluation from parsed
arguments, torchrun's process group).  Import the names from ``robustreg.cli_kit`` itself.
"""

from __future__ import annotations

from ..errors import UsageError
from .args import (
    DEFAULT_OUT,
    MAX_SEED,
    adaptive_budget,
    adaptive_options,
    add_adaptive_args,
    add_any_input_size,
    add_image_size_args,
    add_model_data_args,
    add_model_output_args,
    add_run_args,
    add_speed_args,
    check_device,
    check_name,
    check_out_folder,
    check_run_args,
    model_args,
    norm_arg,
    speed_options,
    start_over_hint,
)
from .loading import (
    check_model_fits_data,
    load_dataset,
    load_model,
    sized,
)
from .running import (
    in_process_group,
    run_evaluation,
)
from .values import (
    eps_list,
    param_values,
)

__all__ = [
    "DEFAULT_OUT",
    "MAX_SEED",
    "UsageError",
    "adaptive_budget",
    "adaptive_options",
    "add_adaptive_args",
    "add_any_input_size",
    "add_image_size_args",
    "add_model_data_args",
    "add_model_output_args",
    "add_run_args",
    "add_speed_args",
    "check_device",
    "check_model_fits_data",
    "check_name",
    "check_out_folder",
    "check_run_args",
    "eps_list",
    "in_process_group",
    "load_dataset",
    "load_model",
    "model_args",
    "norm_arg",
    "param_values",
    "run_evaluation",
    "sized",
    "speed_options",
    "start_over_hint",
]
