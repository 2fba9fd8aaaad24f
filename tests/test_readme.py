"""The README's attack table is ``robustreg list attacks --markdown``: it must name every registered attack."""

from __future__ import annotations

import re
from pathlib import Path

from robustreg import Registry

README = Path(__file__).resolve().parents[1] / "README.md"


def _table_names(text: str) -> list[str]:
    start = text.index("| name | norms | kind |")
    names = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        names.append(line.split("|")[1].strip())
    return names


def test_readme_attack_table_matches_the_registry():
    registered = {spec.name for spec in Registry.create(disabled=["example"]).list_attacks()}
    listed = _table_names(README.read_text())
    assert len(listed) == len(set(listed)), "the README's attack table repeats a name"
    missing, stale = sorted(registered - set(listed)), sorted(set(listed) - registered)
    assert not missing and not stale, (
        f"README attack table out of date (missing {missing}, not registered {stale}); regenerate it with "
        "`ROBUSTREG_DISABLE_PLUGINS=example robustreg list attacks --markdown`"
    )


def test_readme_names_both_setup_commands():
    text = README.read_text()
    assert re.search(r"pip install -e \"\.\[test\]\" && \.venv/bin/robustreg evaluate", text)
    assert ".venv/bin/python -m pytest -q tests" in text
