"""Imports every analysis module so that each registers its :class:`~robustreg.analysis.Analysis`."""

from __future__ import annotations
