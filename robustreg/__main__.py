"""``python -m robustreg``: the same as the ``robustreg`` command."""

from .cli import main

raise SystemExit(main())
