"""`python -m testbed up|down|status`."""

import sys

from testbed.cli import main

sys.exit(main())
