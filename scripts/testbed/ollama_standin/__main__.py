"""`python3 bin/ollama ...` (the zipapp) or `python -m testbed.ollama_standin ...`."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
