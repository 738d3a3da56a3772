#!/usr/bin/env python3
"""Run weightzoo from a checkout: `python3 cli.py <command> ...` (same as the `weightzoo` command)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

try:
    from weightzoo.cli import main
except ModuleNotFoundError as e:  # a dependency is missing: say how to get it, not a traceback
    sys.exit(
        f"error: missing Python package '{e.name}'. "
        "Install weightzoo first: `make run`, or `pip install -e .`"
    )

if __name__ == "__main__":
    sys.exit(main())
