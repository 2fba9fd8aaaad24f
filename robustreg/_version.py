"""robustreg's version, in a module of its own so that the modules that record it (reports, training
states, ``--version``) import it without importing the package's public API."""

from __future__ import annotations

__version__ = "0.1.0"
