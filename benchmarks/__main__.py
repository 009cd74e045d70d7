"""`python -m benchmarks` (from the repository root): see benchmarks/cli.py and `--help`."""

from __future__ import annotations

import sys

from benchmarks.cli import main

sys.exit(main())
