"""The former home of the output-folder helpers, kept so that third-party plugins importing
``robustreg.commands.outputs`` keep working: everything is :mod:`robustreg.output_folders` now."""

from __future__ import annotations

from ..output_folders import *  # noqa: F403
from ..output_folders import __all__  # noqa: F401
