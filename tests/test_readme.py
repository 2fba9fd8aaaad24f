"""The README's attack table is ``robustreg list attacks --markdown``: every registered attack, exactly as generated."""

from __future__ import annotations

import re
from pathlib import Path

from robustreg import Registry
from robustreg.registry import ENTRY_POINT_GROUP, builtin_plugins

README = Path(__file__).resolve().parents[1] / "README.md"


def _builtin_registry() -> Registry:
    """The registry of robustreg's own plugins only: third-party plugins installed beside it do not count."""
    from importlib import metadata

    third_party = {ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)} - builtin_plugins()
    return Registry.create(disabled=third_party)


def _table_names(text: str) -> list[str]:
    start = text.index("| name | norms | kind |")
    names = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        names.append(line.split("|")[1].strip())
    return names


def test_readme_attack_table_matches_the_registry():
    registered = {spec.name for spec in _builtin_registry().list_attacks()}
    listed = _table_names(README.read_text())
    assert len(listed) == len(set(listed)), "the README's attack table repeats a name"
    missing, stale = sorted(registered - set(listed)), sorted(set(listed) - registered)
    assert not missing and not stale, (
        f"README attack table out of date (missing {missing}, not registered {stale}); regenerate it with "
        "`ROBUSTREG_DISABLE_PLUGINS=example robustreg list attacks --markdown`"
    )


def _table(text: str) -> str:
    start = text.index("| name | norms | kind |")
    lines = []
    for line in text[start:].splitlines():
        if not line.startswith("|"):
            break
        lines.append(line)
    return "\n".join(lines)


def test_readme_attack_table_is_the_generated_one(capsys):
    from robustreg.cli import main

    assert main(["list", "attacks", "--markdown"], registry=_builtin_registry()) == 0
    generated = capsys.readouterr().out.strip()
    assert _table(README.read_text()) == generated, (
        "README attack table differs from `robustreg list attacks --markdown`; regenerate it with "
        "`ROBUSTREG_DISABLE_PLUGINS=example robustreg list attacks --markdown`"
    )


def test_readme_names_both_setup_commands():
    text = README.read_text()
    assert re.search(r"pip install --no-build-isolation -e \"\.\[test,all\]\" && \.venv/bin/pip install "
                     r"--force-reinstall --no-deps robustbench==1\.1\.1 && \.venv/bin/robustreg evaluate", text)
    assert ".venv/bin/python -m pytest -q tests" in text
