"""The same attack from several toolkits on the same samples, compared: a front-end of the evaluation engine.

- :mod:`.run`: :func:`compare` (each toolkit's row one engine cell), agreement and disagreements beyond noise;
- :mod:`.config`: :class:`CompareConfig`, its options checked once;
- :mod:`.params`: robustreg's configuration mapped onto each toolkit's parameters;
- :mod:`.render`: report.md and the terminal table; :mod:`.check`: a saved report read back and checked.
"""

from __future__ import annotations

from .run import (
    CompareConfig,
    agreement,
    attack_names,
    check_attack_name,
    compare,
    default_toolkits,
    disagreements,
    registered_toolkits,
    render_markdown,
    render_table,
    resolve,
    write_report,
)

__all__ = ["CompareConfig", "agreement", "attack_names", "check_attack_name", "compare", "default_toolkits",
           "disagreements", "registered_toolkits", "render_markdown", "render_table", "resolve", "write_report"]
