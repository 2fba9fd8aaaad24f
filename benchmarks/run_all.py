"""Run every benchmark in this folder, one after another, each in its own process.

    python benchmarks/run_all.py                 # all of them, with their default sizes
    python benchmarks/run_all.py attack_speed    # only those whose file name contains a word given

Each benchmark prints its table and writes it under benchmarks/results/.  Exit status: the number of
benchmarks that failed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(p for p in HERE.glob("*.py") if not p.name.startswith("_") and p.name != "run_all.py")
    if argv:
        scripts = [p for p in scripts if any(word in p.stem for word in argv)]
    failed = []
    for script in scripts:
        print(f"\n=== {script.stem} ===", flush=True)
        if subprocess.call([sys.executable, str(script)], cwd=HERE) != 0:
            failed.append(script.stem)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return len(failed)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
