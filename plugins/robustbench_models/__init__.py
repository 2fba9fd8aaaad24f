"""Model source ``robustbench:NAME``: the architecture of a RobustBench zoo entry, weights from a local file.

``robustbench:Carmon2019Unlabeled --weights Carmon2019Unlabeled.pt`` builds the entry's network from the
installed robustbench 1.1.1 (:mod:`.package` says how it is imported beside pyautoattack and torchattacks'
bundled copy) and loads the checkpoint in any of the zoo's layouts (:mod:`.layouts`), giving the logits
robustbench's own ``load_model`` gives for the same file.  Never downloads: without ``--weights`` the
network keeps its random initialisation, and an entry whose architecture fetches pretrained weights while
it is built is refused.  Parameters: ``dataset`` (cifar10, cifar100, imagenet; default cifar10) and
``threat_model`` (Linf, L2, corruptions; default Linf).  The models take [0, 1] images (their
normalisation is inside).  An optional extra: ``pip install 'robustreg[robustbench]'``.

The plugin also registers ``robustreg export robustbench REPORT.json FILE`` (:mod:`.export`), which needs no
robustbench package: RobustBench's model-info JSON from an evaluation report.
"""

from __future__ import annotations

import difflib
from typing import Any

from torch import nn

import robustreg

from . import export
from .guard import no_downloads
from .layouts import load_checkpoint
from .package import INSTALL, real_robustbench

__all__ = ["build", "robustreg_register_commands", "robustreg_register_model_sources"]


def _choice(kind: str, value: str, enum: Any) -> Any:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise robustreg.UserError(f"robustbench: {kind} must be one of {allowed}, got {value!r}") from None


def build(name: str, *, weights: str | None = None, dataset: str = "cifar10", threat_model: str = "Linf") -> nn.Module:
    """The zoo entry ``name`` of ``dataset`` / ``threat_model``, with the checkpoint ``weights`` if given."""
    with real_robustbench() as zoo:
        data, threat = _choice("dataset", dataset, zoo.dataset), _choice("threat_model", threat_model, zoo.threat)
        entries = zoo.models.get(data, {}).get(threat, {})
        if name not in entries:
            close = difflib.get_close_matches(name, list(entries), n=5, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise robustreg.UserError(f"robustbench:{name}: no entry {name!r} for {data.value} / {threat.value}{hint} "
                                      f"({len(entries)} entries; dataset= and threat_model= choose the table)")
        entry = entries[name]
        if isinstance(entry.get("gdrive_id"), list):
            raise robustreg.UserError(f"robustbench:{name}: an ensemble of {len(entry['gdrive_id'])} checkpoints; "
                                      "only single-checkpoint entries are supported")
        with no_downloads(f"robustbench:{name}"):
            model = entry["model"]()
    if weights is not None:
        model = load_checkpoint(model, str(weights), name)
    return model.eval()


@robustreg.hookimpl
def robustreg_register_model_sources(registrar: robustreg.Registrar) -> None:
    """Register the ``robustbench`` prefix."""
    registrar.add_model_source("robustbench", build, summary="a RobustBench zoo entry's architecture, --weights "
                               "from a local checkpoint (any zoo layout)", requires="robustbench", install=INSTALL,
                               loads_weights=True)


@robustreg.hookimpl
def robustreg_register_commands(registrar: robustreg.Registrar) -> None:
    """Register ``robustreg export robustbench REPORT.json FILE`` (RobustBench's model-info JSON, :mod:`.export`)."""
    registrar.add_command("export", export.configure, export.run,
                          help="write RobustBench's model-info JSON from a report.json (export robustbench ...)")
