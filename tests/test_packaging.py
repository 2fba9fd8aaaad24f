"""A plain (non-editable) ``pip install .`` ships every package: setup.cfg lists each folder of ``robustreg/`` and
``plugins/`` that holds an ``__init__.py`` (``find:`` cannot rename ``plugins`` to ``robustreg_plugins``, so the
list is written by hand, and a new folder left out of it would be missing from a wheel)."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_setup_cfg_lists_every_package() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = {line.strip() for line in config["options"]["packages"].splitlines() if line.strip()}
    names = {"robustreg": "robustreg", "plugins": "robustreg_plugins"}
    on_disk = {".".join([names[init.relative_to(ROOT).parts[0]], *init.relative_to(ROOT).parts[1:-1]])
               for folder in names for init in (ROOT / folder).rglob("__init__.py")}
    assert on_disk - listed == set(), "missing from setup.cfg [options] packages"
    assert listed - on_disk == set(), "listed in setup.cfg but not a package folder"
