"""The former home of the command kit, kept so that third-party plugins importing
``robustreg.commands.common`` keep working: everything is :mod:`robustreg.cli_kit` now (import it from
there; this module loads every core command with it)."""

from __future__ import annotations

from ..cli_kit import *  # noqa: F403
from ..cli_kit import __all__  # noqa: F401
