"""The analysis machinery: what every ``robustreg analyze NAME`` shares, and no analysis of its own.

A plugin registers an analysis in ``robustreg_register_analyses`` with ``registrar.add_analysis(name,
configure, run, summary=...)``: its ``configure`` adds the analysis's arguments (the shared ones with
:func:`add_analysis_args`), its ``run`` returns an :class:`AnalysisOutput` -- report.json (the source of
truth), report.md and PNGs -- which the command writes atomically to ``--out`` (:func:`write_analysis`).
The helpers here (loading the models and the data, the attacks by name, figures, tables) are the plugins'
public kit.
"""

from __future__ import annotations

from .cli import (
    ModelArg,
    add_analysis_args,
    analysis_eps,
    attack_names,
    attack_params,
    load_model_and_data,
    load_model_arg,
    load_models,
    model_list,
    one_attack,
    parse_model_arg,
    record_inputs,
    samples,
    unique_names,
)
from .common import (
    AnalysisOutput,
    accuracy,
    analysis_samples,
    craft_batched,
    figure,
    figure_png,
    finite,
    json_params,
    labelled_models,
    markdown_table,
    progress,
    sample_losses,
    write_analysis,
)

__all__ = ["AnalysisOutput", "ModelArg", "accuracy", "add_analysis_args", "analysis_eps", "analysis_samples",
           "attack_names", "attack_params", "craft_batched", "figure", "figure_png", "finite", "json_params",
           "labelled_models", "load_model_and_data", "load_model_arg", "load_models", "markdown_table", "model_list",
           "one_attack", "parse_model_arg", "progress", "record_inputs", "sample_losses", "samples", "unique_names",
           "write_analysis"]
