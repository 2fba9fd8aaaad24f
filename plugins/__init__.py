"""robustreg's built-in plugins, each registered through the ``robustreg`` entry-point group."""
